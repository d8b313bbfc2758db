"""Failed actions ("action errors"): a tenant's outbox rows that were dead-lettered or are
being retried, and what an admin does with a dead one: send it again (retry) or give it
up for good (dismiss). The web page, the API and the CLI all go through here.

A transition is one conditional UPDATE (``WHERE status = 'dead'``): two admins clicking at
once, or a stale page, move a row once; the second UPDATE no longer finds it dead and the
row is reported as refused. A retried row keeps its idempotency key, so the host still
keeps one record per key, even when the attempt that "failed" had in fact reached it. Its
last error stays in ``last_error`` and is also written to the instance's step log (the
contact's timeline), where the row's next success or failure cannot overwrite it.

Every function takes the caller's tenant and filters by it; no Flask here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from crm_journeys.errors import NotFound
from crm_journeys.runtime import lanes
from crm_journeys.storage.models import Contact, Instance, Journey, OutboxMessage, StepLog

DEAD, RETRYING, DISMISSED = "dead", "retrying", "dismissed"
FILTER_STATUSES = (DEAD, RETRYING)
BADGE_CAP = 1000  # the nav badge counts at most this many dead rows ("999+")
_CHUNK = 500


@dataclass(frozen=True)
class ErrorFilter:
    """Which failed actions: ``status`` dead or retrying (None: both), one journey, one action."""

    status: str | None = None
    journey_id: int | None = None
    action: str | None = None


@dataclass(frozen=True)
class ActionError:
    """One outbox row as the action-errors list shows it. ``status`` is ``retrying`` for a
    row still pending after a failure; ``next_attempt_at`` is then its next attempt, and
    for a dead row the moment it was given up."""

    id: int
    status: str
    action: str
    step: str
    attempts: int
    last_error: str
    params: dict[str, Any]
    created_at: datetime
    next_attempt_at: datetime
    instance_id: int | None
    journey_id: int | None
    journey_name: str | None
    contact_id: int
    contact_email: str | None


@dataclass
class Outcome:
    """What a retry or dismiss did: the ids moved, why each other asked-for id was not, and
    which of those the tenant has no row for."""

    changed: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Move:
    verb: str
    kind: str  # the step-log kind written to the contact's timeline (at most 20 characters)
    values: Callable[[datetime], dict[str, Any]]  # the columns set, given the time


RETRY = _Move("retried", "action retried", lambda now: {
    "status": "pending", "attempts": 0, "next_attempt_at": now, "claimed_by": None, "lease_until": None})
DISMISS = _Move("dismissed", "action dismissed", lambda now: {
    "status": DISMISSED, "claimed_by": None, "lease_until": None})


# --- reading -------------------------------------------------------------------------------
def _inline(value: str | int) -> ColumnElement[Any]:
    """A constant written into the SQL, not bound: a planner proves that a query only wants
    rows of a partial index from the constants it sees (PostgreSQL's plan for a prepared
    statement, reused across values, sees none)."""
    return literal(value, literal_execute=True)


# Failing rows are what the partial index ix_cj_outbox_failing holds: FAILING is its WHERE, term
# for term. SQLite uses a partial index only for a query that repeats that WHERE or one of its OR
# branches (it proves nothing more), and PostgreSQL estimates an AND of two status terms far too low.
DEAD_ROW = OutboxMessage.status == _inline(DEAD)
FAILING = or_(DEAD_ROW, and_(OutboxMessage.status == _inline("pending"), OutboxMessage.attempts > _inline(0)))
_FAILING_AS = {DEAD: [DEAD_ROW], RETRYING: [FAILING, ~DEAD_ROW]}


def _failing(status: str | None) -> list[ColumnElement[bool]]:
    """Failing rows, dead or retrying (``status``; None: both)."""
    return _FAILING_AS.get(status or "", [FAILING])


def _narrowed(tenant_id: int, f: ErrorFilter) -> list[ColumnElement[bool]]:
    """The tenant, journey and action terms of a filter (its status is the caller's)."""
    terms = [OutboxMessage.tenant_id == tenant_id]
    if f.action:
        terms.append(OutboxMessage.action == f.action)
    if f.journey_id is not None:
        terms.append(OutboxMessage.instance_id.in_(
            select(Instance.id).where(Instance.tenant_id == tenant_id, Instance.journey_id == f.journey_id)))
    return terms


def _rows() -> Select[OutboxMessage, int, str, str | None]:
    return (select(OutboxMessage, Instance.journey_id, Journey.name, Contact.email)
            .join(Contact, Contact.id == OutboxMessage.contact_id)
            .outerjoin(Instance, Instance.id == OutboxMessage.instance_id)
            .outerjoin(Journey, Journey.id == Instance.journey_id))


def _shown(row: Any) -> ActionError:
    o: OutboxMessage = row[0]
    status = RETRYING if o.status == "pending" and o.attempts > 0 else o.status
    return ActionError(o.id, status, o.action, o.step, o.attempts, o.last_error, dict(o.params or {}),
                       o.created_at, o.next_attempt_at, o.instance_id, row[1], row[2], o.contact_id, row[3])


def list_errors(s: Session, tenant_id: int, f: ErrorFilter, *, limit: int, offset: int = 0) -> list[ActionError]:
    """The filter's failed actions, newest first."""
    query = (_rows().where(*_narrowed(tenant_id, f), *_failing(f.status))
             .order_by(OutboxMessage.id.desc()).limit(limit).offset(offset))
    return [_shown(r) for r in s.execute(query)]


def count_errors(s: Session, tenant_id: int, f: ErrorFilter) -> int:
    query = select(func.count()).select_from(OutboxMessage).where(*_narrowed(tenant_id, f), *_failing(f.status))
    return int(s.scalar(query) or 0)


def dead_count(s: Session, tenant_id: int) -> int:
    """Dead rows of the tenant, counted up to ``BADGE_CAP`` (one bounded query, for the nav)."""
    capped = (select(OutboxMessage.id).where(OutboxMessage.tenant_id == tenant_id, DEAD_ROW)
              .limit(BADGE_CAP).subquery())
    return int(s.scalar(select(func.count()).select_from(capped)) or 0)


def get_error(s: Session, tenant_id: int, outbox_id: int) -> ActionError:
    """One outbox row of the tenant, whatever its status; ``NotFound`` for another tenant's."""
    row = s.execute(_rows().where(OutboxMessage.tenant_id == tenant_id, OutboxMessage.id == outbox_id)).first()
    if row is None:
        raise NotFound(f"no action {outbox_id}")
    return _shown(row)


def actions_in_use(s: Session, tenant_id: int) -> list[str]:
    """Action names of the tenant's failed rows (the filter's choices)."""
    query = select(OutboxMessage.action).where(OutboxMessage.tenant_id == tenant_id, *_failing(None)).distinct()
    return sorted(s.scalars(query))


# --- acting ----------------------------------------------------------------------------------
def retry(s: Session, tenant_id: int, now: datetime, by: str, *, ids: Iterable[int] | None = None,
          matching: ErrorFilter | None = None) -> Outcome:
    """Send dead rows again (pending, no attempts, due now, lease cleared): ``ids``, or every
    dead row ``matching`` names. ``by`` (who) goes to the contact's timeline. Their lanes
    are unparked: a retry by hand means now, not when the host's last failure said."""
    outcome = _apply(s, tenant_id, RETRY, now, by, ids, matching)
    for start in range(0, len(outcome.changed), _CHUNK):
        chunk = outcome.changed[start:start + _CHUNK]
        lanes.unpark(s, s.scalars(select(OutboxMessage.lane).where(OutboxMessage.id.in_(chunk))))
    return outcome


def dismiss(s: Session, tenant_id: int, now: datetime, by: str, *, ids: Iterable[int] | None = None,
            matching: ErrorFilter | None = None) -> Outcome:
    """Give dead rows up, as ``retry`` picks them: ``dismissed`` rows are never sent, and
    retention removes them as it does dead ones."""
    return _apply(s, tenant_id, DISMISS, now, by, ids, matching)


def _apply(s: Session, tenant_id: int, move: _Move, now: datetime, by: str, ids: Iterable[int] | None,
           matching: ErrorFilter | None) -> Outcome:
    if ids is not None:
        return _move_ids(s, tenant_id, move, list(ids), now, by)
    f = matching or ErrorFilter()
    if f.status not in (None, DEAD):
        return Outcome()  # only dead rows move; a filter on retrying rows matches none of them
    return Outcome(changed=_move(s, move, _narrowed(tenant_id, f), now, by))


def _move_ids(s: Session, tenant_id: int, move: _Move, ids: list[int], now: datetime, by: str) -> Outcome:
    outcome = Outcome()
    for start in range(0, len(ids), _CHUNK):
        chunk = sorted(set(ids[start:start + _CHUNK]))
        outcome.changed += _move(s, move, [OutboxMessage.tenant_id == tenant_id, OutboxMessage.id.in_(chunk)],
                                 now, by)
        _refuse(s, tenant_id, move, set(chunk) - set(outcome.changed), outcome)
    return outcome


def _move(s: Session, move: _Move, terms: Sequence[ColumnElement[bool]], now: datetime, by: str) -> list[int]:
    """One conditional UPDATE of the dead rows among ``terms``, and their timeline entries.

    The rows are read first for what the timeline says (RETURNING gives the new values);
    a dead row's attempts and error do not change until it moves, so the read holds."""
    dead = [*terms, DEAD_ROW]
    before = {r.id: r for r in s.execute(select(
        OutboxMessage.id, OutboxMessage.tenant_id, OutboxMessage.instance_id, OutboxMessage.step,
        OutboxMessage.action, OutboxMessage.attempts, OutboxMessage.last_error).where(*dead))}
    stmt = update(OutboxMessage).where(*dead).values(**move.values(now)).returning(OutboxMessage.id)
    moved = sorted(s.scalars(stmt, execution_options={"synchronize_session": False}))
    _log(s, move, [before[i] for i in moved if i in before], now, by)
    return moved


def _log(s: Session, move: _Move, moved: Sequence[Any], now: datetime, by: str) -> None:
    """A step-log row per moved row that has an instance: the contact's timeline says who
    sent it again (or gave it up) and the error it had, which stays there for good. A run
    whose step log retention already removed gets none (it would never be removed)."""
    instance_ids = sorted({r.instance_id for r in moved if r.instance_id is not None})
    journeys: dict[int, int] = {}
    for start in range(0, len(instance_ids), _CHUNK):
        journeys.update(s.execute(select(Instance.id, Instance.journey_id)
                                  .where(Instance.id.in_(instance_ids[start:start + _CHUNK]),
                                         Instance.history_pruned_at.is_(None))).all())
    logs = [{"tenant_id": r.tenant_id, "journey_id": journeys[r.instance_id], "instance_id": r.instance_id,
             "at": now, "step": r.step, "kind": move.kind, "branch": "",
             "detail": {"why": f"{r.action} {move.verb} by {by} after {r.attempts} failed attempts: {r.last_error}",
                        "outbox_id": r.id, "by": by, "error": r.last_error}}
            for r in moved if r.instance_id in journeys]
    if logs:
        s.execute(insert(StepLog), logs)


def _refuse(s: Session, tenant_id: int, move: _Move, ids: set[int], outcome: Outcome) -> None:
    """Why each of ``ids`` (not moved) stays as it is, in words an admin can act on."""
    if not ids:
        return
    found = {r.id: r for r in s.execute(select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.attempts,
                                               OutboxMessage.next_attempt_at)
                                        .where(OutboxMessage.tenant_id == tenant_id, OutboxMessage.id.in_(ids)))}
    for i in sorted(ids):
        outcome.refused[i] = f"Action {i} cannot be {move.verb}: " + \
            (_state(found[i]) if i in found else "there is no such action") + "."
        if i not in found:
            outcome.missing.append(i)


def _state(row: Any) -> str:
    if row.status == "done":
        return "it was already carried out, and is never sent twice"
    if row.status == DISMISSED:
        return "it was dismissed, and is never sent"
    if row.status == "pending" and row.attempts > 0:
        return f"it is still being retried (next attempt {row.next_attempt_at:%Y-%m-%d %H:%M} UTC)"
    if row.status == "pending":
        return "it is already queued to be sent"
    return f"it is {row.status}; only dead actions can be"
