"""Dispatch and wake-ups have one code path, a batch; a failed batch is redone one event
(or wake-up) at a time, each a batch of one in a savepoint.

A batch reads its contacts and instances up front, creates new rows outside the ORM's
unit of work and writes them with one statement per table. Batches of many and batches of
one must leave the same rows; a normal stream never needs the redo; a poison event is
marked failed alone and leaves nothing behind (its ids and cached rows included).
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crm_journeys.clock import VirtualClock
from crm_journeys.runtime import dispatch, timers
from crm_journeys.runtime.batch import BatchCache, open_batch
from crm_journeys.runtime.ingest import IncomingEvent
from crm_journeys.runtime.services import Runtime
from crm_journeys.runtime.worker import Worker
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import Contact, InboxEvent, Instance, Journey, StepLog, Wakeup

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import workload  # noqa: E402
from tests.conftest import Harness  # noqa: E402

JOURNEYS = ["welcome_promo.json", "welcome_promo_react.json", "multi_start_filtered.json"]


def _one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch of more than one event or wake-up fails at once and is redone one by one."""
    run, fire = dispatch.Dispatcher._run, timers._fire

    def run_alone(self: dispatch.Dispatcher, session: Any, events: list[Any]) -> None:
        if len(events) > 1:
            raise RuntimeError("batches of one only for this run")
        run(self, session, events)

    def fire_alone(runtime: Any, session: Any, due: list[Any], now: Any) -> None:
        if len(due) > 1:
            raise RuntimeError("batches of one only for this run")
        fire(runtime, session, due, now)

    monkeypatch.setattr(dispatch.Dispatcher, "_run", run_alone)
    monkeypatch.setattr(timers, "_fire", fire_alone)


def _run(db: Database) -> tuple[dict[str, Any], dict[str, Any]]:
    """The outcome while contacts wait (events only) and after their wake-ups fired."""
    documents = [json.loads((ROOT / "examples" / name).read_text()) for name in JOURNEYS]
    again = {**documents[0], "name": "Welcome on every signup", "entry": {"policy": "every_time"}}
    documents.append(again)  # a second entry finds its once-per-contact email already queued
    tenant_id = workload.setup_tenant(db, workload.START, documents)
    clock = VirtualClock(workload.START)
    worker = Worker(Runtime(db=db, clock=clock), batch=50)
    workload.ingest_all(db, tenant_id, workload.mixed_events(1_500, 150, seed=11), clock.now(), chunk=300)
    worker.drain()
    opened = [IncomingEvent(type="email_opened", key="welcome", contact=workload.contact(k),
                            dedup_key=f"open:{k}") for k in range(0, 150, 3)]
    workload.ingest_all(db, tenant_id, opened, clock.now())
    worker.drain()
    waiting = workload.outcome(db, tenant_id)
    clock.advance(timedelta(days=4))
    worker.drain()
    return waiting, {**workload.outcome(db, tenant_id), "log": _log_summary(db, tenant_id)}


def _log_summary(db: Database, tenant_id: int) -> Counter[tuple[Any, ...]]:
    """What the step log says happened, without row ids: kinds, steps, branches, whether
    each action was queued, and which rows carry the decision's facts."""
    with db.unit_of_work() as s:
        rows = s.execute(select(Journey.name, StepLog.kind, StepLog.step, StepLog.branch, StepLog.detail)
                         .join(Journey, Journey.id == StepLog.journey_id).where(StepLog.tenant_id == tenant_id))
        return Counter((name, kind, step, branch, detail.get("queued"), "facts" in detail)
                       for name, kind, step, branch, detail in rows)


def test_batches_of_many_leave_the_rows_of_batches_of_one(
        database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="crm_journeys.runtime")
    fast = _run(database)
    assert not [r for r in caplog.records if "redoing" in r.getMessage()], "a normal stream fell back"
    assert {i[4] for i in fast[0]["instances"]} >= {"active", "completed", "exited"}
    assert len(fast[1]["outbox"]) > len(fast[0]["outbox"])  # the wake-ups sent promos and reminders
    assert any(key[4] is False for key in fast[1]["log"])  # some actions were already done (entry twice)

    _one_at_a_time(monkeypatch)
    reference = Database(f"sqlite:///{tmp_path / 'reference.db'}")
    reference.upgrade()
    try:
        slow = _run(reference)
    finally:
        reference.dispose()
    assert any("redoing" in r.getMessage() for r in caplog.records)
    assert fast == slow



def _poison_first(monkeypatch: pytest.MonkeyPatch, email: str) -> list[int]:
    """The first event of ``email`` fails once all its rows are queued (a contact, an
    instance, an outbox row, a wake-up, logs); returns the failed event ids."""
    failed: list[int] = []
    mark_done = BatchCache.mark_done

    def poisoned(self: BatchCache, event: Any, now: Any) -> None:
        if not failed and (event.payload.get("contact") or {}).get("email") == email:
            failed.append(event.id)
        if failed and event.id == failed[0]:
            raise RuntimeError(f"poisoned {email}")
        mark_done(self, event, now)

    monkeypatch.setattr(BatchCache, "mark_done", poisoned)
    return failed


