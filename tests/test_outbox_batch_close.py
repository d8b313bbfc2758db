"""When outbox rows are closed, and why that keeps every action exactly once.

Rows whose effect is keyed by the idempotency key (the sandbox CRM keeps one record per
key) are closed together at the end of their batch: a worker killed before that close
re-runs them after the lease, and the CRM still holds one record per key. Rows whose
effect a re-run would repeat (SMTP sends, tag changes) are closed right after they ran,
so a crash can repeat at most the one row in flight.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select, update

from crm_journeys.clock import VirtualClock
from crm_journeys.connectors.sandbox import SandboxConnector
from crm_journeys.errors import FatalConnectorError
from crm_journeys.runtime import outbox
from crm_journeys.runtime.claims import LEASE
from crm_journeys.runtime.outbox import OutboxRunner
from crm_journeys.storage.models import InboxEvent, OutboxMessage, SandboxRecord, Tenant

CONTACTS = 6


class Died(BaseException):
    """The worker was interrupted here (nothing in the runtime catches a BaseException)."""


def queue_welcome_emails(harness, n: int = CONTACTS) -> None:  # type: ignore[no-untyped-def]
    """``n`` welcome emails queued by the real dispatcher, not yet delivered."""
    harness.publish("welcome_promo.json")
    for i in range(n):
        harness.event("subscribed", f"p{i}@example.com", key="newsletter")
    while harness.worker.dispatcher.run_once(200):
        pass
    assert [r.status for r in harness.outbox()] == ["pending"] * n


def done_rows(db, tenant_id: int) -> int:  # type: ignore[no-untyped-def]
    with db.unit_of_work() as s:
        return s.scalar(select(func.count()).where(OutboxMessage.tenant_id == tenant_id,
                                                   OutboxMessage.status == "done")) or 0


def emails_per_key(harness) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with harness.db.unit_of_work() as s:
        return dict(s.execute(select(SandboxRecord.idempotency_key, func.count())
                              .where(SandboxRecord.tenant_id == harness.tenant_id, SandboxRecord.kind == "email")
                              .group_by(SandboxRecord.idempotency_key)).all())


def sent_events(harness) -> int:  # type: ignore[no-untyped-def]
    with harness.db.unit_of_work() as s:
        return s.scalar(select(func.count()).where(InboxEvent.tenant_id == harness.tenant_id,
                                                   InboxEvent.type == "email_sent")) or 0


def watch_done_at_each_call(monkeypatch, harness, method: str) -> list[int]:  # type: ignore[no-untyped-def]
    """How many of the tenant's rows were closed when each call of the sandbox's
    ``method`` began."""
    seen: list[int] = []
    real = getattr(SandboxConnector, method)

    def watching(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(done_rows(harness.db, harness.tenant_id))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SandboxConnector, method, watching)
    return seen


# --- keyed rows: one close per batch ----------------------------------------------------

def test_keyed_rows_are_closed_together_at_the_end_of_the_batch(harness, monkeypatch):
    queue_welcome_emails(harness)
    seen = watch_done_at_each_call(monkeypatch, harness, "send_email")
    assert OutboxRunner(harness.runtime).run_once(50) == CONTACTS
    assert seen == [0] * CONTACTS  # no row was closed while the batch ran
    assert done_rows(harness.db, harness.tenant_id) == CONTACTS
    assert sent_events(harness) == CONTACTS


def test_a_batch_running_long_closes_its_finished_rows_early(harness, monkeypatch):
    monkeypatch.setattr(outbox, "FLUSH_AFTER", 0.0)
    queue_welcome_emails(harness)
    seen = watch_done_at_each_call(monkeypatch, harness, "send_email")
    OutboxRunner(harness.runtime).run_once(50)
    assert seen == list(range(CONTACTS))


def _killed_worker(url: str, now: Any, die_after: int) -> None:
    """A worker process that is SIGKILLed right after the CRM accepted its ``die_after``-th
    email: no ``finally``, no close, exactly as a crash or an OOM kill."""
    from crm_journeys.runtime.services import Runtime
    from crm_journeys.storage.db import Database

    real = SandboxConnector.send_email
    calls = {"n": 0}

    def dying(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == die_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    SandboxConnector.send_email = dying  # type: ignore[method-assign]  # this child process only
    OutboxRunner(Runtime(db=Database(url), clock=VirtualClock(now)), "doomed").run_once(50)


def test_worker_killed_mid_batch_reruns_after_the_lease_and_the_crm_keeps_one_record_per_key(harness):
    queue_welcome_emails(harness)
    child = multiprocessing.get_context("fork").Process(
        target=_killed_worker, args=(harness.db.url, harness.clock.now(), 4))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert len(emails_per_key(harness)) == 4  # the CRM took four emails...
    rows = harness.outbox()
    assert {(r.status, r.claimed_by, r.attempts) for r in rows} == {("pending", "doomed", 0)}  # ...none closed
    assert sent_events(harness) == 0

    assert OutboxRunner(harness.runtime).run_once(50) == 0  # leased: nobody else takes them yet
    harness.clock.advance(LEASE + timedelta(seconds=1))
    assert OutboxRunner(harness.runtime).run_once(50) == CONTACTS  # all re-run, the four included
    assert {(r.status, r.attempts) for r in harness.outbox()} == {("done", 1)}
    assert sorted(emails_per_key(harness).values()) == [1] * CONTACTS
    assert sent_events(harness) == CONTACTS


def test_interrupted_batch_closes_what_finished_and_reruns_the_row_in_flight(harness, monkeypatch):
    queue_welcome_emails(harness)
    real = SandboxConnector.send_email
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            raise Died()
        return result

    monkeypatch.setattr(SandboxConnector, "send_email", interrupted)
    with pytest.raises(Died):
        OutboxRunner(harness.runtime).run_once(50)
    assert [r.status for r in harness.outbox()] == ["done", "done"] + ["pending"] * (CONTACTS - 2)
    monkeypatch.setattr(SandboxConnector, "send_email", real)
    harness.clock.advance(LEASE + timedelta(seconds=1))
    OutboxRunner(harness.runtime).run_once(50)
    assert [r.status for r in harness.outbox()] == ["done"] * CONTACTS
    assert sorted(emails_per_key(harness).values()) == [1] * CONTACTS


def test_failures_wait_for_the_batch_close_and_are_retried(harness, monkeypatch):
    from crm_journeys.errors import RetriableConnectorError

    queue_welcome_emails(harness)

    def down(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RetriableConnectorError("503 from host")

    monkeypatch.setattr(SandboxConnector, "send_email", down)
    OutboxRunner(harness.runtime).run_once(50)
    rows = harness.outbox()
    assert {(r.status, r.attempts, r.lease_until) for r in rows} == {("pending", 1, None)}
    assert all("503" in r.last_error and r.next_attempt_at > harness.clock.now() for r in rows)


# --- rows a re-run would repeat: closed one by one --------------------------------------

def test_tag_changes_are_closed_one_by_one(harness, monkeypatch):
    harness.publish({
        "format_version": 1, "name": "Tag leads", "entry": {"policy": "every_time"},
        "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "demo"}}],
        "first_step": "tag",
        "steps": [{"id": "tag", "type": "action", "action": "add_tag", "params": {"tag": "buyer"},
                   "next": None, "run_multiple_times": True}]})
    for i in range(4):
        harness.event("form_submitted", f"t{i}@example.com", key="demo")
    while harness.worker.dispatcher.run_once(200):
        pass
    seen = watch_done_at_each_call(monkeypatch, harness, "add_tag")
    OutboxRunner(harness.runtime).run_once(50)
    assert seen == [0, 1, 2, 3]
    assert done_rows(harness.db, harness.tenant_id) == 4


class Inbox:
    """An SMTP server's handler that notes, as each message arrives, how many of the
    tenant's outbox rows were already closed."""

    def __init__(self, harness: Any) -> None:
        self.harness = harness
        self.closed_at_arrival: list[int] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.closed_at_arrival.append(done_rows(self.harness.db, self.harness.tenant_id))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_smtp_sends_are_closed_one_by_one(harness):
    inbox = Inbox(harness)
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        with harness.db.unit_of_work() as s:
            s.execute(update(Tenant).where(Tenant.id == harness.tenant_id)
                      .values(settings={"smtp_url": f"smtp://127.0.0.1:{controller.port}"}))
        queue_welcome_emails(harness, 4)
        OutboxRunner(harness.runtime).run_once(50)
    finally:
        controller.stop()
    # Each message found every earlier one's row closed: a crash re-sends at most one.
    assert inbox.closed_at_arrival == [0, 1, 2, 3]
    assert done_rows(harness.db, harness.tenant_id) == 4
    assert emails_per_key(harness) == {}  # SMTP, not the CRM


