"""Inbound integrations end to end: Eventbrite (unsigned: api_url fetched with the
tenant's token), LiveChat (secret key in the payload), Zapier (per-tenant secret) and
custom triggers (declared attribute schema validated on arrival) through
``POST /hooks/<tenant>/<service>``, then the worker, then journeys."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from crm_journeys.app import create_app
from crm_journeys.integrations.custom import declare
from crm_journeys.runtime.tenants import create_tenant
from crm_journeys.runtime.versions import create_journey, publish
from crm_journeys.runtime.worker import Worker
from crm_journeys.storage.models import InboxEvent
from crm_journeys.web.state import State
from tests.sp_helpers import journey, sp

ORDER_URL = "https://www.eventbriteapi.com/v3/orders/9001/"
ORDER = {"id": "9001", "event_id": "ev42", "email": "buyer@example.com", "first_name": "Bea",
         "costs": {"gross": {"value": 2500, "currency": "EUR", "major_value": "25.00"}},
         "event": {"id": "ev42", "name": {"text": "Coffee Summit", "html": "Coffee Summit"}},
         "attendees": [{"id": "a1", "event_id": "ev42", "ticket_class_name": "Early bird",
                        "profile": {"email": "buyer@example.com", "first_name": "Bea", "last_name": "B"}},
                       {"id": "a2", "event_id": "ev42", "ticket_class_name": "Early bird",
                        "profile": {"email": "friend@example.com", "first_name": "Fi"}}]}


class Env:
    def __init__(self, app, clock):
        self.app, self.client, self.clock = app, app.test_client(), clock
        self.state: State = app.extensions["crm_journeys"]
        self.fetched: list[tuple[str, str]] = []

        def fetch(url, token):
            self.fetched.append((url, token))
            return {"9001": ORDER}[url.split("/orders/")[1].split("/")[0]]

        self.state.runtime.settings["integration_fetch"] = fetch
        self.slug = f"acme-{uuid.uuid4().hex[:6]}"
        with self.state.db.unit_of_work() as s:
            tenant = create_tenant(s, self.slug, "Acme", clock.now(), credentials={"integrations": {
                "eventbrite": {"token": "eb-private", "webhook_ids": ["wh1"]},
                "livechat": {"secret_key": "lc-secret"}, "zapier": {"secret": "zap-secret"}}})
            self.tenant_id, self.webhook_secret = tenant.id, tenant.webhook_secret

    def publish(self, doc):
        with self.state.db.unit_of_work() as s:
            j = create_journey(s, self.tenant_id, doc, self.clock.now())
            publish(s, self.tenant_id, j.id, self.clock.now())
            return j.id

    def post(self, service, body, **headers):
        return self.client.post(f"/hooks/{self.slug}/{service}", json=body, headers=headers)

    def inbox(self):
        with self.state.db.unit_of_work() as s:
            return [(e.type, e.key, e.payload["contact"].get("email"), e.payload["properties"])
                    for e in s.scalars(select(InboxEvent).where(InboxEvent.tenant_id == self.tenant_id)
                                       .order_by(InboxEvent.id))]

    def run(self):
        Worker(self.state.runtime).drain()


@pytest.fixture
def env(database, clock):
    app = create_app({"TESTING": True, "CRM_JOURNEYS_DATABASE_URL": database.url, "SECRET_KEY": "t"},
                     clock=clock)
    return Env(app, clock)


def test_eventbrite_order_fetched_from_api_url_becomes_registrations_and_tickets(env):
    env.publish(journey([sp("eventbrite_ticket_event", {"event_id": "ev42"})]))
    body = {"api_url": ORDER_URL, "config": {"action": "order.placed", "webhook_id": "wh1",
                                             "user_id": "u1", "endpoint_url": "https://x/hooks"}}
    resp = env.post("eventbrite", body)
    assert resp.status_code == 202, resp.json
    assert env.fetched == [(ORDER_URL + "?expand=event,attendees", "eb-private")]
    assert [(t, k, e) for t, k, e, _ in env.inbox()] == [
        ("eventbrite_registered", "ev42", "buyer@example.com"), ("eventbrite_registered", "ev42", "friend@example.com"),
        ("eventbrite_ticket_bought", "ev42", "buyer@example.com"),
        ("eventbrite_ticket_bought", "ev42", "friend@example.com")]
    assert env.inbox()[2][3]["event_name"] == "Coffee Summit"
    assert env.post("eventbrite", body).json == {"accepted": 4, "new": 0}  # redelivery: no duplicates
    env.run()


@pytest.mark.parametrize("body, status, message", [
    ({"api_url": "https://evil.example/v3/orders/9001/", "config": {"action": "order.placed", "webhook_id": "wh1"}},
     400, "api_url"),
    ({"api_url": ORDER_URL, "config": {"action": "order.placed", "webhook_id": "other"}}, 403, "webhook_id"),
    ({"config": "x"}, 400, "config"),  # was a 500
    # any other API path would be fetched with the tenant's private token
    ({"api_url": "https://www.eventbriteapi.com/v3/users/me/", "config": {"action": "order.placed",
                                                                          "webhook_id": "wh1"}}, 400, "api_url"),
    ({"api_url": ORDER_URL + "?page=2", "config": {"action": "order.placed", "webhook_id": "wh1"}}, 400, "api_url"),
])
def test_eventbrite_refuses_what_it_cannot_verify(env, body, status, message):
    resp = env.post("eventbrite", body)
    assert resp.status_code == status and message in resp.json["error"]
    assert env.post("eventbrite", {"config": {"action": "test"}}).status_code == 202


def test_livechat_chat_closed_with_secret_key(env):
    body = {"webhook_id": "w", "secret_key": "lc-secret", "action": "chat_deactivated",
            "organization_id": "org", "payload": {"chat_id": "PJ0MRSHTDG", "thread_id": "K600PKZON8", "user_id": "ag@x"},
            "additional_data": {"chat": {"id": "PJ0MRSHTDG", "users": [
                {"id": "c1", "type": "customer", "name": "Cy", "email": "cy@example.com"},
                {"id": "ag@x", "type": "agent", "name": "Agent Smith", "email": "ag@x"}]}}}
    assert env.post("livechat", {**body, "secret_key": "wrong"}).status_code == 401
    assert env.post("livechat", body).status_code == 202
    assert env.inbox() == [("chat_closed", "", "cy@example.com", {"chat_id": "PJ0MRSHTDG", "agent": "Agent Smith"})]


def test_zapier_secret_and_journey(env):
    jid = env.publish(journey([sp("zapier_event", {"zap": "lead-form"})]))
    body = {"email": "zed@example.com", "zap": "lead-form", "id": "z-1", "company": "Zed Ltd"}
    assert env.post("zapier", body).status_code == 401
    assert env.post("zapier", body, **{"X-Zapier-Secret": "zap-secret"}).status_code == 202
    assert env.post("zapier", {"zap": "x"}, **{"X-Zapier-Secret": "zap-secret"}).status_code == 422
    env.run()
    with env.state.db.unit_of_work() as s:
        from crm_journeys.storage.models import Instance
        assert len(s.scalars(select(Instance).where(Instance.journey_id == jid)).all()) == 1


def test_custom_trigger_attributes_are_validated_on_arrival(env):
    with env.state.db.unit_of_work() as s:
        declare(s, env.tenant_id, "vip_call", {"minutes": {"type": "number", "required": True},
                                               "topic": {"type": "text"}}, env.clock.now())
    jid = env.publish(journey([sp("custom_trigger", {"trigger": "vip_call"},
                                  filter_={"op": "gte", "field": "event.minutes", "value": 10})]))
    secret = {"X-Webhook-Secret": env.webhook_secret}
    bad = env.post("custom", {"trigger": "vip_call", "contact": {"email": "v@example.com"},
                              "attributes": {"minutes": "ten", "colour": "red"}}, **secret)
    assert bad.status_code == 422
    assert bad.json["error"] == ("attribute 'minutes' must be a number (got 'ten'); "
                                 "attribute 'colour' is not declared for this trigger")
    missing = env.post("custom", {"trigger": "vip_call", "contact": {"email": "v@example.com"}, "attributes": {}},
                       **secret)
    assert missing.json["error"] == "attribute 'minutes' is required"
    assert env.post("custom", {"trigger": "nope", "contact": {"email": "v@example.com"}}, **secret).status_code == 422
    for email, minutes in (("short@example.com", 5), ("long@example.com", 30)):
        ok = env.post("custom", {"trigger": "vip_call", "contact": {"email": email},
                                 "attributes": {"minutes": minutes, "topic": "renewal"}}, **secret)
        assert ok.status_code == 202
    env.run()
    with env.state.db.unit_of_work() as s:
        from crm_journeys.storage.models import Contact, Instance
        rows = s.execute(select(Contact.email).join(Instance, Instance.contact_id == Contact.id)
                         .where(Instance.journey_id == jid)).scalars().all()
    assert rows == ["long@example.com"]


def test_unknown_service_and_tenant(env):
    assert env.post("myspace", {}).status_code == 404
    assert env.client.post("/hooks/nobody/zapier", json={}).status_code == 404
