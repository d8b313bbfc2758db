"""Actions against real peers: a real SMTP server (aiosmtpd) and a real HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import update

from crm_journeys.errors import DefinitionError
from crm_journeys.storage.models import Tenant


class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append(envelope.content)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


def _set_tenant(harness, **settings):  # type: ignore[no-untyped-def]
    with harness.db.unit_of_work() as s:
        s.execute(update(Tenant).where(Tenant.id == harness.tenant_id).values(settings=settings))


def test_welcome_email_delivered_over_smtp_once(harness, smtp):
    controller, inbox = smtp
    _set_tenant(harness, smtp_url=f"smtp://127.0.0.1:{controller.port}", mail_from="news@shop.example")
    harness.publish("welcome_promo.json")
    harness.event("subscribed", "uma@example.com", key="newsletter", contact={"first_name": "Uma"})
    harness.run()
    assert len(inbox.messages) == 1
    msg = message_from_bytes(inbox.messages[0])
    assert msg["To"] == "uma@example.com" and msg["From"] == "news@shop.example"
    assert msg["Subject"] == "Welcome, Uma!"
    assert "X-CRM-Journeys-Key" in msg
    harness.run()
    assert len(inbox.messages) == 1


def test_template_cannot_reach_python_internals(harness, smtp):
    controller, inbox = smtp
    _set_tenant(harness, smtp_url=f"smtp://127.0.0.1:{controller.port}")
    doc = {"format_version": 1, "name": "Sneaky", "entry": {"policy": "every_time"},
           "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "x"}}],
           "first_step": "mail",
           "steps": [{"id": "mail", "type": "action", "action": "send_email", "next": None,
                      "params": {"subject": "hi", "body": "{{ contact.__class__.__mro__ }}"}}]}
    harness.publish(doc)
    harness.event("form_submitted", "vic@example.com", key="x")
    harness.run()
    [row] = harness.outbox()
    assert row.status == "done"
    [raw] = inbox.messages
    body = message_from_bytes(raw).get_payload()[0].get_payload(decode=True).decode()
    assert "class" not in body and "object" not in body  # the sandbox rendered nothing


def test_template_that_tries_to_call_unsafe_code_dead_letters(harness, smtp):
    controller, inbox = smtp
    _set_tenant(harness, smtp_url=f"smtp://127.0.0.1:{controller.port}")
    doc = {"format_version": 1, "name": "Sneakier", "entry": {"policy": "every_time"},
           "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "x"}}],
           "first_step": "mail",
           "steps": [{"id": "mail", "type": "action", "action": "send_email", "next": None,
                      "params": {"subject": "hi", "body": "{{ contact.tags.append('x') }}"}}]}
    harness.publish(doc)
    harness.event("form_submitted", "vic@example.com", key="x")
    harness.run()
    [row] = harness.outbox()
    assert row.status == "dead" and "template error" in row.last_error
    assert inbox.messages == []


def test_webhook_to_loopback_is_refused_unless_allowed(harness, httpserver):
    doc = {"format_version": 1, "name": "Hook", "entry": {"policy": "every_time"},
           "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "x"}}],
           "first_step": "hook",
           "steps": [{"id": "hook", "type": "action", "action": "call_webhook", "next": None,
                      "run_multiple_times": True,
                      "params": {"url": httpserver.url_for("/in"), "payload": {"source": "journey"}}}]}
    with pytest.raises(DefinitionError, match="private address"):  # refused at publish
        harness.publish(doc)
    _set_tenant(harness, allow_private_webhooks=True)
    harness.publish(doc)
    _set_tenant(harness)  # the admin takes the permission back: the send checks again
    harness.event("form_submitted", "wes@example.com", key="x")
    harness.run()
    [row] = harness.outbox()
    assert row.status == "dead" and "private address" in row.last_error

    _set_tenant(harness, allow_private_webhooks=True)
    received = []

    def handler(request):  # type: ignore[no-untyped-def]
        received.append(request)
        from werkzeug import Response

        return Response("ok")

    httpserver.expect_request("/in", method="POST").respond_with_handler(handler)
    harness.runtime.forget_connector(harness.tenant_id)
    harness.event("form_submitted", "wes@example.com", key="x", attempt=2)
    harness.run()
    assert len(received) == 1
    body = received[0].get_data()
    with harness.db.unit_of_work() as s:
        secret = s.get(Tenant, harness.tenant_id).webhook_secret
    stamp, mac = (part.split("=", 1)[1] for part in received[0].headers["X-CRM-Journeys-Signature"].split(","))
    assert hmac.compare_digest(mac, hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest())
    assert json.loads(body)["contact"]["email"] == "wes@example.com"
    assert json.loads(body)["source"] == "journey"
