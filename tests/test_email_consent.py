"""Marketing consent per contact and channel: recorded at once, readable by conditions,
written back to the host CRM (the sandbox; HubSpot through its communication preferences
API; Odoo through its mail blacklist), and followed from the host's own opt-out."""

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


BUYERS = {"format_version": 1, "name": "Buyers", "entry": {"policy": "every_time"},
          "starting_points": [{"id": "p", "type": "purchased_any", "params": {}}],
          "first_step": "tag",
          "steps": [{"id": "tag", "type": "action", "action": "add_tag", "params": {"tag": "buyer"}, "next": None}]}


def test_purchased_any_admits_subscribed_and_never_asked_contacts_only(harness):
    for name in ("fay", "gus", "hal"):
        harness.snapshot(name, f"{name}@example.com", 1)
    harness.run()
    _unsubscribe(harness, "gus@example.com")
    with harness.db.unit_of_work() as s:
        hal = s.scalar(select(Contact).where(Contact.tenant_id == harness.tenant_id, Contact.email == "hal@example.com"))
        set_consent(s, hal, "email", "subscribed", "api", harness.clock.now())
    harness.run()
    harness.publish(BUYERS)
    for name in ("fay", "gus", "hal"):
        harness.event("purchase", f"{name}@example.com", order_id=f"o-{name}")
    harness.run()
    tagged = {email for email in ("fay@example.com", "gus@example.com", "hal@example.com")
              if "buyer" in _contact(harness, email).tags}
    assert tagged == {"fay@example.com", "hal@example.com"}


def test_no_write_back_where_the_connector_does_not_write_the_opt_out(harness):
    from sqlalchemy import update

    from crm_journeys.storage.models import OutboxMessage, Tenant

    harness.snapshot("ida", "ida@example.com", 1)
    harness.run()
    with harness.db.unit_of_work() as s:  # BottleCRM keeps no opt-out field
        s.execute(update(Tenant).where(Tenant.id == harness.tenant_id).values(connector="bottlecrm"))
    _unsubscribe(harness, "ida@example.com")
    with harness.db.unit_of_work() as s:
        assert s.scalars(select(OutboxMessage).where(OutboxMessage.tenant_id == harness.tenant_id)).all() == []


# --- HubSpot: hs_email_optout is read-only, the write-back goes through its preferences API ---
def _on_host(harness, fake, name: str, connector) -> None:  # type: ignore[no-untyped-def]
    """The harness tenant made a ``name`` one, its connector talking to ``fake`` on the
    harness clock; ``fake.add(email)`` puts a contact in both, synced as the host has it."""
    from sqlalchemy import update

    from crm_journeys.runtime.ingest import IncomingEvent, ingest
    from crm_journeys.storage.models import Tenant

    with harness.db.unit_of_work() as s:
        s.execute(update(Tenant).where(Tenant.id == harness.tenant_id).values(connector=name))
    harness.runtime.use_connector(harness.tenant_id, connector)

    def add(email: str) -> str:
        ref = fake.add_contact(email=email, first_name=email.split("@")[0].title(), last_name="Host")
        with harness.db.unit_of_work() as s:
            ingest(s, harness.tenant_id, IncomingEvent(
                type="contact_upserted", contact={"id": ref, "email": email},
                properties={"external_id": ref, "email": email, "tags": [], "version": "1", "fields": {}},
                dedup_key=f"snap:{ref}:1"), harness.clock.now())
        harness.run()
        return ref

    fake.add = add


@pytest.fixture
def hubspot(harness):  # type: ignore[no-untyped-def]
    """The harness tenant made a HubSpot one on a fake account."""
    from tests.fakes.hubspot import FakeHubSpot
    from tests.test_connector_hubspot import make

    with FakeHubSpot(harness.clock) as fake:
        _on_host(harness, fake, "hubspot", make(fake))
        yield fake
        assert fake.spec_violations == []


def test_hubspot_unsubscribe_by_link_unsubscribes_the_address_from_all_email(harness, hubspot):
    ref = hubspot.add("jo@example.com")
    _unsubscribe(harness, "jo@example.com", source="one_click")
    assert not hubspot.unsubscribed_from_all("jo@example.com")  # queued, not yet written
    harness.run()
    [row] = harness.outbox()
    assert (row.action, row.status, row.params) == ("update_field", "done", {"field": "email_opt_out", "value": True})
    assert hubspot.unsubscribed_from_all("jo@example.com")
    assert hubspot.objects["contacts"][ref]["properties"]["hs_email_optout"] == "true"
    assert ("POST", "/communication-preferences/v4/statuses/jo@example.com/unsubscribe-all?channel=EMAIL") \
        in hubspot.requests
    assert not any(m == "PATCH" and "/contacts/" in p for m, p in hubspot.requests)  # never as a property


