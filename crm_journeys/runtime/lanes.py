"""Delivery lanes: outbox rows grouped by tenant and host, parked and paced together.

A lane is ``<tenant id>:<host>`` where the host is what the action talks to
(``Action.host``: ``crm`` for the tenant's CRM, ``smtp``, or a webhook's host name). What
every worker must agree on about a lane lives in ``cj_lane``, not in a process:

* **Parked**: a host that is down, times out or answers 429 parks its lane until its
  ``Retry-After`` (or a short backoff growing with the lane's consecutive failures). No
  worker claims a parked lane's rows, so one tenant's dead CRM never takes pool threads
  from anyone else, and nobody sleeps waiting for it.
* **Budget**: an optional number of deliveries per minute (``crm-journeys lanes budget``),
  reserved when rows are claimed, so two workers share one account's limit instead of
  each spending it.

A lane's first success after failures clears its failure count and any park.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from crm_journeys.storage.models import Lane
from crm_journeys.storage.upsert import insert_ignoring_conflicts

MAX_PARK = 300.0  # seconds: the longest a lane parks without a Retry-After of its own
WINDOW = timedelta(minutes=1)  # a budget's window


def lane_of(tenant_id: int, action: str, params: dict[str, Any]) -> str:
    """The lane of one outbox row (stored on the row when it is queued)."""
    return f"{tenant_id}:{_host_of(action, params)}"[:200]


def _host_of(action: str, params: dict[str, Any]) -> str:
    host = _hosts().get(action)
    return host(params) if host is not None else "crm"


@cache
def _hosts() -> dict[str, Callable[[dict[str, Any]], str]]:
    from crm_journeys.actions.registry import installed_actions

    return {name: cls.host for name, cls in installed_actions().items()}


def parked_lanes(now: Any) -> Select[Any]:
    """The keys of lanes parked at ``now`` (a subquery for the outbox claim)."""
    return select(Lane.key).where(Lane.parked_until > now)


def park_for(failures: int) -> float:
    """Seconds a lane parks after its ``failures``-th failure in a row without a hint."""
    return min(MAX_PARK, 2.0 ** max(0, failures - 1))


def settle(session: Session, now: datetime, failed: dict[str, tuple[float | None, str]],
           succeeded: Iterable[str]) -> None:
    """Park the lanes whose host just failed (``lane -> (retry_after, reason)``) and clear
    the failure count of lanes that just delivered; in the closing transaction."""
    ok = set(succeeded) - set(failed)
    if ok:
        session.execute(update(Lane).where(Lane.key.in_(ok), Lane.failures > 0)
                        .values(failures=0, parked_until=None, reason=""))
    for key, (retry_after, reason) in sorted(failed.items()):
        _park(session, now, key, retry_after, reason)


def unpark(session: Session, keys: Iterable[str]) -> None:
    """Let these lanes be claimed at once (an admin retried a row by hand: they asked for
    it now, and a host still failing parks the lane again after one attempt)."""
    wanted = sorted(set(keys))
    if wanted:
        session.execute(update(Lane).where(Lane.key.in_(wanted), Lane.parked_until.is_not(None))
                        .values(parked_until=None))


def _park(session: Session, now: datetime, key: str, retry_after: float | None, reason: str) -> None:
    insert_ignoring_conflicts(session, Lane, [{"key": key, "reason": "", "failures": 0, "used": 0}], ["key"])
    lane = session.get(Lane, key, with_for_update=True, populate_existing=True)
    assert lane is not None
    lane.failures += 1
    wait = retry_after if retry_after is not None else park_for(lane.failures)
    until = now + timedelta(seconds=max(0.0, wait))
    if lane.parked_until is None or lane.parked_until < until:
        lane.parked_until = until
    lane.reason = reason[:500]


def budgets(session: Session, now: datetime, keys: set[str], postgres: bool) -> dict[str, Lane]:
    """The budgeted lanes among ``keys``, locked for this claim, their windows rolled over."""
    if not keys:
        return {}
    stmt = select(Lane).where(Lane.key.in_(keys), Lane.budget_per_minute.is_not(None))
    found = {lane.key: lane for lane in session.scalars(stmt.with_for_update() if postgres else stmt)}
    for lane in found.values():
        if lane.window_start is None or now - lane.window_start >= WINDOW:
            lane.window_start, lane.used = now, 0
    return found


def pick(rows: list[Any], free: int, room: Callable[[str], int]) -> list[Any]:
    """Up to ``free`` rows, one lane after another in turn (each lane's rows in id order),
    at most ``room(lane)`` from a lane and one row per contact: a lane with a thousand rows
    waiting gets its share of the pool, not all of it, and a contact's rows run in order."""
    by_lane: OrderedDict[str, list[Any]] = OrderedDict()
    contacts: set[int] = set()
    for row in rows:
        if row.contact_id in contacts:
            continue
        contacts.add(row.contact_id)
        by_lane.setdefault(row.lane, []).append(row)
    left = {lane: room(lane) for lane in by_lane}
    picked: list[Any] = []
    while len(picked) < free and by_lane:
        for lane in list(by_lane):
            queue = by_lane[lane]
            if left[lane] <= 0 or not queue:
                del by_lane[lane]
                continue
            picked.append(queue.pop(0))
            left[lane] -= 1
            if len(picked) >= free:
                break
    return sorted(picked, key=lambda r: r.id)


def set_budget(session: Session, key: str, per_minute: int | None) -> None:
    """``crm-journeys lanes budget``: deliveries per minute for one lane (None: unlimited)."""
    insert_ignoring_conflicts(session, Lane, [{"key": key, "reason": "", "failures": 0, "used": 0}], ["key"])
    session.execute(update(Lane).where(Lane.key == key).values(budget_per_minute=per_minute))


def describe(session: Session, now: datetime) -> list[dict[str, Any]]:
    """Every known lane, for ``crm-journeys lanes`` and the metrics."""
    out = []
    for lane in session.scalars(select(Lane).order_by(Lane.key)):
        parked = lane.parked_until is not None and lane.parked_until > now
        left = None
        if lane.budget_per_minute is not None:
            fresh = lane.window_start is None or now - lane.window_start >= WINDOW
            left = lane.budget_per_minute - (0 if fresh else lane.used)
        out.append({"lane": lane.key, "parked_until": lane.parked_until if parked else None,
                    "reason": lane.reason if parked else "", "failures": lane.failures,
                    "budget_per_minute": lane.budget_per_minute, "budget_left": left})
    return out
