"""The email round trip through a real SMTP server and the web app: unsubscribe headers,
the open pixel moving a waiting step, tracked links, one-click unsubscribe written back to
the host, the next marketing email skipped, and forged tokens refused alike."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import delete, select, update

from crm_journeys.runtime.consent import consent_of
from crm_journeys.storage.mail_models import EmailSend
from crm_journeys.storage.models import Contact, InboxEvent, SandboxContact, StepLog, Tenant
from tests.conftest import Harness
from tests.mail_fixtures import Inbox, parts, path_of, pixel, start, tracked_links, unsubscribe_url

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
WEBINAR = {"format_version": 1, "name": "Webinar", "entry": {"policy": "every_time"},
           "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "webinar"}}],
           "first_step": "mail",
           "steps": [{"id": "mail", "type": "action", "action": "send_email", "next": "opened",
                      "params": {"email_id": "webinar", "subject": "Join us, {{ contact.first_name }}",
                                 "body": "Register at https://shop.example/webinar?src=mail&x=1.\n"
                                         "Agenda: https://shop.example/agenda"}},
                     {"id": "opened", "type": "react_to_event", "event": {"type": "email_opened", "key": "webinar"},
                      "timeout": "P2D", "branches": {"yes": "task", "no": None}},
                     {"id": "task", "type": "action", "action": "create_task", "next": None,
                      "params": {"subject": "Call {{ contact.first_name }} about the webinar", "due_in_days": 1}}]}


def news(name: str, form: str, kind: str = "marketing") -> dict:  # type: ignore[type-arg]
    return {"format_version": 1, "name": name, "entry": {"policy": "every_time"},
            "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": form}}],
            "first_step": "mail",
            "steps": [{"id": "mail", "type": "action", "action": "send_email", "next": "tag",
                       "params": {"email_id": form, "subject": f"{name} news", "body": "Hello", "kind": kind}},
                      {"id": "tag", "type": "action", "action": "add_tag", "params": {"tag": f"after-{form}"},
                       "next": None}]}


@pytest.fixture
def mail(app, clock):  # type: ignore[no-untyped-def]
    inbox = Inbox(refuse={"gone@example.com": "550 5.1.1 no such user"})
    controller = start(inbox)
    harness = Harness(app.extensions["crm_journeys"].db, clock)
    with harness.db.unit_of_work() as s:
        s.execute(update(Tenant).where(Tenant.id == harness.tenant_id).values(settings={
            "smtp_url": f"smtp://127.0.0.1:{controller.port}", "mail_from": "news@shop.example",
            "public_url": "https://mail.shop.example"}))
    yield harness, app.test_client(), inbox
    controller.stop()


def _events(harness, type_):  # type: ignore[no-untyped-def]
    with harness.db.unit_of_work() as s:
        return list(s.scalars(select(InboxEvent).where(InboxEvent.tenant_id == harness.tenant_id,
                                                       InboxEvent.type == type_)))


def _contact(harness, email):  # type: ignore[no-untyped-def]
    with harness.db.unit_of_work() as s:
        return s.scalar(select(Contact).where(Contact.tenant_id == harness.tenant_id, Contact.email == email))


def _start_webinar(harness, email="uma@example.com"):  # type: ignore[no-untyped-def]
    harness.snapshot(email.split("@")[0], email, 1, first_name="Uma")
    harness.publish(WEBINAR)
    harness.event("form_submitted", email, key="webinar")
    harness.run()


def test_email_carries_one_click_headers_and_its_pixel_moves_the_wait_to_yes(mail):
    harness, client, inbox = mail
    _start_webinar(harness)
    [msg] = inbox.parsed()
    assert msg["List-Unsubscribe"].startswith("<https://mail.shop.example/m/u/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = parts(msg)
    assert "shop.example/webinar" not in text and "shop.example/agenda" not in text  # every link tracked
    assert "Unsubscribe or change your email preferences: https://mail.shop.example/m/u/" in text
    assert harness.crm_records("task") == []
    harness.advance(hours=3)
    answer = client.get(pixel(msg), headers={"User-Agent": BROWSER})
    assert answer.status_code == 200 and answer.mimetype == "image/gif"
    harness.worker.step()  # one worker pass
    assert harness.branches("opened") == ["yes"]
    assert [r.data.get("subject") for r in harness.crm_records("task")] == ["Call Uma about the webinar"]
    [opened] = _events(harness, "email_opened")
    assert opened.payload["properties"]["machine"] is False and opened.key == "webinar"
    client.get(pixel(msg), headers={"User-Agent": BROWSER})  # the same person opening again
    assert len(_events(harness, "email_opened")) == 1


def test_machine_opens_are_marked(mail):
    harness, client, inbox = mail
    _start_webinar(harness)
    [msg] = inbox.parsed()
    client.get(pixel(msg), headers={"User-Agent": BROWSER})  # seconds after the send: a prefetch
    harness.advance(hours=1)
    client.get(pixel(msg), headers={"User-Agent": "Mozilla/5.0"})  # Apple Mail Privacy Protection
    client.get(pixel(msg), headers={"User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"})
    assert [e.payload["properties"]["machine"] for e in _events(harness, "email_opened")] == [True]


def test_tracked_link_records_the_url_and_redirects_only_there(mail):
    harness, client, inbox = mail
    _start_webinar(harness)
    [msg] = inbox.parsed()
    first, second = tracked_links(msg)
    answer = client.get(first)
    assert answer.status_code == 302 and answer.location == "https://shop.example/webinar?src=mail&x=1"
    assert client.get(second).location == "https://shop.example/agenda"
    client.get(first)
    clicks = _events(harness, "email_clicked")
    assert sorted(e.payload["properties"]["url"] for e in clicks) == ["https://shop.example/agenda",
                                                                    "https://shop.example/webinar?src=mail&x=1"]
    instance_id = harness.instances()[0].id
    assert {e.payload["properties"]["instance_id"] for e in clicks} == {instance_id}


def test_forged_altered_and_misused_tokens_are_refused_alike(mail):
    harness, client, inbox = mail
    _start_webinar(harness)
    [msg] = inbox.parsed()
    link = tracked_links(msg)[0]
    token = link.rsplit("/", 1)[1]
    altered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    unsubscribe = path_of(unsubscribe_url(msg))
    refused = [client.get(f"/m/c/{altered}"), client.get("/m/c/not-a-token"),
               client.get(f"/m/u/{token}"),  # a click token is not an unsubscribe token
               client.post(f"/m/u/{altered}", data={"List-Unsubscribe": "One-Click"}),
               client.get("/m/c/" + pixel(msg).rsplit("/", 1)[1][:-4])]  # an open token is not a click token
    assert {r.status_code for r in refused} == {404}
    assert len({r.get_data() for r in refused}) == 1  # one answer for all: nothing about who exists
    assert _events(harness, "email_clicked") == [] and _events(harness, "unsubscribed") == []
    assert client.get(unsubscribe).status_code == 200
    with harness.db.unit_of_work() as s:  # a genuine token whose send is gone: the same answer
        s.execute(delete(EmailSend).where(EmailSend.tenant_id == harness.tenant_id))
    gone = client.get(unsubscribe)
    assert (gone.status_code, gone.get_data()) == (404, refused[0].get_data())


def test_one_click_unsubscribes_writes_back_and_skips_the_next_marketing_email(mail):
    harness, client, inbox = mail
    _start_webinar(harness, "vic@example.com")
    [msg] = inbox.parsed()
    answer = client.post(path_of(unsubscribe_url(msg)), data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    contact = _contact(harness, "vic@example.com")
    with harness.db.unit_of_work() as s:  # at once, before any worker pass
        assert consent_of(s, harness.tenant_id, contact.id).status == "unsubscribed"
    client.post(path_of(unsubscribe_url(msg)), data={"List-Unsubscribe": "One-Click"})  # replayed
    assert len(_events(harness, "unsubscribed")) == 1
    harness.run()
    with harness.db.unit_of_work() as s:
        host = s.scalar(select(SandboxContact).where(SandboxContact.tenant_id == harness.tenant_id,
                                                     SandboxContact.email == "vic@example.com"))
        assert host.fields["email_opt_out"] is True  # written back to the CRM
    harness.publish(news("Spring", "spring"))
    harness.publish(news("Receipt", "order", kind="transactional"))
    harness.event("form_submitted", "vic@example.com", key="spring")
    harness.event("form_submitted", "vic@example.com", key="order")
    harness.run()
    assert [m["Subject"] for m in inbox.parsed()] == ["Join us, Uma", "Receipt news"]
    with harness.db.unit_of_work() as s:
        skipped = s.scalars(select(StepLog.detail).where(StepLog.tenant_id == harness.tenant_id,
                                                         StepLog.kind == "skipped")).all()
    assert [d["why"] for d in skipped] == ["skipped: unsubscribed on 2026-03-02 (send_email 'spring' not sent)"]
    assert {"after-spring", "after-order"} <= set(_contact(harness, "vic@example.com").tags)  # journeys went on
    assert "List-Unsubscribe" not in inbox.parsed()[1]  # transactional: no marketing headers


def test_preferences_page_unsubscribes_and_subscribes_again(mail):
    harness, client, inbox = mail
    _start_webinar(harness, "wes@example.com")
    page = path_of(unsubscribe_url(inbox.parsed()[0]))
    shown = client.get(page).get_data(as_text=True)
    assert "w***@example.com" in shown and "wes@example.com" not in shown and "Unsubscribe" in shown
    assert "Subscribe again" in client.post(page, data={"choice": "unsubscribe"}).get_data(as_text=True)
    assert "You receive our marketing emails" in client.post(page, data={"choice": "subscribe"}).get_data(as_text=True)
    harness.run()
    assert _contact(harness, "wes@example.com").fields["email_subscription"] == "subscribed"


def test_smtp_5xx_for_the_recipient_is_a_hard_bounce(mail):
    harness, client, inbox = mail
    harness.snapshot("gone", "gone@example.com", 1)
    harness.publish(news("Spring", "spring"))
    harness.publish(news("Receipt", "order", kind="transactional"))
    harness.event("form_submitted", "gone@example.com", key="spring")
    harness.run()
    [row] = [r for r in harness.outbox() if r.action == "send_email"]
    assert row.status == "dead" and row.attempts == 1 and "550" in row.last_error
    [bounce] = _events(harness, "email_not_delivered")
    assert "no such user" in bounce.payload["properties"]["reason"]
    harness.advance(minutes=5)
    harness.event("form_submitted", "gone@example.com", key="order")
    harness.run()
    receipt = [r for r in harness.outbox() if r.action == "send_email"][-1]
    assert receipt.status == "done" and receipt.result["summary"].startswith("skipped: address bounced on")
    assert inbox.messages == []


def test_tracking_off_for_the_tenant_leaves_links_alone(mail):
    harness, client, inbox = mail
    with harness.db.unit_of_work() as s:
        tenant = s.get(Tenant, harness.tenant_id)
        tenant.settings = {**tenant.settings, "email_tracking": False}
    _start_webinar(harness)
    [msg] = inbox.parsed()
    text, html = parts(msg)
    assert "https://shop.example/webinar?src=mail&x=1" in text and "<img" not in html
    assert msg["List-Unsubscribe"]  # unsubscribe is not tracking: it stays
    harness.advance(days=2, minutes=1)
    assert harness.branches("opened") == ["no"]


def test_a_journey_can_ignore_machine_opens(mail):
    harness, client, inbox = mail
    doc = json.loads(json.dumps(WEBINAR))
    doc["steps"][1]["event"]["where"] = {"op": "is_false", "field": "event.machine"}
    harness.snapshot("uma", "uma@example.com", 1, first_name="Uma")
    harness.publish(doc)
    harness.event("form_submitted", "uma@example.com", key="webinar")
    harness.run()
    [msg] = inbox.parsed()
    harness.advance(hours=1)
    client.get(pixel(msg), headers={"User-Agent": "Mozilla/5.0"})  # Apple's proxy prefetching
    harness.run()
    assert harness.branches("opened") == []
    client.get(pixel(msg), headers={"User-Agent": BROWSER})
    harness.run()
    assert harness.branches("opened") == ["yes"]


def test_tracking_off_for_one_journey(mail):
    harness, client, inbox = mail
    doc = json.loads(json.dumps(WEBINAR))
    doc["settings"] = {"email_tracking": False}
    harness.snapshot("uma", "uma@example.com", 1, first_name="Uma")
    harness.publish(doc)
    harness.event("form_submitted", "uma@example.com", key="webinar")
    harness.run()
    [msg] = inbox.parsed()
    text, html = parts(msg)
    assert "https://shop.example/agenda" in text and "<img" not in html and msg["List-Unsubscribe"]
