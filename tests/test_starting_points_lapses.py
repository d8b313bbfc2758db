"""Lapse starting points through the runtime: email not opened / not clicked within a
period, time since last purchase (only purchases after the journey went live), and
abandoned carts (idle time, product filters, one instance per cart, leaving the journey
when the order for that cart completes)."""

from __future__ import annotations

import pytest

from tests.sp_helpers import entered, entries, journey, sp

WAIT_THEN_END = [{"id": "hold", "type": "wait", "duration": "P10D", "next": "end"},
                 {"id": "end", "type": "exit"}]


@pytest.mark.parametrize("type_, answer", [("email_not_opened", "email_opened"),
                                           ("email_not_clicked", "email_clicked")])
def test_email_lapse_fires_only_without_an_answer(harness, type_, answer):
    jid = harness.publish(journey([sp(type_, {"email": "news", "within": "P3D"})]))
    for who in ("quiet", "answers", "other"):
        harness.event("email_sent", f"{who}@example.com", key="news", email_id="news", message_id=f"m-{who}")
    harness.event("email_sent", "other@example.com", key="promo", email_id="promo")  # another email
    harness.run()
    harness.advance(days=1)
    harness.event(answer, "answers@example.com", key="news", email_id="news", url="https://x.example/")
    harness.event(answer, "other@example.com", key="promo", email_id="promo", url="https://x.example/")
    harness.run()
    harness.advance(days=2, minutes=1)
    assert sorted(entered(harness, jid)) == ["other@example.com", "quiet@example.com"]


def test_time_since_last_purchase_counts_purchases_after_going_live_and_rearms(harness):
    harness.event("purchase", "before@example.com", order_id="o0")  # before the journey exists
    harness.run()
    jid = harness.publish(journey([sp("time_since_last_purchase", {"duration": "P30D"})]))
    harness.event("purchase", "buyer@example.com", order_id="o1")
    harness.event("purchase", "loyal@example.com", order_id="o2")
    harness.run()
    harness.advance(days=20)
    harness.event("purchase", "loyal@example.com", order_id="o3")  # re-arms: 30 days from now
    harness.run()
    harness.advance(days=11)
    assert entered(harness, jid) == ["buyer@example.com"]
    harness.advance(days=20)
    assert entered(harness, jid) == ["buyer@example.com", "loyal@example.com"]


def _cart(h, email, cart, products, **extra):
    h.event("cart_updated", email, cart_id=cart, products=products, total=10.0, currency="EUR", **extra)


def test_abandoned_cart_two_carts_of_one_contact(harness):
    jid = harness.publish(journey([sp("abandoned_cart", {"after": "PT2H"})], steps=WAIT_THEN_END,
                                  policy="once"))
    _cart(harness, "ann@example.com", "c1", ["mug"])
    _cart(harness, "ann@example.com", "c2", ["beans"])
    harness.run()
    harness.advance(hours=1)
    _cart(harness, "ann@example.com", "c2", ["beans", "mug"])  # c2 changed: idle time restarts
    harness.run()
    harness.advance(hours=1, minutes=1)
    assert [k for _, _, k, _ in entries(harness, jid)] == ["c1"]
    harness.advance(hours=1)
    assert [k for _, _, k, _ in entries(harness, jid)] == ["c1", "c2"]  # one instance per cart
    harness.event("order_confirmed", "ann@example.com", order_id="o9", cart_id="c1", products=["mug"])
    harness.run()
    by_cart = {i.entry_key: (i.status, i.outcome) for i in harness.instances()}
    assert by_cart["c1"] == ("exited", "order completed (order_confirmed)")
    assert by_cart["c2"] == ("active", "")
    harness.event("purchase", "ann@example.com", order_id="o10", cart_id="c2")
    harness.run()
    assert {i.entry_key: i.status for i in harness.instances()} == {"c1": "exited", "c2": "exited"}


def test_checkout_before_the_idle_time_cancels_the_cart(harness):
    jid = harness.publish(journey([sp("abandoned_cart", {"after": "PT1H"})]))
    _cart(harness, "bo@example.com", "k1", ["mug"])
    _cart(harness, "bo@example.com", "k2", ["mug"])
    harness.run()
    harness.advance(minutes=30)
    harness.event("purchase", "bo@example.com", order_id="o1", cart_id="k1")
    harness.run()
    harness.advance(hours=2)
    assert [k for _, _, k, _ in entries(harness, jid)] == ["k2"]


def test_abandoned_cart_with_product_filters(harness):
    jid = harness.publish(journey([sp("abandoned_cart_products", {
        "after": "PT1H", "include_products": ["espresso"], "exclude_products": ["gift-card"]})]))
    _cart(harness, "a@example.com", "1", ["espresso", "mug"])
    _cart(harness, "b@example.com", "2", ["espresso", "gift-card"])
    _cart(harness, "c@example.com", "3", ["mug"])
    harness.run()
    harness.advance(hours=2)
    assert entered(harness, jid) == ["a@example.com"]
