"""How delivery stays fast without giving up order or safety.

* The dispatcher leases the outbox rows its batch queued inside its own transaction and
  hands them to the worker's pool only once that transaction committed.
* A contact's rows are never in flight at once, whichever claim (or worker) looks.
* Webhooks to one address reuse their connections.
* A worker's "is anything due?" read never queues for SQLite's write lock.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from crm_journeys.clock import Clock
from crm_journeys.runtime.delivery import Delivery
from crm_journeys.storage.models import OutboxMessage, Tenant
from tests.conftest import Harness
from tests.test_worker_lanes import Host, _rows, _send, _tenant, _until, start_worker  # noqa: F401 - a fixture

TWO_STEPS = {"format_version": 1, "name": "Two calls", "entry": {"policy": "every_time"},
             "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "x"}}],
             "first_step": "first",
             "steps": [{"id": "first", "type": "action", "action": "add_tag", "params": {"tag": "one"},
                        "next": "second"},
                       {"id": "second", "type": "action", "action": "add_tag", "params": {"tag": "two"},
                        "next": None}]}

EMAIL_THEN_TAG = {**TWO_STEPS, "name": "Email, then a tag",
                  "steps": [{"id": "first", "type": "action", "action": "send_email", "next": "second",
                             "params": {"email_id": "hello", "subject": "Hello", "body": "Hi there."}},
                            TWO_STEPS["steps"][1]]}  # type: ignore[index]


@pytest.fixture
def keep_alive_host() -> Iterator[Host]:
    host = Host(keep_alive=True)
    yield host
    host.close()


def _two_rows_of_one_contact(harness: Harness) -> list[OutboxMessage]:
    """A contact whose journey queued two actions (the second after the first's step)."""
    harness.publish(TWO_STEPS)
    harness.event("form_submitted", "ann@example.com", key="x")
    harness.worker.dispatcher.run_once()
    with harness.db.unit_of_work() as s:
        rows = list(s.scalars(select(OutboxMessage).where(OutboxMessage.tenant_id == harness.tenant_id)
                              .order_by(OutboxMessage.id)))
    assert len(rows) == 2 and rows[0].contact_id == rows[1].contact_id
    return rows


def test_a_contacts_second_row_waits_while_its_first_is_in_flight(harness: Harness) -> None:
    first, second = _two_rows_of_one_contact(harness)
    claims, now = harness.runtime.claims, harness.clock.now()
    with harness.db.unit_of_work() as s:  # worker A takes the first row only
        assert [r.id for r in claims.outbox(s, now, 1, "worker-a")] == [first.id]
    with harness.db.unit_of_work() as s:  # worker B finds the contact busy: nothing to take
        assert claims.outbox(s, now, 10, "worker-b") == []
    with harness.db.unit_of_work() as s:  # A closes the first row
        s.execute(update(OutboxMessage).where(OutboxMessage.id == first.id)
                  .values(status="done", lease_until=None))
    with harness.db.unit_of_work() as s:
        assert [r.id for r in claims.outbox(s, now, 10, "worker-b")] == [second.id]


def test_a_dead_workers_lease_holds_the_contact_only_until_it_runs_out(harness: Harness) -> None:
    first, second = _two_rows_of_one_contact(harness)
    claims = harness.runtime.claims
    with harness.db.unit_of_work() as s:
        claims.outbox(s, harness.clock.now(), 1, "killed")
    harness.clock.advance(timedelta(seconds=1))
    with harness.db.unit_of_work() as s:  # still held: nobody takes either row
        assert claims.outbox(s, harness.clock.now(), 10, "heir") == []
    harness.clock.advance(claims.outbox_lease)
    with harness.db.unit_of_work() as s:  # the lease ran out: the rows are taken over, in order
        assert [r.id for r in claims.outbox(s, harness.clock.now(), 10, "heir")] == [first.id, second.id]


def test_the_dispatcher_hands_the_rows_it_queued_to_the_pool(harness: Harness) -> None:
    harness.publish(TWO_STEPS)
    for name in ("ann", "bob", "cy"):
        harness.event("form_submitted", f"{name}@example.com", key="x")
    pool = Delivery(harness.runtime, "w-hand", threads=2)
    try:
        assert harness.worker.dispatcher.run_once(hand_off=pool) == 3
        handed = pool.handed.get_nowait()
        rows = {r.id: r for r in _rows(harness.db, harness.tenant_id)}
        # three contacts, one row each in flight (each one's second row waits for its first)
        assert len(handed) == 3 and len({r.contact.id for r in handed}) == 3
        for row in handed:
            assert rows[row.id].claimed_by == "w-hand" and rows[row.id].lease_until is not None
        assert sum(1 for r in rows.values() if r.claimed_by is None) == 3
    finally:
        pool.shutdown(wait=0)


def test_a_failed_dispatch_hands_nothing_over(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.publish(TWO_STEPS)
    harness.event("form_submitted", "ann@example.com", key="x")
    pool = Delivery(harness.runtime, "w-fail", threads=2)

    def claim_then_fail(session: Any) -> list[Any]:
        Delivery.claim_for_dispatch(pool, session)
        raise RuntimeError("the batch's transaction does not commit")

    monkeypatch.setattr(pool, "claim_for_dispatch", claim_then_fail)
    try:
        harness.worker.dispatcher.run_once(hand_off=pool)  # redone event by event, no hand-off
        assert pool.handed.empty()
        assert all(r.claimed_by is None for r in _rows(harness.db, harness.tenant_id))
    finally:
        pool.shutdown(wait=0)


def test_webhooks_to_one_address_reuse_their_connections(sqlite_db, keep_alive_host, start_worker) -> None:  # noqa: F811
    h = _tenant(sqlite_db, keep_alive_host.url)
    start_worker(threads=2, per_lane=2)
    _send(h, 20, "k")
    assert _until(lambda: len(set(keep_alive_host.keys)) == 20)
    assert _until(lambda: all(r.status == "done" for r in _rows(sqlite_db, h.tenant_id)))
    assert len(keep_alive_host.keys) == 20  # each once
    assert len(keep_alive_host.sockets) <= 2  # at most one connection per delivery thread


def test_a_read_does_not_queue_for_sqlites_write_lock(sqlite_db) -> None:
    holder = sqlite3.connect(sqlite_db.engine.url.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing, and takes its time
    try:
        started = time.monotonic()
        with sqlite_db.reading() as s:
            assert s.scalar(select(Tenant.id).limit(1)) is None
        assert time.monotonic() - started < 5  # a writer would have waited up to 30 s
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_the_sandbox_crms_rows_run_on_loop_threads_in_order(database, monkeypatch) -> None:
    """The sandbox CRM writes our own database: its rows never go to the pool (threads
    would only contend for the database) but run on the loop threads (on PostgreSQL the
    decisions loop's helps the delivery loop's), and each contact's two steps still run
    in order, however the rows are spread over passes and threads."""
    import threading

    from crm_journeys.connectors.sandbox import SandboxConnector
    from crm_journeys.runtime.services import Runtime
    from crm_journeys.runtime.worker import Worker

    seen: list[tuple[str, str, str]] = []  # (thread, contact, tag)
    real = SandboxConnector.add_tag

    def add_tag(self, ref, tag, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((threading.current_thread().name, ref, tag))
        return real(self, ref, tag, **kwargs)

    monkeypatch.setattr(SandboxConnector, "add_tag", add_tag)
    monkeypatch.setattr("crm_journeys.runtime.delivery.LOCAL_BATCH", 3)  # rows left for the next pass
    h = Harness(database, Clock())  # type: ignore[arg-type] # a real clock: the loops run in real time
    h.publish(TWO_STEPS)
    worker = Worker(Runtime(db=database), worker_id="w-local", idle_sleep=0.1, threads=4)
    thread = threading.Thread(target=worker.run_forever, name="decisions", daemon=True)
    thread.start()
    try:
        _send(h, 10, "s")
        assert _until(lambda: len(_rows(database, h.tenant_id)) == 20
                      and all(r.status == "done" for r in _rows(database, h.tenant_id)))
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert {name for name, _, _ in seen} <= {"decisions", "crm-journeys-delivery"}  # never the pool
    assert len(seen) == 20
    for contact in {ref for _, ref, _ in seen}:
        assert [tag for _, ref, tag in seen if ref == contact] == ["one", "two"]


def test_a_tenant_whose_secrets_cannot_be_read_holds_back_only_its_own_rows(
        sqlite_db, start_worker, caplog) -> None:  # noqa: F811
    """Tenant A's webhook secret was sealed with a key this worker does not have (a key
    rotated on one machine only): A's rows fail on their own rows, saying why, while
    tenant B's rows are delivered, and no pass of the worker fails for everyone (which
    would log a traceback on every pass of the decisions loop)."""
    from sqlalchemy import text

    a, b = Harness(sqlite_db, Clock()), Harness(sqlite_db, Clock())  # type: ignore[arg-type]
    for h in (a, b):
        h.publish(EMAIL_THEN_TAG)
    with sqlite_db.unit_of_work() as s:  # what another key sealed: unreadable here
        s.execute(text("UPDATE cj_tenant SET webhook_secret = 'sealed:gAAAAABnot-a-token' WHERE id = :id"),
                  {"id": a.tenant_id})
    caplog.set_level("WARNING", logger="crm_journeys.runtime")
    start_worker(threads=4)
    _send(a, 3, "a")
    _send(b, 3, "b")
    assert _until(lambda: len(_rows(sqlite_db, b.tenant_id)) == 6
                  and all(r.status == "done" for r in _rows(sqlite_db, b.tenant_id)))
    assert {r.action for r in _rows(sqlite_db, b.tenant_id)} == {"send_email", "add_tag"}
    assert _until(lambda: all(r.attempts >= 1 for r in _rows(sqlite_db, a.tenant_id)))
    failed = _rows(sqlite_db, a.tenant_id)
    assert failed and all(r.status != "done" and "cannot be decrypted" in (r.last_error or "") for r in failed)
    assert not [r for r in caplog.records if "pass" in r.getMessage() and "failed" in r.getMessage()]
