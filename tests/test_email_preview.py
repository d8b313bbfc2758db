"""Email preview and test send over the API: rendered for a chosen contact, sent once to
the editor (a real SMTP server) marked as a test, nothing recorded for the contact."""

from __future__ import annotations

from sqlalchemy import select, update

from crm_journeys.storage.mail_models import EmailSend
from crm_journeys.storage.models import Contact, Tenant
from tests.mail_fixtures import Inbox, parts, start
from tests.test_email_tracking import WEBINAR


def _journey(app, as_):  # type: ignore[no-untyped-def]
    answer = as_("acme_editor").post("/journeys", json={"document": WEBINAR})
    assert answer.status_code == 201, answer.json
    return answer.json["id"]


def _contact(app, clock):  # type: ignore[no-untyped-def]
    st = app.extensions["crm_journeys"]
    with st.db.unit_of_work() as s:
        row = Contact(tenant_id=app.config["TEST_TENANTS"]["acme"], external_id="c-1", email="uma@example.com",
                      fields={"first_name": "Uma"}, tags=[], groups=[], segments=[], activity={},
                      updated_at=clock.now())
        s.add(row)
        s.flush()
        return row.id


def test_preview_renders_for_a_chosen_contact(app, as_, clock):
    journey_id = _journey(app, as_)
    contact_id = _contact(app, clock)
    answer = as_("acme_viewer").post(f"/journeys/{journey_id}/steps/mail/preview", json={"contact_id": contact_id})
    assert answer.status_code == 200, answer.json
    assert answer.json["subject"] == "Join us, Uma" and answer.json["to"] == "uma@example.com"
    assert "https://shop.example/agenda" in answer.json["text"] and "Unsubscribe" in answer.json["text"]
    sample = as_("acme_viewer").post(f"/journeys/{journey_id}/steps/mail/preview", json={})
    assert sample.json["subject"] == "Join us, Jane"


def test_preview_errors_name_the_field(app, as_, clock):
    journey_id = _journey(app, as_)
    missing = as_("acme_viewer").post(f"/journeys/{journey_id}/steps/task/preview", json={})
    assert missing.status_code == 404 and "step_id" in missing.json["message"]
    other_tenant = as_("globex_admin").post(f"/journeys/{journey_id}/steps/mail/preview", json={})
    assert other_tenant.status_code == 404
    contact_id = _contact(app, clock)
    foreign = as_("acme_viewer").post(f"/journeys/{journey_id}/steps/mail/preview", json={"contact_id": contact_id + 99})
    assert foreign.status_code == 404 and "contact_id" in foreign.json["message"]


def test_test_send_goes_to_the_given_address_marked_and_unrecorded(app, as_, clock):
    inbox = Inbox()
    controller = start(inbox)
    try:
        st = app.extensions["crm_journeys"]
        with st.db.unit_of_work() as s:
            s.execute(update(Tenant).where(Tenant.id == app.config["TEST_TENANTS"]["acme"])
                      .values(settings={"smtp_url": f"smtp://127.0.0.1:{controller.port}"}))
        journey_id = _journey(app, as_)
        contact_id = _contact(app, clock)
        assert as_("acme_viewer").post(f"/journeys/{journey_id}/steps/mail/test-send", json={}).status_code == 403
        answer = as_("acme_editor").post(f"/journeys/{journey_id}/steps/mail/test-send",
                                         json={"contact_id": contact_id, "to": "editor@acme.example"})
        assert answer.status_code == 200, answer.json
        [msg] = inbox.parsed()
        assert msg["To"] == "editor@acme.example" and msg["Subject"] == "[Test] Join us, Uma"
        assert msg["X-CRM-Journeys-Test"] == "yes" and "List-Unsubscribe" not in msg
        assert "https://shop.example/webinar" in parts(msg)[0]  # untracked
        with st.db.unit_of_work() as s:
            assert s.scalars(select(EmailSend)).all() == []
        token_caller = as_("acme_editor").post(f"/journeys/{journey_id}/steps/mail/test-send", json={})
        assert token_caller.status_code == 422 and "to" in token_caller.json["message"]
    finally:
        controller.stop()
