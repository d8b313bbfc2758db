"""Marketing consent per contact and channel: recorded at once, readable by conditions,
written back to the host CRM (the sandbox), and followed from the host's own opt-out."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crm_journeys.runtime.consent import NEVER_ASKED, UNSUBSCRIBED, consent_of, set_consent
from crm_journeys.storage.models import Contact, SandboxContact


def _contact(harness, email):  # type: ignore[no-untyped-def]
    with harness.db.unit_of_work() as s:
        return s.scalar(select(Contact).where(Contact.tenant_id == harness.tenant_id, Contact.email == email))


def _unsubscribe(harness, email, source="preferences"):  # type: ignore[no-untyped-def]
    with harness.db.unit_of_work() as s:
        contact = s.scalar(select(Contact).where(Contact.tenant_id == harness.tenant_id, Contact.email == email))
        return set_consent(s, contact, "email", UNSUBSCRIBED, source, harness.clock.now())


SPLIT = {"format_version": 1, "name": "Only subscribed", "entry": {"policy": "every_time"},
         "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "x"}}],
         "first_step": "check",
         "steps": [{"id": "check", "type": "condition_split",
                    "condition": {"op": "eq", "field": "email_subscription", "value": "unsubscribed"},
                    "branches": {"yes": None, "no": "tag"}},
                   {"id": "tag", "type": "action", "action": "add_tag", "params": {"tag": "mailable"},
                    "next": None}]}


def test_never_asked_until_a_change_then_readable_by_a_condition(harness):
    harness.snapshot("ann", "ann@example.com", 1)
    harness.run()
    contact = _contact(harness, "ann@example.com")
    with harness.db.unit_of_work() as s:
        assert consent_of(s, harness.tenant_id, contact.id).status == NEVER_ASKED
    assert _unsubscribe(harness, "ann@example.com") is True
    assert _unsubscribe(harness, "ann@example.com") is False  # no change, no second event
    harness.run()
    with harness.db.unit_of_work() as s:
        state = consent_of(s, harness.tenant_id, contact.id)
    assert (state.status, state.source, state.changed_at) == (UNSUBSCRIBED, "preferences", harness.clock.now())
    assert _contact(harness, "ann@example.com").fields["email_subscription"] == "unsubscribed"
    harness.publish(SPLIT)
    harness.event("form_submitted", "ann@example.com", key="x")
    harness.run()
    assert harness.branches("check") == ["yes"]  # the condition read the consent fact


def test_unsubscribe_is_written_back_to_the_host_and_survives_its_next_snapshot(harness):
    harness.snapshot("bea", "bea@example.com", 1)
    harness.run()
    _unsubscribe(harness, "bea@example.com", source="one_click")
    harness.run()
    with harness.db.unit_of_work() as s:
        row = s.scalar(select(SandboxContact).where(SandboxContact.email == "bea@example.com"))
        assert row.fields.get("email_opt_out") is True  # the host CRM's own opt-out
    harness.snapshot("bea", "bea@example.com", 2, city="Rome")  # host sync without our field
    harness.run()
    contact = _contact(harness, "bea@example.com")
    assert contact.fields["email_subscription"] == "unsubscribed" and contact.fields["city"] == "Rome"


@pytest.mark.parametrize("value", [True, "true"])
def test_host_opt_out_unsubscribes_and_clearing_it_resubscribes(harness, value):
    harness.snapshot("cid", "cid@example.com", 1, email_opt_out=value)
    harness.run()
    contact = _contact(harness, "cid@example.com")
    with harness.db.unit_of_work() as s:
        assert consent_of(s, harness.tenant_id, contact.id).source == "host"
    assert contact.fields["email_subscription"] == "unsubscribed"
    assert harness.crm_records("task") == []
    harness.snapshot("cid", "cid@example.com", 2, email_opt_out=False)
    harness.run()
    assert _contact(harness, "cid@example.com").fields["email_subscription"] == "subscribed"


def test_host_clearing_does_not_undo_an_unsubscribe_by_link(harness):
    harness.snapshot("dan", "dan@example.com", 1, email_opt_out=False)
    harness.run()
    _unsubscribe(harness, "dan@example.com", source="one_click")
    harness.run()
    harness.snapshot("dan", "dan@example.com", 2, email_opt_out=False)
    harness.run()
    assert _contact(harness, "dan@example.com").fields["email_subscription"] == "unsubscribed"


def test_unknown_channel_or_status_is_refused(harness):
    harness.snapshot("eve", "eve@example.com", 1)
    harness.run()
    with harness.db.unit_of_work() as s:
        contact = s.scalar(select(Contact).where(Contact.email == "eve@example.com"))
        with pytest.raises(ValueError, match="channel"):
            set_consent(s, contact, "fax", UNSUBSCRIBED, "api", harness.clock.now())
