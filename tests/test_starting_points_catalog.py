"""One runtime test per starting-point type of the catalogue: publish a journey with only
that starting point, send what should start it and something that should not, and read
back who entered. Date and lapse types have their own files (dates, lapses); this file
checks that every type of the catalogue is covered by one of the three."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from crm_journeys.definition.triggers import CATALOG
from crm_journeys.runtime.segments import save_segment
from crm_journeys.runtime.starting_points import add_contacts_to_journey
from tests.sp_helpers import entered, entries, journey, sp

Fire = Callable[[Any, int], None]


def ev(type_: str, key: str = "", **props: Any) -> Fire:
    return lambda h, jid, email: h.event(type_, email, key=key, **props)


def seq(*fires: Fire) -> Fire:
    def run(h: Any, jid: int, email: str) -> None:
        for f in fires:
            f(h, jid, email)
            h.run()
    return run


def manual(h: Any, jid: int, email: str) -> None:
    with h.db.unit_of_work() as s:
        add_contacts_to_journey(s, h.tenant_id, jid, h.clock.now(), emails=[email], added_by="ops")


def to_journey(type_: str, **props: Any) -> Fire:
    """An event addressed to the journey itself (journey API)."""
    return lambda h, jid, email: h.event(type_, email, key=str(jid), journey=str(jid), **props)


def snap(version: int, **fields: Any) -> Fire:
    return lambda h, jid, email: h.snapshot(f"ext-{email}", email, version, **fields)


def segment_then_join(h: Any, jid: int, email: str) -> None:
    h.snapshot(f"ext-{email}", email, 1, language="de")


ORDER = {"order_id": "o1", "products": ["beans"], "total": 12.5, "currency": "EUR"}

# type -> (params, fires it, must not fire it)
CASES: dict[str, tuple[dict[str, Any], Fire, Fire | None]] = {
    "signup": ({"list": "newsletter"}, ev("subscribed", "newsletter"), ev("subscribed", "other")),
    "tag_added": ({"tag": "VIP"}, ev("tag_added", "VIP"), ev("tag_added", "vip")),
    "tag_removed": ({"tag": "VIP"}, seq(ev("tag_added", "VIP"), ev("tag_removed", "VIP")),
                    ev("tag_removed", "VIP")),  # never had it: nothing removed
    "joined_group": ({"group": "g1"}, ev("group_joined", "g1"), ev("group_joined", "g2")),
    "left_group": ({"group": "g1"}, seq(ev("group_joined", "g1"), ev("group_left", "g1")),
                   seq(ev("group_joined", "g2"), ev("group_left", "g2"))),
    "field_changed": ({"field": "country", "value": "DE"}, seq(snap(1, country="IT"), snap(2, country="DE")),
                      seq(snap(1, country="DE"), snap(2, country="DE", city="x"), snap(3, country="FR"))),
    "page_visited": ({"url": "https://shop.example/pricing"}, ev("page_visited", "https://shop.example/pricing"),
                     ev("page_visited", "https://shop.example/")),
    "site_link_clicked": ({"url": "https://shop.example/buy"}, ev("site_link_clicked", "https://shop.example/buy"),
                          ev("site_link_clicked", "https://shop.example/sell")),
    "manual_add": ({}, manual, ev("manual_add", "999", journey="999")),
    "record_created": ({"table": "order", "field": "status", "value": "new"},
                       ev("record_changed", "order", change="created", record={"status": "new"}),
                       ev("record_changed", "order", change="created", record={"status": "draft"})),
    "record_updated": ({"table": "lead", "field": "stage"},
                       ev("record_changed", "lead", change="updated", changed_fields=["stage"], record={"stage": "b"}),
                       ev("record_changed", "lead", change="updated", changed_fields=["owner"], record={"stage": "b"})),
    "record_deleted": ({"table": "ticket"}, ev("record_changed", "ticket", change="deleted"),
                       ev("record_changed", "ticket", change="updated")),
    "form_submitted": ({"form": "contact-us"}, ev("form_submitted", "contact-us", answers={"q": "a"}),
                       ev("form_submitted", "other-form")),
    "joined_segment": ({"segment": "germans", "existing_members": False}, segment_then_join,
                       snap(1, language="en")),
    "purchased_any": ({}, ev("purchase", **ORDER), ev("cart_updated", cart_id="c1")),
    "purchased_product": ({"category": "coffee"}, ev("purchase", **{**ORDER, "categories": ["coffee"]}),
                          ev("purchase", **{**ORDER, "categories": ["tea"]})),
    "order_confirmation": ({}, ev("order_confirmed", **ORDER), ev("order_shipped", **ORDER)),
    "order_cancellation": ({}, ev("order_cancelled", **ORDER), ev("order_confirmed", **ORDER)),
    "order_invoice": ({}, ev("order_invoiced", **ORDER, invoice_url="https://x/i"), ev("order_refunded", **ORDER)),
    "shipping_confirmation": ({}, ev("order_shipped", **ORDER), ev("order_invoiced", **ORDER)),
    "refund_confirmation": ({}, ev("order_refunded", **ORDER, refund_amount=3), ev("order_cancelled", **ORDER)),
    "email_sent": ({"email": "news"}, ev("email_sent", "news", email_id="news"), ev("email_sent", "promo")),
    "email_opened": ({"email": "news"}, ev("email_opened", "news"), ev("email_opened", "promo")),
    "email_clicked": ({"email": "news"}, ev("email_clicked", "news", url="https://a"), ev("email_clicked", "x")),
    "email_link_clicked": ({"email": "news", "url": "https://a/b"}, ev("email_clicked", "news", url="https://a/b"),
                           ev("email_clicked", "news", url="https://a/c")),
    "survey_response": ({"survey": "nps"}, ev("survey_answered", "nps", answers={"score": 9}),
                        ev("survey_answered", "csat")),
    "email_delivered": ({"email": "news"}, ev("email_delivered", "news"), ev("email_not_delivered", "news")),
    "email_not_delivered": ({"email": "news"}, ev("email_not_delivered", "news", reason="hard_bounce"),
                            ev("email_delivered", "news")),
    "interaction_email_opened": ({"email": "news"}, ev("email_opened", "news"), ev("email_opened", "x")),
    "sms_delivered": ({"sms": "hello"}, ev("sms_delivered", "hello"), ev("sms_not_delivered", "hello")),
    "sms_not_delivered": ({"sms": "hello"}, ev("sms_not_delivered", "hello", reason="Twilio error 30003"),
                          ev("sms_delivered", "hello")),
    "sms_replied": ({}, ev("sms_replied", "hello", body="Yes", keyword=""), ev("sms_delivered", "hello")),
    "journey_api": ({}, to_journey("journey_api_call", payload={"a": 1}),
                    ev("journey_api_call", "12345", journey="12345")),
    "api_event": ({"name": "webinar_signup"}, ev("custom_event", "webinar_signup", topic="ai"),
                  ev("custom_event", "webinar_left")),
    "custom_trigger": ({"trigger": "vip_call"}, ev("custom_trigger", "vip_call", minutes=5),
                       ev("custom_trigger", "other")),
    "business_trigger": ({"trigger": "lead_created"}, ev("business_event", "lead_created", table="lead"),
                         ev("business_event", "lead_qualified")),
    "eventbrite_registered_any": ({}, ev("eventbrite_registered", "e1", event_id="e1"),
                                  ev("eventbrite_ticket_bought", "e1", event_id="e1")),
    "eventbrite_registered_event": ({"event_id": "e1"}, ev("eventbrite_registered", "e1", event_id="e1"),
                                    ev("eventbrite_registered", "e2", event_id="e2")),
    "eventbrite_ticket_any": ({}, ev("eventbrite_ticket_bought", "e2", event_id="e2"),
                              ev("eventbrite_registered", "e2")),
    "eventbrite_ticket_event": ({"event_id": "e1"}, ev("eventbrite_ticket_bought", "e1", event_id="e1"),
                                ev("eventbrite_ticket_bought", "e3")),
    "livechat_chat_closed": ({}, ev("chat_closed", chat_id="ch1", agent="Bo"), ev("page_visited", "https://x")),
    "zapier_event": ({"zap": "lead-form"}, ev("zapier_event", "lead-form", zap="lead-form"),
                     ev("zapier_event", "other-zap")),
}
COVERED_ELSEWHERE = {
    "specific_date", "signup_anniversary", "birthday", "recurring_date",  # test_starting_points_dates
    "time_since_last_purchase", "abandoned_cart", "abandoned_cart_products",  # ..._lapses
    "email_not_opened", "email_not_clicked",
}


def test_every_catalogue_type_has_a_runtime_test():
    assert set(CATALOG) == set(CASES) | COVERED_ELSEWHERE


@pytest.mark.parametrize("type_", sorted(CASES))
def test_starting_point_type_through_the_runtime(harness, type_):
    params, fire, miss = CASES[type_]
    interaction = CATALOG[type_].interaction
    with harness.db.unit_of_work() as s:
        save_segment(s, harness.tenant_id, "germans", {"op": "eq", "field": "language", "value": "de"},
                     harness.clock.now())
    jid = harness.publish(journey([sp(type_, params)], settings={"interaction_triggers_start": interaction}))
    if miss is not None:
        miss(harness, jid, "miss@example.com")
        harness.run()
    fire(harness, jid, "hit@example.com")
    harness.run()
    assert entered(harness, jid) == ["hit@example.com"]
    assert [b for _, b, _, _ in entries(harness, jid)] == [type_]


def test_order_notifications_run_one_instance_per_order(harness):
    jid = harness.publish(journey([sp("order_confirmation")], policy="once"))
    for order in ("o1", "o2", "o1"):
        harness.event("order_confirmed", "amy@example.com", order_id=order, products=["x"],
                      occurred=order + str(len(entries(harness))))
        harness.run()
    assert [k for _, _, k, _ in entries(harness, jid)] == ["o1", "o2"]