def test_hubspot_resubscribe_is_done_without_a_call_and_says_why(harness, hubspot):
    hubspot.add("kay@example.com")
    _unsubscribe(harness, "kay@example.com", source="one_click")
    harness.run()
    with harness.db.unit_of_work() as s:
        kay = s.scalar(select(Contact).where(Contact.tenant_id == harness.tenant_id, Contact.email == "kay@example.com"))
        set_consent(s, kay, "email", "subscribed", "preferences", harness.clock.now())
    calls = len(hubspot.requests)
    harness.run()
    again = harness.outbox()[-1]
    assert (again.params["value"], again.status) == (False, "done")
    assert "HubSpot keeps the opt-out" in again.result["summary"]
    assert hubspot.requests[calls:] == []  # nothing asked of HubSpot
    assert hubspot.unsubscribed_from_all("kay@example.com")  # HubSpot's own page re-subscribes
    ref = again.result["external_id"]
    record = hubspot.objects["contacts"][ref]["properties"]
    with harness.db.unit_of_work() as s:  # HubSpot's next snapshot still says opted out: followed
        from crm_journeys.runtime.ingest import IncomingEvent, ingest

        ingest(s, harness.tenant_id, IncomingEvent(
            type="contact_upserted", contact={"id": ref, "email": "kay@example.com"},
            properties={"external_id": ref, "email": "kay@example.com", "tags": [], "version": "2",
                        "fields": {"email_opt_out": record["hs_email_optout"] == "true"}},
            dedup_key=f"snap:{ref}:2"), harness.clock.now())
    harness.run()
    with harness.db.unit_of_work() as s:
        state = consent_of(s, harness.tenant_id, kay.id)
    assert (state.status, state.source) == (UNSUBSCRIBED, "host")


def test_hubspot_outage_delays_the_unsubscribe_and_never_drops_it(harness, hubspot):
    hubspot.add("lou@example.com")
    hubspot.inject(503, {"status": "error", "message": "Service Unavailable"}, times=100,
                   when=lambda r: r.path.endswith("/unsubscribe-all"))
    _unsubscribe(harness, "lou@example.com", source="one_click")
    harness.run()
    [row] = harness.outbox()
    assert row.status == "pending" and row.attempts == 1 and "503" in row.last_error
    assert row.next_attempt_at > harness.clock.now()
    assert not hubspot.unsubscribed_from_all("lou@example.com")
    hubspot.faults.clear()  # HubSpot is back
    harness.advance(hours=2)
    [row] = harness.outbox()
    assert row.status == "done" and row.attempts == 2
    assert hubspot.unsubscribed_from_all("lou@example.com")


# --- Odoo: is_blacklisted is computed, the write-back goes to the mail.blacklist model ---
@pytest.fixture
def odoo(harness):  # type: ignore[no-untyped-def]
    """The harness tenant made an Odoo one (JSON-RPC, before 19) on a fake database."""
    from tests.fakes.odoo import FakeOdoo
    from tests.test_connector_odoo import make

    with FakeOdoo(harness.clock) as fake:
        _on_host(harness, fake, "odoo", make(fake, version=17))
        yield fake
        assert fake.spec_violations == []


def test_odoo_unsubscribe_by_link_adds_the_address_to_the_mail_blacklist(harness, odoo):
    ref = odoo.add("mo@example.com")
    _unsubscribe(harness, "mo@example.com", source="one_click")
    assert not odoo.blacklisted("mo@example.com")  # queued, not yet written
    harness.run()
    [row] = harness.outbox()
    assert (row.action, row.status, row.params) == ("update_field", "done", {"field": "email_opt_out", "value": True})
    assert "added mo@example.com to Odoo's mail blacklist" in row.result["summary"]
    assert [(r["email"], r["active"]) for r in odoo.tables["mail.blacklist"].values()] == [("mo@example.com", True)]
    [partner] = odoo.call("res.partner", "read", {"ids": [int(ref)], "fields": ["is_blacklisted"]}, 7)
    assert partner["is_blacklisted"] is True
    assert "email_opt_out" not in odoo.tables["res.partner"][int(ref)]  # never written as a partner field


def test_odoo_resubscribe_archives_the_blacklist_row(harness, odoo):
    odoo.add("ned@example.com")
    _unsubscribe(harness, "ned@example.com", source="one_click")
    harness.run()
    with harness.db.unit_of_work() as s:
        ned = s.scalar(select(Contact).where(Contact.tenant_id == harness.tenant_id, Contact.email == "ned@example.com"))
        set_consent(s, ned, "email", "subscribed", "preferences", harness.clock.now())
    harness.run()
    again = harness.outbox()[-1]
    assert (again.params["value"], again.status) == (False, "done")
    assert "removed ned@example.com" in again.result["summary"]
    assert [(r["email"], r["active"]) for r in odoo.tables["mail.blacklist"].values()] == [("ned@example.com", False)]
    assert not odoo.blacklisted("ned@example.com")


def test_odoo_outage_delays_the_unsubscribe_and_never_drops_it(harness, odoo):
    odoo.add("ola@example.com")
    odoo.inject(503, {"name": "werkzeug.exceptions.ServiceUnavailable", "message": "Service Unavailable"},
                times=100, when=lambda r: r.path == "/jsonrpc" and b"mail.blacklist" in r.get_data())
    _unsubscribe(harness, "ola@example.com", source="one_click")
    harness.run()
    [row] = harness.outbox()
    assert row.status == "pending" and row.attempts == 1 and "503" in row.last_error
    assert not odoo.blacklisted("ola@example.com")
    odoo.faults.clear()  # Odoo is back
    harness.advance(hours=2)
    [row] = harness.outbox()
    assert row.status == "done" and row.attempts == 2
    assert odoo.blacklisted("ola@example.com")
