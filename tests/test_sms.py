"""SMS through Twilio, end to end: the real runtime texts through a fake Twilio (real HTTP
on loopback, Twilio's errors and signatures) and Twilio's signed callbacks come back to the
real app served on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from sqlalchemy import select, update
from werkzeug.serving import make_server

from crm_journeys.app import create_app
from crm_journeys.runtime.consent import consent_of
from crm_journeys.secrets import encrypt_json
from crm_journeys.storage.models import Contact, InboxEvent, StepLog, Tenant
from crm_journeys.storage.sms_models import SmsMessage
from tests.conftest import Harness
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, MESSAGING_SERVICE_SID, FakeTwilio

ADA = "+14155552671"


@dataclass
class World:
    h: Harness
    twilio: FakeTwilio
    app_url: str
    slug: str

    def contact(self, name: str, email: str, **fields: Any) -> None:
        self.h.snapshot(name, email, 1, first_name=name.title(), **fields)
        self.h.run()

    def contact_id(self, email: str) -> int:
        with self.h.db.unit_of_work() as s:
            return s.scalar(select(Contact.id).where(Contact.tenant_id == self.h.tenant_id, Contact.email == email))

    def sms_consent(self, email: str) -> str:
        contact_id = self.contact_id(email)
        with self.h.db.unit_of_work() as s:
            return consent_of(s, self.h.tenant_id, contact_id, "sms").status

    def sms_rows(self) -> list[SmsMessage]:
        with self.h.db.unit_of_work() as s:
            return list(s.scalars(select(SmsMessage).where(SmsMessage.tenant_id == self.h.tenant_id)
                                  .order_by(SmsMessage.id)))

    def timeline(self, kind: str) -> list[dict[str, Any]]:
        with self.h.db.unit_of_work() as s:
            return [log.detail for log in s.scalars(select(StepLog).where(StepLog.tenant_id == self.h.tenant_id,
                                                                          StepLog.kind == kind))]


@pytest.fixture
def world(harness: Harness, database, clock) -> Iterator[World]:  # type: ignore[no-untyped-def]
    twilio = FakeTwilio(clock).start()
    app = create_app({"TESTING": True, "CRM_JOURNEYS_DATABASE_URL": database.url, "SECRET_KEY": "t"}, clock=clock)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    app_url = f"http://127.0.0.1:{server.server_port}"
    with harness.db.unit_of_work() as s:
        tenant = s.get(Tenant, harness.tenant_id)
        assert tenant is not None
        slug = tenant.slug
        s.execute(update(Tenant).where(Tenant.id == harness.tenant_id).values(credentials=encrypt_json(
            {"integrations": {"twilio": {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                                         "messaging_service_sid": MESSAGING_SERVICE_SID,
                                         "public_url": app_url, "api_url": twilio.url}}})))
    twilio.sms_url = f"{app_url}/hooks/{slug}/twilio"
    try:
        yield World(harness, twilio, app_url, slug)
    finally:
        server.shutdown()
        server.server_close()
        twilio.stop()
        app.extensions["crm_journeys"].db.dispose()


def texting_journey(tag: str, *, sms_id: str = "hello", body: str = "Hi {{ contact.first_name }}, "
                    "reply YES to book a call", purpose: str = "marketing") -> dict[str, Any]:
    """Texts, waits two days for a reply, tags the contact by what happened."""
    return {"format_version": 1, "name": f"Text {tag}", "entry": {"policy": "every_time"},
            "settings": {"interaction_triggers_start": False},
            "starting_points": [{"id": "go", "type": "tag_added", "params": {"tag": tag}, "next": None}],
            "first_step": "text",
            "steps": [{"id": "text", "type": "action", "action": "send_sms", "next": "wait",
                       "params": {"body": body, "sms_id": sms_id, "kind": purpose}},
                      {"id": "wait", "type": "react_to_event", "timeout": "P2D",
                       "event": {"type": "sms_replied", "key": sms_id,
                                 "where": {"op": "eq", "field": "event.keyword", "value": ""}},
                       "branches": {"yes": "replied", "no": "silent"}},
                      {"id": "replied", "type": "action", "action": "add_tag", "params": {"tag": "replied"},
                       "next": None},
                      {"id": "silent", "type": "action", "action": "add_tag", "params": {"tag": "silent"},
                       "next": None}]}


def test_journey_texts_waits_for_the_reply_and_branches_on_it(world: World):
    h = world.h
    world.contact("ada", "ada@example.com", phone="(415) 555-2671", country="US")
    world.contact("bob", "bob@example.com", phone="030 12345678", country="Germany")
    h.publish(texting_journey("sms-go"))
    h.event("tag_added", "ada@example.com", key="sms-go")
    h.event("tag_added", "bob@example.com", key="sms-go")
    h.run()
    [to_ada] = world.twilio.outbound(ADA)
    [to_bob] = world.twilio.outbound("+493012345678")  # national number read with the contact's country
    assert to_ada["body"] == "Hi Ada, reply YES to book a call"
    assert to_ada["messaging_service_sid"] == MESSAGING_SERVICE_SID
    assert world.twilio.report(to_ada["sid"], "delivered").status_code == 204
    assert world.twilio.receive(ADA, "Yes please!").status_code == 200
    h.run()
    assert h.branches("wait") == ["yes"]
    h.advance(days=2, minutes=1)
    assert h.branches("wait") == ["yes", "no"]  # Bob never answered
    assert [a for _, a in h.actions_for("ada@example.com")] == ["send_sms", "add_tag"]
    with h.db.unit_of_work() as s:
        types = [e.type for e in s.scalars(select(InboxEvent).where(InboxEvent.tenant_id == h.tenant_id))]
    assert {"sms_sent", "sms_delivered", "sms_replied"} <= set(types)
    assert {r.to_number: r.status for r in world.sms_rows()} == {ADA: "delivered", "+493012345678": "accepted"}
    assert len(world.twilio.outbound()) == 2  # nothing was texted twice


def test_stop_reply_opts_out_and_a_second_journeys_text_is_skipped(world: World):
    h = world.h
    world.contact("ada", "ada@example.com", phone=ADA)
    h.publish(texting_journey("first", sms_id="first"))
    h.publish(texting_journey("second", sms_id="second"))
    h.event("tag_added", "ada@example.com", key="first")
    h.run()
    assert world.twilio.receive(ADA, "STOP").status_code == 200
    h.run()
    assert world.sms_consent("ada@example.com") == "unsubscribed"
    assert h.branches("wait") == []  # STOP is not the reply the journey waits for
    h.event("tag_added", "ada@example.com", key="second")
    h.run()
    assert len(world.twilio.outbound(ADA)) == 1
    second = [r for r in h.outbox() if r.params.get("sms_id") == "second"]
    assert [r.status for r in second] == ["done"]
    assert second[0].result["summary"].startswith("skipped: unsubscribed")
    [skip] = world.timeline("skipped")
    assert skip["why"].startswith("unsubscribed from SMS on 2026-03-02")
    # START subscribes again: a transactional text was never blocked by our record
    world.twilio.receive(ADA, "START")
    h.run()
    assert world.sms_consent("ada@example.com") == "subscribed"


def test_twilio_21610_records_the_opt_out(world: World):
    h = world.h
    world.contact("ada", "ada@example.com", phone=ADA)
    world.twilio.opted_out.add(("+14155550100", ADA))  # opted out at Twilio, not with us
    h.publish(texting_journey("go", purpose="transactional"))
    h.event("tag_added", "ada@example.com", key="go")
    h.run()
    [row] = [r for r in h.outbox() if r.action == "send_sms"]
    assert row.status == "done" and "21610" in row.result["summary"]
    [skip] = world.timeline("skipped")
    assert "21610" in skip["why"]
    assert world.sms_consent("ada@example.com") == "unsubscribed"


def test_forged_callbacks_are_refused_and_leave_nothing(world: World):
    h = world.h
    world.contact("ada", "ada@example.com", phone=ADA)
    h.publish(texting_journey("go"))
    h.event("tag_added", "ada@example.com", key="go")
    h.run()
    [sent] = world.twilio.outbound(ADA)
    with h.db.unit_of_work() as s:
        before = len(list(s.scalars(select(InboxEvent.id).where(InboxEvent.tenant_id == h.tenant_id))))
    assert world.twilio.report(sent["sid"], "undelivered", error_code=30003, forged=True).status_code == 403
    assert world.twilio.receive(ADA, "STOP", forged=True).status_code == 403
    unsigned = requests.post(f"{world.app_url}/hooks/{world.slug}/twilio/status",
                             data={"MessageSid": sent["sid"], "MessageStatus": "failed"}, timeout=5)
    assert unsigned.status_code == 403
    with h.db.unit_of_work() as s:
        after = len(list(s.scalars(select(InboxEvent.id).where(InboxEvent.tenant_id == h.tenant_id))))
    assert world.sms_consent("ada@example.com") == "never_asked"
    assert after == before
    assert [r.status for r in world.sms_rows()] == ["accepted"]
    # the genuine callback still works
    assert world.twilio.report(sent["sid"], "undelivered", error_code=30003).status_code == 204
    h.run()
    with h.db.unit_of_work() as s:
        [event] = s.scalars(select(InboxEvent).where(InboxEvent.tenant_id == h.tenant_id,
                                                     InboxEvent.type == "sms_not_delivered"))
        assert event.payload["properties"]["reason"] == "Twilio error 30003"


def test_rate_limited_send_is_retried_after_retry_after_without_a_second_text(world: World):
    h = world.h
    world.contact("ada", "ada@example.com", phone=ADA)
    world.twilio.rate_limit(retry_after=30)
    h.publish(texting_journey("go"))
    h.event("tag_added", "ada@example.com", key="go")
    h.run()
    [row] = [r for r in h.outbox() if r.action == "send_sms"]
    assert row.status == "pending" and "20429" in row.last_error
    assert world.twilio.outbound() == []
    h.advance(seconds=31)
    assert len(world.twilio.outbound(ADA)) == 1
    assert [r.status for r in h.outbox() if r.action == "send_sms"] == ["done"]
    h.advance(minutes=10)
    assert len(world.twilio.outbound(ADA)) == 1


def test_lost_answer_is_looked_up_on_twilio_before_any_resend(world: World):
    h = world.h
    world.contact("ada", "ada@example.com", phone=ADA)
    world.twilio.lose_next_write_response()  # Twilio creates the message, the answer is a 502
    h.publish(texting_journey("go"))
    h.event("tag_added", "ada@example.com", key="go")
    h.run()
    assert len(world.twilio.outbound(ADA)) == 1
    [row] = [r for r in h.outbox() if r.action == "send_sms"]
    assert row.status == "pending"
    h.advance(minutes=5)
    [row] = [r for r in h.outbox() if r.action == "send_sms"]
    assert row.status == "done" and row.result["summary"].startswith("already sent")
    assert len(world.twilio.outbound(ADA)) == 1
    [local] = world.sms_rows()
    assert local.sid == world.twilio.outbound(ADA)[0]["sid"]


@pytest.mark.parametrize("phone, country, reason", [
    ("12", None, "no country code"),
    ("hello", "US", "not a phone number"),
    ("+1 555 0100", None, "not a valid number"),
    (None, None, "has no phone number"),
])
def test_unreadable_number_is_dead_lettered_at_once_with_the_reason(world: World, phone, country, reason):
    h = world.h
    fields = {k: v for k, v in {"phone": phone, "country": country}.items() if v is not None}
    world.contact("ada", "ada@example.com", **fields)
    h.publish(texting_journey("go"))
    h.event("tag_added", "ada@example.com", key="go")
    h.run()
    [row] = [r for r in h.outbox() if r.action == "send_sms"]
    assert row.status == "dead" and row.attempts == 1
    assert reason in row.last_error
    assert world.twilio.requests == []


def test_wrong_credentials_dead_letter_with_twilios_20003(world: World):
    h = world.h
    with h.db.unit_of_work() as s:
        s.execute(update(Tenant).where(Tenant.id == h.tenant_id).values(credentials=encrypt_json(
            {"integrations": {"twilio": {"account_sid": ACCOUNT_SID, "auth_token": "wrong",
                                         "from_number": "+14155550100", "api_url": world.twilio.url}}})))
    world.contact("ada", "ada@example.com", phone=ADA)
    h.publish(texting_journey("go"))
    h.event("tag_added", "ada@example.com", key="go")
    h.run()
    [row] = [r for r in h.outbox() if r.action == "send_sms"]
    assert row.status == "dead" and "20003" in row.last_error and "wrong" not in row.last_error


def test_api_key_and_from_number_and_callbacks_out_of_order_or_repeated(world: World):
    from tests.fakes.twilio import API_KEY_SECRET, API_KEY_SID

    h = world.h
    with h.db.unit_of_work() as s:
        s.execute(update(Tenant).where(Tenant.id == h.tenant_id).values(credentials=encrypt_json(
            {"integrations": {"twilio": {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                                         "api_key_sid": API_KEY_SID, "api_key_secret": API_KEY_SECRET,
                                         "from_number": "+14155550100", "public_url": world.app_url,
                                         "api_url": world.twilio.url}}})))
    world.contact("ada", "ada@example.com", phone=ADA)
    h.publish(texting_journey("go"))
    h.event("tag_added", "ada@example.com", key="go")
    h.run()
    [sent] = world.twilio.outbound(ADA)
    assert sent["from"] == "+14155550100" and sent["messaging_service_sid"] is None
    world.twilio.report(sent["sid"], "delivered")
    world.twilio.report(sent["sid"], "delivered")  # Twilio may repeat a callback
    world.twilio.report(sent["sid"], "sent")  # and deliver them out of order
    h.run()
    assert [r.status for r in world.sms_rows()] == ["delivered"]
    with h.db.unit_of_work() as s:
        delivered = list(s.scalars(select(InboxEvent).where(InboxEvent.tenant_id == h.tenant_id,
                                                            InboxEvent.type == "sms_delivered")))
    assert len(delivered) == 1


def test_a_reply_starts_a_journey_only_when_interaction_triggers_may_start(world: World):
    h = world.h
    world.contact("ada", "ada@example.com", phone=ADA)
    h.publish(texting_journey("go"))
    follow_up = {"format_version": 1, "name": "Answer replies", "entry": {"policy": "every_time"},
                 "settings": {"interaction_triggers_start": True},
                 "starting_points": [{"id": "r", "type": "sms_replied", "params": {"sms": "hello"}, "next": None}],
                 "first_step": "task",
                 "steps": [{"id": "task", "type": "action", "action": "add_tag", "next": None,
                            "params": {"tag": "answered-by-text"}}]}
    jid = h.publish(follow_up)
    h.event("tag_added", "ada@example.com", key="go")
    h.run()
    world.twilio.receive(ADA, "Can you call me at 5?")
    h.run()
    assert ("task", "add_tag") in h.actions_for("ada@example.com")
    with h.db.unit_of_work() as s:
        [event] = s.scalars(select(InboxEvent).where(InboxEvent.tenant_id == h.tenant_id,
                                                     InboxEvent.type == "sms_replied"))
    assert event.payload["properties"]["body"] == "Can you call me at 5?"
    assert jid in {i.journey_id for i in h.instances()}


def _policy(world: World, **policy: Any) -> None:
    with world.h.db.unit_of_work() as s:
        s.execute(update(Tenant).where(Tenant.id == world.h.tenant_id).values(settings={"contact_policy": policy}))


def test_quiet_hours_hold_a_marketing_text_until_morning_in_the_contacts_zone(world: World):
    h = world.h
    _policy(world, quiet_hours={"start": "21:00", "end": "08:00"}, time_zone="Europe/Berlin")
    world.contact("ada", "ada@example.com", phone=ADA, time_zone="America/Los_Angeles")  # 01:00 there
    h.publish(texting_journey("go"))
    h.event("tag_added", "ada@example.com", key="go")
    h.run()
    assert world.twilio.outbound() == []
    [held] = world.timeline("held")
    assert held["why"].startswith("held: quiet hours in America/Los_Angeles until 2026-03-02 08:00 (16:00 UTC)")
    h.advance(hours=6, minutes=59)
    assert world.twilio.outbound() == []
    h.advance(minutes=2)
    assert len(world.twilio.outbound(ADA)) == 1
    [row] = [r for r in h.outbox() if r.action == "send_sms"]
    assert row.status == "done" and row.attempts == 1  # a hold is not a failed attempt


def test_the_cap_counts_texts_and_skips_the_one_over_it(world: World):
    h = world.h
    _policy(world, max_messages=1, period_days=7)
    world.contact("ada", "ada@example.com", phone=ADA)
    h.publish(texting_journey("first", sms_id="first"))
    h.publish(texting_journey("second", sms_id="second"))
    h.publish(texting_journey("notice", sms_id="notice", purpose="transactional"))
    h.event("tag_added", "ada@example.com", key="first")
    h.run()
    h.advance(hours=1)
    h.event("tag_added", "ada@example.com", key="second")
    h.event("tag_added", "ada@example.com", key="notice")
    h.run()
    assert [m["body"] for m in world.twilio.outbound(ADA)] == ["Hi Ada, reply YES to book a call"] * 2
    second = next(r for r in h.outbox() if r.params.get("sms_id") == "second")
    assert second.result["summary"] == "skipped: contact policy: 1 marketing messages in 7 days (at most 1)"
    assert {r.sms_id: r.status for r in world.sms_rows()} == {"first": "accepted", "second": "skipped",
                                                              "notice": "accepted"}


class Killed(BaseException):
    """The worker process died here (nothing in the runtime catches a BaseException)."""


def test_worker_killed_after_twilio_accepted_the_text_never_texts_twice(world: World, monkeypatch):
    from crm_journeys.actions import sms as sms_action
    from crm_journeys.runtime.services import Runtime
    from crm_journeys.runtime.worker import Worker

    h = world.h
    world.contact("ada", "ada@example.com", phone=ADA)
    h.publish(texting_journey("go"))
    h.event("tag_added", "ada@example.com", key="go")
    real_sent = sms_action._sent

    def die_after_twilio(*args: Any, **kwargs: Any) -> Any:
        raise Killed  # Twilio has the message; our record of its sid and the row's close are lost

    monkeypatch.setattr(sms_action, "_sent", die_after_twilio)
    with pytest.raises(Killed):
        h.run()
    monkeypatch.setattr(sms_action, "_sent", real_sent)
    assert len(world.twilio.outbound(ADA)) == 1
    h.runtime = Runtime(db=h.db, clock=h.clock)  # a fresh process
    h.worker = Worker(h.runtime)
    h.advance(minutes=10)  # past the dead worker's lease on the row
    assert len(world.twilio.outbound(ADA)) == 1
    [row] = [r for r in h.outbox() if r.action == "send_sms"]
    assert row.status == "done" and row.result["summary"].startswith("already sent")
    [local] = world.sms_rows()
    assert local.sid == world.twilio.outbound(ADA)[0]["sid"]


def test_retention_removes_the_record_of_texts_untouched_for_the_outbox_period(world: World):
    from datetime import timedelta

    from crm_journeys.runtime.retention import prune

    h = world.h
    world.contact("ada", "ada@example.com", phone=ADA)
    h.publish(texting_journey("go"))
    h.event("tag_added", "ada@example.com", key="go")
    h.run()
    assert len(world.sms_rows()) == 1
    with h.db.unit_of_work() as s:
        slug = s.get(Tenant, h.tenant_id).slug  # type: ignore[union-attr]
    assert prune(h.db, h.clock.now() + timedelta(days=89), [slug])[slug]["cj_sms_message"] == 0
    assert len(world.sms_rows()) == 1
    removed = prune(h.db, h.clock.now() + timedelta(days=91), [slug])[slug]
    assert removed["cj_sms_message"] == 1 and world.sms_rows() == []
