"""Retry and dismiss against the real outbox worker on a virtual clock: a retried action
reaches the host exactly once (even when the failed attempts had written), two admins
retrying at once move a row once, dismissed rows are never sent and retention removes
them as dead ones. Real SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from crm_journeys.errors import RetriableConnectorError
from crm_journeys.runtime import action_errors as errors
from crm_journeys.runtime.outbox import MAX_ATTEMPTS
from crm_journeys.runtime.retention import prune
from crm_journeys.storage.models import OutboxMessage, StepLog, Tenant
from tests.refusing_host import LEAD_JOURNEY, RefusingHost, missing_property


@pytest.fixture
def host(monkeypatch) -> RefusingHost:
    return RefusingHost(monkeypatch)


def dead_leads(harness, host, *emails, write_first=False) -> list[int]:
    """One dead create_lead row per email: a timeout after the host wrote (``write_first``,
    given up after MAX_ATTEMPTS), or a 400 for a missing property."""
    harness.publish(LEAD_JOURNEY)
    host.failure = RetriableConnectorError("timed out") if write_first else missing_property()
    host.write_first = write_first
    for email in emails:
        harness.event("form_submitted", email, key="demo")
    harness.run()
    harness.advance(days=3)
    host.failure = None
    rows = harness.outbox()
    assert {r.status for r in rows} == {"dead"}
    return [r.id for r in rows]


def act(harness, move, ids=None, matching=None, by="olga@shop.example") -> errors.Outcome:
    with harness.db.unit_of_work() as s:
        return move(s, harness.tenant_id, harness.clock.now(), by, ids=ids, matching=matching)


@pytest.mark.parametrize("write_first", [False, True], ids=["refused", "written-then-timed-out"])
def test_a_retried_action_reaches_the_host_exactly_once(harness, host, write_first):
    [rid] = dead_leads(harness, host, "ada@example.com", write_first=write_first)
    [before] = harness.outbox()
    assert before.attempts == (MAX_ATTEMPTS if write_first else 1)
    assert len(harness.crm_records("lead")) == (1 if write_first else 0)
    calls = host.calls

    assert act(harness, errors.retry, ids=[rid]).changed == [rid]
    [row] = harness.outbox()
    assert (row.status, row.attempts, row.claimed_by, row.lease_until) == ("pending", 0, None, None)
    assert row.next_attempt_at == harness.clock.now()
    assert (row.idempotency_key, row.last_error) == (before.idempotency_key, before.last_error)
    harness.run()
    [row] = harness.outbox()
    assert (row.status, row.attempts) == ("done", 1)
    assert host.calls == calls + 1
    assert len(harness.crm_records("lead")) == 1  # the same key: the host keeps one lead

    refused = act(harness, errors.retry, ids=[rid])
    assert refused.changed == [] and "already carried out" in refused.refused[rid]
    harness.advance(days=1)
    assert host.calls == calls + 1 and len(harness.crm_records("lead")) == 1
    with harness.db.unit_of_work() as s:
        [log] = s.scalars(select(StepLog).where(StepLog.tenant_id == harness.tenant_id,
                                                StepLog.kind == "action retried")).all()
        assert log.detail["outbox_id"] == rid and log.detail["error"] == before.last_error
        assert log.detail["by"] == "olga@shop.example" and log.step == "lead"


def retry_twice_at_once(harness, rid: int) -> list[errors.Outcome]:
    """Two admins (two threads, two transactions) retry the same row at the same moment."""
    start = threading.Barrier(2)
    outcomes: list[errors.Outcome] = []

    def click(who: str) -> None:
        start.wait()
        outcomes.append(act(harness, errors.retry, ids=[rid], by=who))

    clicks = [threading.Thread(target=click, args=(who,)) for who in ("olga", "ivan")]
    for t in clicks:
        t.start()
    for t in clicks:
        t.join()
    return outcomes


def test_two_admins_retrying_at_once_move_each_row_once(harness, host):
    ids = dead_leads(harness, host, *(f"c{i}@example.com" for i in range(4)))
    for rid in ids:
        outcomes = retry_twice_at_once(harness, rid)
        assert sorted(len(o.changed) for o in outcomes) == [0, 1]
        [refusal] = [o.refused[rid] for o in outcomes if o.refused]
        assert refusal == f"Action {rid} cannot be retried: it is already queued to be sent."
    with harness.db.unit_of_work() as s:
        logged = s.scalars(select(StepLog.detail).where(StepLog.tenant_id == harness.tenant_id,
                                                        StepLog.kind == "action retried")).all()
    assert sorted(d["outbox_id"] for d in logged) == ids
    harness.run()
    assert len(harness.crm_records("lead")) == 4 and host.calls == 8


def test_a_dismissed_action_is_never_sent_and_goes_with_the_dead(harness, host):
    dismissed, dead, retried = dead_leads(harness, host, "a@example.com", "b@example.com", "c@example.com")
    assert act(harness, errors.dismiss, ids=[dismissed]).changed == [dismissed]
    assert act(harness, errors.retry, ids=[retried]).changed == [retried]
    assert act(harness, errors.dismiss, ids=[retried]).refused == \
        {retried: f"Action {retried} cannot be dismissed: it is already queued to be sent."}
    assert act(harness, errors.retry, matching=errors.ErrorFilter(status="retrying")).changed == []
    harness.advance(days=30)
    assert len(harness.crm_records("lead")) == 1
    status = {r.id: r.status for r in harness.outbox()}
    assert status == {dismissed: "dismissed", dead: "dead", retried: "done"}
    with harness.db.unit_of_work() as s:
        assert errors.dead_count(s, harness.tenant_id) == 1
        assert [e.id for e in errors.list_errors(s, harness.tenant_id, errors.ErrorFilter(), limit=10)] == [dead]
        slug = s.scalar(select(Tenant.slug).where(Tenant.id == harness.tenant_id))

    kept = prune(harness.db, harness.clock.now() + timedelta(days=100), [slug])[slug]
    assert kept["cj_outbox:dead"] == 0 and {r.id for r in harness.outbox()} == {dismissed, dead}
    removed = prune(harness.db, harness.clock.now() + timedelta(days=181), [slug])[slug]
    assert removed["cj_outbox:dead"] == 2 and harness.outbox() == []


def test_the_nav_count_stops_at_its_cap(harness):
    with harness.db.unit_of_work() as s:
        assert errors.dead_count(s, harness.tenant_id) == 0
    harness.publish(LEAD_JOURNEY)
    harness.event("form_submitted", "ada@example.com", key="demo")
    harness.run()
    [row] = harness.outbox()
    now = harness.clock.now()
    with harness.db.unit_of_work() as s:
        s.add_all(OutboxMessage(tenant_id=harness.tenant_id, contact_id=row.contact_id, step="lead",
                                idempotency_key=f"k{i}", action="create_lead", params={}, status="dead",
                                attempts=1, next_attempt_at=now, created_at=now)
                  for i in range(errors.BADGE_CAP + 5))
    with harness.db.unit_of_work() as s:
        assert errors.dead_count(s, harness.tenant_id) == errors.BADGE_CAP
        assert errors.count_errors(s, harness.tenant_id, errors.ErrorFilter(status="dead")) == errors.BADGE_CAP + 5