# --- the sandbox CRM's idempotent write -------------------------------------------------

@pytest.fixture
def sandbox(harness):  # type: ignore[no-untyped-def]
    harness.runtime.connector_for(harness.tenant_id)
    return harness.runtime.connector_for(harness.tenant_id)


def test_sandbox_keeps_one_record_per_key(sandbox, harness):
    from crm_journeys.connectors.base import EmailSpec

    spec = EmailSpec(subject="Hi", html="hi", text="hi", email_id="hello")
    first = sandbox.send_email("email:Zoe@Example.com", spec, idempotency_key="k1")
    again = sandbox.send_email("email:zoe@example.com", spec, idempotency_key="k1")
    other = sandbox.send_email("email:zoe@example.com", spec, idempotency_key="k2")
    assert (first.created, again.created, other.created) == (True, False, True)
    assert first.external_id == again.external_id != other.external_id
    assert emails_per_key(harness) == {"k1": 1, "k2": 1}
    [contact] = sandbox.sync_page(None).contacts
    assert contact.email == "zoe@example.com"
    by_id = sandbox.send_email(contact.external_id, spec, idempotency_key="k3")
    assert by_id.created and len(sandbox.sync_page(None).contacts) == 1


def test_sandbox_write_for_an_unknown_contact_is_fatal(sandbox):
    from crm_journeys.connectors.base import LeadSpec

    with pytest.raises(FatalConnectorError, match="no sandbox contact"):
        sandbox.create_lead("999999", LeadSpec(title="x"), idempotency_key="k")
    with pytest.raises(FatalConnectorError, match="not a sandbox contact id"):
        sandbox.create_lead("hubspot-17", LeadSpec(title="x"), idempotency_key="k")