def test_a_poison_event_is_marked_failed_alone_and_leaves_nothing_behind(
        harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="crm_journeys.runtime")
    harness.publish("welcome_promo.json")
    failed = _poison_first(monkeypatch, "bad@example.com")
    for email in ("a@example.com", "bad@example.com", "b@example.com"):
        harness.event("subscribed", email, key="newsletter")
    harness.run()  # on SQLite b's contact and instance take the ids the rolled-back rows had
    assert any("redoing" in r.getMessage() for r in caplog.records)
    assert len(failed) == 1
    harness.event("subscribed", "bad@example.com", key="newsletter", again=True)  # the same contact, now fine
    harness.run()

    with harness.db.unit_of_work() as s:
        events = {e.id: e for e in s.scalars(select(InboxEvent).where(InboxEvent.tenant_id == harness.tenant_id))}
        bad = events.pop(failed[0])
        assert (bad.status, bad.attempts, bad.error) == ("failed", 1, "RuntimeError: poisoned bad@example.com")
        assert bad.processed_at is not None
        assert {(e.status, e.attempts) for e in events.values()} == {("done", 1)}
        contacts = dict(s.execute(select(Contact.id, Contact.email).where(Contact.tenant_id == harness.tenant_id)).all())
        assert sorted(contacts.values()) == ["a@example.com", "b@example.com", "bad@example.com"]
        instances = list(s.scalars(select(Instance).where(Instance.tenant_id == harness.tenant_id)))
        assert sorted(contacts[i.contact_id] for i in instances) == sorted(contacts.values())
        assert {i.step for i in instances} == {"opened_welcome"}
        by_instance = {i.id: contacts[i.contact_id] for i in instances}
        wakeups = list(s.scalars(select(Wakeup).where(Wakeup.tenant_id == harness.tenant_id)))
        assert sorted(by_instance[w.instance_id] for w in wakeups if w.pending) == sorted(contacts.values())
        logs = list(s.scalars(select(StepLog).where(StepLog.tenant_id == harness.tenant_id)))
        assert {log.instance_id for log in logs} == set(by_instance)
    assert sorted((contacts[o.contact_id], o.step) for o in harness.outbox()) == [
        (email, "welcome") for email in sorted(contacts.values())]


def test_a_failing_wake_up_stays_pending_alone(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.publish("welcome_promo.json")
    for email in ("a@example.com", "bad@example.com", "b@example.com"):
        harness.event("subscribed", email, key="newsletter")
    harness.run()
    with harness.db.unit_of_work() as s:
        bad_contact = s.scalar(select(Contact.id).where(Contact.tenant_id == harness.tenant_id,
                                                        Contact.email == "bad@example.com"))
    decide = timers.decide_timer

    def failing(runtime: Any, session: Any, inst: Any, now: Any, batch: Any) -> None:
        decide(runtime, session, inst, now, batch)  # its rows are queued, then rolled back
        if inst.contact_id == bad_contact:
            raise RuntimeError("a bad wake-up")

    monkeypatch.setattr(timers, "decide_timer", failing)
    harness.clock.advance(timedelta(days=4))
    assert timers.fire_due(harness.runtime) == 3
    with harness.db.unit_of_work() as s:
        rows = s.execute(select(Contact.email, Wakeup.pending, Instance.step)
                         .join(Instance, Instance.id == Wakeup.instance_id)
                         .join(Contact, Contact.id == Instance.contact_id)
                         .where(Wakeup.tenant_id == harness.tenant_id)).all()
    assert sorted(tuple(r) for r in rows) == [("a@example.com", False, "reminder"),
                                              ("b@example.com", False, "reminder"),
                                              ("bad@example.com", True, "opened_welcome")]
    monkeypatch.undo()
    harness.run()  # tried again on the next poll
    assert sorted(step for step, _ in harness.actions_for("bad@example.com")) == ["reminder", "welcome"]


def test_a_batch_of_one_never_sees_the_rows_of_a_rolled_back_one(harness: Harness) -> None:
    """The ORM may hold a batch's new row (an ORM flush in the middle of the batch wrote
    it, a query then loaded it); after the savepoint is rolled back that object must not
    stand in for the row the next batch makes, which on SQLite gets the same id."""
    def new_contact(batch: BatchCache, email: str) -> Any:
        return batch.new_row(Contact, dict(tenant_id=harness.tenant_id, external_id=email, email=email,
                                           fields={}, tags=[], groups=[], segments=[], activity={},
                                           updated_at=harness.clock.now()))

    with harness.db.unit_of_work() as s:
        with pytest.raises(RuntimeError, match="poison"), s.begin_nested(), open_batch(s, []) as batch:
            gone = new_contact(batch, "gone@example.com")
            batch.rows.insert_new()  # as a flush in the middle of the batch does
            held = s.get(Contact, gone.id)  # still referenced later (say, by a logged traceback)
            assert held is not None and held.email == "gone@example.com"
            raise RuntimeError("poison")
        with s.begin_nested(), open_batch(s, []) as batch:
            kept = new_contact(batch, "kept@example.com")
        found = s.get(Contact, kept.id)
        assert found is not None and found.email == "kept@example.com"
        assert s.scalars(select(Contact.email).where(Contact.tenant_id == harness.tenant_id)).all() == [
            "kept@example.com"]
