"""The contact policy across journeys (a real SMTP server receives what is sent): a cap
on marketing emails per period, skip or hold per step, journey priority on collisions,
and quiet hours in the contact's zone across a DST change."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from crm_journeys.storage.models import StepLog, Tenant
from tests.mail_fixtures import Inbox, start


def mailing(name: str, form: str, *, priority: int = 50, over_cap: str = "skip", kind: str = "marketing") -> dict:  # type: ignore[type-arg]
    return {"format_version": 1, "name": name, "entry": {"policy": "every_time"},
            "settings": {"priority": priority},
            "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": form}}],
            "first_step": "mail",
            "steps": [{"id": "mail", "type": "action", "action": "send_email", "next": None, "run_multiple_times": True,
                       "params": {"email_id": form, "subject": name, "body": "Hello", "kind": kind,
                                  "over_cap": over_cap}}]}


@pytest.fixture
def inbox(harness):  # type: ignore[no-untyped-def]
    box = Inbox()
    controller = start(box)
    box.url = f"smtp://127.0.0.1:{controller.port}"  # type: ignore[attr-defined]
    yield box
    controller.stop()


def _policy(harness, inbox, **policy):  # type: ignore[no-untyped-def]
    with harness.db.unit_of_work() as s:
        s.execute(update(Tenant).where(Tenant.id == harness.tenant_id).values(
            settings={"smtp_url": inbox.url, "contact_policy": policy}))


def _subjects(inbox):  # type: ignore[no-untyped-def]
    return [m["Subject"] for m in inbox.parsed()]


def _timeline(harness, kind):  # type: ignore[no-untyped-def]
    with harness.db.unit_of_work() as s:
        return [d["why"] for d in s.scalars(select(StepLog.detail).where(StepLog.tenant_id == harness.tenant_id,
                                                                         StepLog.kind == kind)
                                           .order_by(StepLog.id))]


def test_cap_across_two_journeys_skips_the_third_email(harness, inbox):
    _policy(harness, inbox, max_messages=2, period_days=7)
    harness.publish(mailing("Weekly", "weekly"))
    harness.publish(mailing("Promo", "promo"))
    harness.event("form_submitted", "ann@example.com", key="weekly")
    harness.run()
    harness.advance(hours=1)
    harness.event("form_submitted", "ann@example.com", key="weekly", n=2)
    harness.run()
    harness.event("form_submitted", "ann@example.com", key="promo")
    harness.run()
    assert _subjects(inbox) == ["Weekly", "Weekly"]
    assert _timeline(harness, "skipped") == [
        "skipped: contact policy: 2 marketing messages in 7 days (at most 2) (send_email 'promo' not sent)"]
    harness.publish(mailing("Receipt", "order", kind="transactional"))
    harness.event("form_submitted", "ann@example.com", key="order")
    harness.run()
    assert _subjects(inbox)[-1] == "Receipt"  # transactional messages ignore the policy


def test_over_cap_held_until_a_slot_frees(harness, inbox):
    _policy(harness, inbox, max_messages=1, period_days=2)
    harness.publish(mailing("Weekly", "weekly"))
    harness.publish(mailing("Promo", "promo", over_cap="hold"))
    harness.event("form_submitted", "bob@example.com", key="weekly")
    harness.run()
    harness.advance(hours=1)
    harness.event("form_submitted", "bob@example.com", key="promo")
    harness.run()
    assert _subjects(inbox) == ["Weekly"]
    assert _timeline(harness, "held") == [
        "held: contact policy: 1 marketing messages in 2 days (at most 1), until 2026-03-04 09:00 UTC"]
    harness.advance(hours=46, minutes=59)
    assert _subjects(inbox) == ["Weekly"]
    harness.advance(minutes=2)
    assert _subjects(inbox) == ["Weekly", "Promo"]  # held, never dropped
    [promo] = [r for r in harness.outbox() if r.params["email_id"] == "promo"]
    assert promo.attempts == 1 and promo.status == "done"  # a hold is not a failed attempt


def test_higher_priority_journey_wins_a_collision(harness, inbox):
    _policy(harness, inbox, max_messages=1, period_days=7)
    harness.publish(mailing("Low", "signup", priority=10))  # queued first
    harness.publish(mailing("High", "signup", priority=90))
    harness.event("form_submitted", "cid@example.com", key="signup")
    harness.run()
    assert _subjects(inbox) == ["High"]
    assert _timeline(harness, "skipped") == [
        "skipped: contact policy: 1 message(s) of higher-priority journeys go first (send_email 'signup' not sent)"]


def test_quiet_hours_hold_until_morning_across_the_dst_change(harness, inbox):
    _policy(harness, inbox, quiet_hours={"start": "21:00", "end": "08:00"}, time_zone="UTC")
    harness.publish(mailing("Newsletter", "news"))
    harness.publish(mailing("Receipt", "order", kind="transactional"))
    harness.snapshot("dora", "dora@example.com", 1, time_zone="Europe/Rome")
    harness.run()
    harness.advance(days=26, hours=12, minutes=30)  # Saturday 2026-03-28 21:30 UTC = 22:30 in Rome (CET)
    assert harness.clock.now() == datetime(2026, 3, 28, 21, 30, tzinfo=UTC)
    harness.event("form_submitted", "dora@example.com", key="news")
    harness.event("form_submitted", "dora@example.com", key="order")
    harness.run()
    assert _subjects(inbox) == ["Receipt"]
    # Rome moves to CEST overnight: 08:00 local on the 29th is 06:00 UTC, not 07:00
    assert _timeline(harness, "held") == ["held: quiet hours in Europe/Rome until 2026-03-29 08:00 (06:00 UTC)"]
    [news] = [r for r in harness.outbox() if r.params["email_id"] == "news"]
    assert news.next_attempt_at == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    harness.advance(hours=8, minutes=29)  # 05:59 UTC
    assert _subjects(inbox) == ["Receipt"]
    harness.advance(minutes=1)
    assert _subjects(inbox) == ["Receipt", "Newsletter"]


def test_a_bad_policy_names_its_field(harness, inbox):
    _policy(harness, inbox, quiet_hours={"start": "late", "end": "08:00"})
    harness.publish(mailing("Newsletter", "news"))
    harness.event("form_submitted", "eve@example.com", key="news")
    harness.run()
    [row] = harness.outbox()
    assert row.status == "dead" and "contact_policy.quiet_hours.start" in row.last_error
