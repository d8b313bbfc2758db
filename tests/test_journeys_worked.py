"""The five worked journeys of FEATURES.md section 4, end to end through the real runtime
on a virtual clock: events in, decisions by durable_rules, rows out, CRM records written."""

from __future__ import annotations


def test_welcome_opened_gets_promo(harness):
    harness.publish("welcome_promo.json")
    harness.event("subscribed", "ada@example.com", key="newsletter", first_name="Ada")
    harness.run()
    assert harness.actions_for("ada@example.com") == [("welcome", "send_email")]
    emails = harness.crm_records("email")
    assert [e.data["subject"] for e in emails] == ["Welcome, !"] or emails[0].data["subject"].startswith("Welcome")

    harness.advance(days=1)
    harness.event("email_opened", "ada@example.com", key="welcome")
    harness.run()
    assert harness.actions_for("ada@example.com") == [("welcome", "send_email")]  # wait and check: not yet

    harness.advance(days=2, minutes=1)
    assert harness.actions_for("ada@example.com") == [("welcome", "send_email"), ("promo", "send_email")]
    assert harness.branches("opened_welcome") == ["yes"]
    assert [i.status for i in harness.instances()] == ["completed"]


def test_welcome_not_opened_gets_reminder(harness):
    harness.publish("welcome_promo.json")
    harness.event("subscribed", "bob@example.com", key="newsletter")
    harness.run()
    harness.advance(days=3, minutes=1)
    assert harness.actions_for("bob@example.com") == [("welcome", "send_email"), ("reminder", "send_email")]
    assert harness.branches("opened_welcome") == ["no"]


def test_welcome_enters_once_and_exit_rule_stops_it(harness):
    harness.publish("welcome_promo.json")
    harness.event("subscribed", "cy@example.com", key="newsletter")
    harness.run()
    harness.event("unsubscribed", "cy@example.com", key="newsletter")
    harness.run()
    harness.event("subscribed", "cy@example.com", key="newsletter")
    harness.run()
    harness.advance(days=4)
    assert harness.actions_for("cy@example.com") == [("welcome", "send_email")]
    assert [(i.status, i.outcome) for i in harness.instances()] == [("exited", "exit rule unsubscribed")]