def test_a_row_that_cannot_be_closed_does_not_take_a_sent_rows_close_with_it(harness, monkeypatch):
    queue_welcome_emails(harness, 2)
    harness.publish({
        "format_version": 1, "name": "Tag leads", "entry": {"policy": "every_time"},
        "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "demo"}}],
        "first_step": "tag",
        "steps": [{"id": "tag", "type": "action", "action": "add_tag", "params": {"tag": "lead"},
                   "next": None, "run_multiple_times": True}]})
    harness.event("form_submitted", "t0@example.com", key="demo")
    while harness.worker.dispatcher.run_once(200):
        pass
    email_0, email_1, tag = harness.outbox()
    real = outbox.ingest_many

    def poisoned(session, tenant_id, events, now):  # type: ignore[no-untyped-def]
        if any(e.dedup_key == f"sent:{email_1.idempotency_key}" for e in events):
            raise ValueError("this row's event cannot be stored")
        return real(session, tenant_id, events, now)

    monkeypatch.setattr(outbox, "ingest_many", poisoned)
    with pytest.raises(ValueError):
        OutboxRunner(harness.runtime).run_once(50)
    statuses = {r.id: (r.status, r.lease_until is not None) for r in harness.outbox()}
    assert statuses == {email_0.id: ("done", False), email_1.id: ("pending", True), tag.id: ("done", False)}
