"""SendGrid's Event Webhook, signed with ECDSA as SendGrid signs it: delivered, bounce,
spam report, open and click reach the right send; a bad or stale signature is refused."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from crm_journeys.runtime.consent import consent_of
from crm_journeys.storage.mail_models import EmailSend
from crm_journeys.storage.models import InboxEvent, Tenant
from tests.test_email_tracking import WEBINAR, _contact, _events, mail  # noqa: F401  (the fixture)


@pytest.fixture
def signer(mail):  # type: ignore[no-untyped-def]  # noqa: F811
    harness, client, inbox = mail
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    with harness.db.unit_of_work() as s:
        tenant = s.get(Tenant, harness.tenant_id)
        tenant.settings = {**tenant.settings, "sendgrid_public_key": base64.b64encode(public).decode()}
        slug = tenant.slug

    def post(events, *, key_=key, stamp=None, body=None):  # type: ignore[no-untyped-def]
        signed = json.dumps(events).encode()
        raw = body if body is not None else signed  # a different body: altered after signing
        ts = str(stamp if stamp is not None else int(harness.clock.now().timestamp()))
        signature = base64.b64encode(key_.sign(ts.encode() + signed, ec.ECDSA(hashes.SHA256()))).decode()
        return client.post(f"/hooks/email/sendgrid/{slug}", data=raw, content_type="application/json",
                           headers={"X-Twilio-Email-Event-Webhook-Signature": signature,
                                    "X-Twilio-Email-Event-Webhook-Timestamp": ts})
    return harness, inbox, post


def _send_id(harness):  # type: ignore[no-untyped-def]
    with harness.db.unit_of_work() as s:
        return s.scalar(select(EmailSend.public_id).where(EmailSend.tenant_id == harness.tenant_id))


def _sent_webinar(harness, inbox):  # type: ignore[no-untyped-def]
    harness.snapshot("uma", "uma@example.com", 1, first_name="Uma")
    harness.publish(WEBINAR)
    harness.event("form_submitted", "uma@example.com", key="webinar")
    harness.run()
    [msg] = inbox.parsed()
    public_id = _send_id(harness)
    assert json.loads(msg["X-SMTPAPI"]) == {"unique_args": {"cj_send": public_id}}
    return public_id


def test_signed_events_reach_the_send_and_the_journey(signer):
    harness, inbox, post = signer
    public_id = _sent_webinar(harness, inbox)
    now = int(harness.clock.now().timestamp())
    events = [{"email": "uma@example.com", "event": "delivered", "sg_event_id": "e1", "cj_send": public_id,
               "timestamp": now},
              {"email": "uma@example.com", "event": "open", "sg_event_id": "e2", "cj_send": public_id,
               "sg_machine_open": False, "timestamp": now},
              {"email": "uma@example.com", "event": "click", "sg_event_id": "e3", "cj_send": public_id,
               "url": "https://shop.example/agenda", "timestamp": now},
              {"email": "x@example.com", "event": "open", "sg_event_id": "e4", "cj_send": "not-ours"}]
    answer = post(events)
    assert answer.status_code == 200 and answer.get_json() == {"received": 4, "matched": 3}
    assert post(events).status_code == 200  # SendGrid retries a batch: each event counts once
    assert len(_events(harness, "email_delivered")) == 1
    [click] = _events(harness, "email_clicked")
    assert click.payload["properties"]["url"] == "https://shop.example/agenda"
    harness.worker.step()
    assert harness.branches("opened") == ["yes"]


def test_spam_report_unsubscribes_and_bounce_suppresses(signer):
    harness, inbox, post = signer
    public_id = _sent_webinar(harness, inbox)
    assert post([{"event": "spamreport", "sg_event_id": "s1", "cj_send": public_id}]).status_code == 200
    contact = _contact(harness, "uma@example.com")
    with harness.db.unit_of_work() as s:
        state = consent_of(s, harness.tenant_id, contact.id)
    assert (state.status, state.source) == ("unsubscribed", "complaint")
    post([{"event": "bounce", "type": "bounce", "reason": "550 mailbox gone", "sg_event_id": "b1",
           "cj_send": public_id}])
    with harness.db.unit_of_work() as s:
        assert consent_of(s, harness.tenant_id, contact.id).bounced_at is not None
    [bounce] = _events(harness, "email_not_delivered")
    assert bounce.payload["properties"]["reason"] == "550 mailbox gone"


def test_bad_stale_or_missing_signatures_are_refused(signer):
    harness, inbox, post = signer
    public_id = _sent_webinar(harness, inbox)
    events = [{"event": "spamreport", "sg_event_id": "s1", "cj_send": public_id}]
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert post(events, key_=stranger).status_code == 401
    assert post(events, stamp=int(harness.clock.now().timestamp()) - 3600).status_code == 401  # replayed later
    raw = json.dumps(events).encode()
    tampered = post(events, body=raw.replace(b"spamreport", b"delivered "))
    assert tampered.status_code == 401
    assert post(events, body=b"").status_code == 401
    with harness.db.unit_of_work() as s:
        assert s.scalars(select(InboxEvent).where(InboxEvent.tenant_id == harness.tenant_id,
                                                  InboxEvent.type.in_(["email_complained", "unsubscribed"]))).all() == []
