"""A CRM outage delays actions, never drops or doubles them; bad requests dead-letter."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crm_journeys.connectors.sandbox import SandboxConnector
from crm_journeys.errors import FatalConnectorError, RetriableConnectorError
from crm_journeys.runtime.outbox import MAX_ATTEMPTS


@pytest.fixture
def lead_journey():
    return {
        "format_version": 1, "name": "Lead on form", "entry": {"policy": "every_time"},
        "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "demo"}}],
        "first_step": "lead",
        "steps": [{"id": "lead", "type": "action", "action": "create_lead",
                   "params": {"title": "Demo request"}, "next": None, "run_multiple_times": True}],
    }


def test_outage_delays_then_delivers_once(harness, lead_journey, monkeypatch):
    harness.publish(lead_journey)
    real = SandboxConnector.create_lead
    outage = {"left": 3}

    def flaky(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if outage["left"]:
            outage["left"] -= 1
            raise RetriableConnectorError("503 from host", retry_after=120 if outage["left"] == 0 else None)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SandboxConnector, "create_lead", flaky)
    harness.event("form_submitted", "nia@example.com", key="demo")
    harness.run()
    [row] = harness.outbox()
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at > harness.clock.now()
    assert "503" in row.last_error
    harness.advance(hours=2)
    [row] = harness.outbox()
    assert (row.status, row.attempts) == ("done", 4)
    assert len(harness.crm_records("lead")) == 1


def test_retry_after_is_honoured(harness, lead_journey, monkeypatch):
    harness.publish(lead_journey)

    def limited(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RetriableConnectorError("429", retry_after=600)

    monkeypatch.setattr(SandboxConnector, "create_lead", limited)
    harness.event("form_submitted", "oz@example.com", key="demo")
    harness.run()
    [row] = harness.outbox()
    assert row.next_attempt_at == harness.clock.now() + timedelta(seconds=600)


def test_fatal_error_dead_letters_with_reason(harness, lead_journey, monkeypatch):
    harness.publish(lead_journey)

    def bad(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise FatalConnectorError("400: property 'title' is read-only", 400)

    monkeypatch.setattr(SandboxConnector, "create_lead", bad)
    harness.event("form_submitted", "pia@example.com", key="demo")
    harness.run()
    [row] = harness.outbox()
    assert row.status == "dead"
    assert "read-only" in row.last_error


def test_gives_up_after_max_attempts(harness, lead_journey, monkeypatch):
    harness.publish(lead_journey)
    monkeypatch.setattr(SandboxConnector, "create_lead",
                        lambda self, *a, **k: (_ for _ in ()).throw(RetriableConnectorError("down")))
    harness.event("form_submitted", "quin@example.com", key="demo")
    harness.run()
    harness.advance(days=3)
    [row] = harness.outbox()
    assert (row.status, row.attempts) == ("dead", MAX_ATTEMPTS)
    assert row.last_error.startswith(f"gave up after {MAX_ATTEMPTS} attempts")


def test_same_event_twice_is_one_event(harness, lead_journey):
    harness.publish(lead_journey)
    from crm_journeys.runtime.ingest import IncomingEvent, ingest

    for _ in range(2):
        with harness.db.unit_of_work() as s:
            ingest(s, harness.tenant_id, IncomingEvent(type="form_submitted", key="demo",
                                                       contact={"email": "rae@example.com"},
                                                       dedup_key="hook-42"), harness.clock.now())
    harness.run()
    assert len(harness.outbox()) == 1
    assert len(harness.crm_records("lead")) == 1


def test_tenants_do_not_see_each_others_events(database, clock, lead_journey):
    from tests.conftest import Harness

    a, b = Harness(database, clock), Harness(database, clock)
    a.publish(lead_journey)
    b.event("form_submitted", "sam@example.com", key="demo")
    b.run()
    a.run()
    assert a.outbox() == [] and b.outbox() == []
    a.event("form_submitted", "sam@example.com", key="demo")
    a.run()
    assert len(a.outbox()) == 1 and b.outbox() == []
