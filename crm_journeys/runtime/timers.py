"""Fires due wake-ups: each becomes a "timer" decision for its instance, lateness recorded.

Waits are rows, never in-process timers: a restart loses nothing, and a wake-up that no
longer matches its instance (the contact moved on, or exited) is closed without effect.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from crm_journeys import metrics
from crm_journeys.runtime.batch import open_batch
from crm_journeys.runtime.claims import paused_instances
from crm_journeys.runtime.dispatch import decide_timer
from crm_journeys.runtime.starting_points import next_due as starting_points_due
from crm_journeys.storage.models import Contact, Instance, OutboxMessage, Wakeup

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime

log = logging.getLogger(__name__)


def fire_due(runtime: Runtime, limit: int = 500) -> int:
    """Fire up to ``limit`` due wake-ups; returns how many were taken.

    The whole batch fires in one transaction without savepoints: its instances and
    contacts are read in two plain queries as rows the batch writes back itself
    (``rows.RowWriter``), the writes grouped into one statement per table. If anything
    fails, it is rolled back and the batch is redone one wake-up at a time, each a batch
    of one in a savepoint (the same code), so one bad wake-up stays pending alone and is
    tried again on the next poll.
    """
    now = runtime.clock.now()
    try:
        with runtime.db.unit_of_work() as session:
            due = runtime.claims.wakeups(session, now, limit)
            _fire(runtime, session, due, now)
        metrics.wakeups_fired(now, [w.due_at for w in due])
        return len(due)
    except Exception:
        log.info("a wake-up batch failed; redoing it one by one", exc_info=True)
    fired = []
    with runtime.db.unit_of_work() as session:
        due = runtime.claims.wakeups(session, now, limit)
        for wakeup in due:
            try:
                with session.begin_nested():
                    _fire(runtime, session, [wakeup], now)
                fired.append(wakeup.due_at)
            except Exception:
                log.exception("wake-up %s of instance %s failed", wakeup.id, wakeup.instance_id,
                              extra={"tenant_id": wakeup.tenant_id, "instance_id": wakeup.instance_id})
    metrics.wakeups_fired(now, fired)
    return len(due)


def _fire(runtime: Runtime, session: Session, due: list[Any], now: datetime) -> None:
    """Close ``due`` (plain wake-up rows) and decide the ones still current, as one batch."""
    with open_batch(session, [], expected_rows=len(due)) as batch:
        instances = batch.rows.load(Instance, [w.instance_id for w in due])
        batch.rows.load(Contact, [i.contact_id for i in instances])
        for wakeup in due:
            batch.fired(wakeup, now)
            inst = batch.rows.get(Instance, wakeup.instance_id)
            if inst is not None and _current(wakeup, inst):
                decide_timer(runtime, session, inst, now, batch)


def _current(wakeup: Any, inst: Instance) -> bool:
    """A wake-up means something only while its instance still waits at that visit of that
    step (paused journeys' wake-ups are never claimed); otherwise it closes without effect."""
    return inst.status == "active" and inst.step == wakeup.step and inst.visits == wakeup.visit


def next_due(runtime: Runtime) -> datetime | None:
    """The earliest pending wake-up, date, lapse or outbox retry, so the worker (or a
    virtual clock) can sleep exactly until then."""
    with runtime.db.reading() as session:
        times = (decisions_due(session), _retry_due(session))
    return min((t for t in times if t is not None), default=None)


def decisions_due(session: Session) -> datetime | None:
    """The earliest pending wake-up, date schedule or lapse: when the worker's decisions
    loop next has something to fire (it asks every pass, with a read, rather than take
    the write lock three times to find nothing due)."""
    wake = session.scalar(select(func.min(Wakeup.due_at)).where(
        Wakeup.pending.is_(True), Wakeup.instance_id.not_in(paused_instances())))
    starting = starting_points_due(session)  # date schedules and lapses
    return min((t for t in (_aware(wake), starting) if t is not None), default=None)


def _retry_due(session: Session) -> datetime | None:
    ready = case((OutboxMessage.lease_until > OutboxMessage.next_attempt_at, OutboxMessage.lease_until),
                 else_=OutboxMessage.next_attempt_at)
    retry = session.scalar(select(func.min(ready)).where(OutboxMessage.status == "pending"))
    if isinstance(retry, str):  # SQLite hands back CASE over datetimes as text
        retry = datetime.fromisoformat(retry)
    return _aware(retry)


def _aware(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at
