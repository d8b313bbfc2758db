"""The starting-point catalogue: complete against FEATURES.md, consistent, and usable."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from crm_journeys.definition.conditions import evaluate
from crm_journeys.definition.model import Group
from crm_journeys.definition.schema import dump_condition, parse_condition
from crm_journeys.definition.triggers import (
    CANONICAL_EVENTS,
    CATALOG,
    catalog_as_json,
    trigger_type,
)

FEATURES = Path(__file__).resolve().parents[2] / "shared" / "design" / "FEATURES.md"

# FEATURES.md section 1, first column -> the catalogue entries that implement the row.
FEATURE_ROWS: dict[str, list[str]] = {
    "tag added": ["tag_added"],
    "signup / subscribed": ["signup"],
    "joined group": ["joined_group"],
    "left group": ["left_group"],
    "field changed to value": ["field_changed"],
    "page visited": ["page_visited"],
    "link clicked (site)": ["site_link_clicked"],
    "manual add": ["manual_add"],
    "record updated (004)": ["record_created", "record_updated", "record_deleted"],
    "form submitted (004)": ["form_submitted"],
    "segment (004)": ["joined_segment"],
    "specific date": ["specific_date"],
    "signup date anniversary": ["signup_anniversary"],
    "birthday": ["birthday"],
    "recurring date": ["recurring_date"],
    "purchased any product": ["purchased_any"],
    "purchased a specific product": ["purchased_product"],
    "time since last purchase": ["time_since_last_purchase"],
    "abandoned cart": ["abandoned_cart"],
    "abandoned cart with specific products": ["abandoned_cart_products"],
    "order confirmation, cancellation confirmation, order invoice, shipping confirmation, refund confirmation": [
        "order_confirmation",
        "order_cancellation",
        "order_invoice",
        "shipping_confirmation",
        "refund_confirmation",
    ],
    "email sent": ["email_sent"],
    "email opened": ["email_opened"],
    "campaign not opened": ["email_not_opened"],
    "clicked any link": ["email_clicked"],
    "no link clicked": ["email_not_clicked"],
    "clicked specific link": ["email_link_clicked"],
    "survey response": ["survey_response"],
    "journey API": ["journey_api"],
    "events API": ["api_event"],
    "Eventbrite: registered for any event / a specific event; bought a ticket for any / a specific event": [
        "eventbrite_registered_any",
        "eventbrite_registered_event",
        "eventbrite_ticket_any",
        "eventbrite_ticket_event",
    ],
    "LiveChat: chat closed": ["livechat_chat_closed"],
    "Zapier custom event": ["zapier_event"],
    "custom trigger (004)": ["custom_trigger"],
    "business trigger (004)": ["business_trigger"],
}
INTERACTION = ["email_delivered", "email_not_delivered", "interaction_email_opened",
               "sms_delivered", "sms_not_delivered", "sms_replied"]
ORIGINAL = {  # names and events of the first catalogue, which other modules already use
    "signup": "subscribed",
    "tag_added": "tag_added",
    "tag_removed": "tag_removed",
    "joined_group": "group_joined",
    "form_submitted": "form_submitted",
    "page_visited": "page_visited",
    "purchased_any": "purchase",
    "purchased_product": "purchase",
    "email_opened": "email_opened",
    "email_clicked": "email_clicked",
    "api_event": "custom_event",
    "birthday": "date_due",
}


def _feature_rows() -> list[str]:
    text = FEATURES.read_text(encoding="utf-8")
    section = text.split("## 1.", 1)[1].split("## 2.", 1)[0]
    rows = re.findall(r"^\| (.+?) \| .+ \|$", section, flags=re.M)
    return [r for r in rows if r not in ("starting point",) and not set(r) <= {"-", "|"}]


def test_every_row_of_features_md_is_mapped() -> None:
    if not FEATURES.exists():
        pytest.skip("shared/design/FEATURES.md is not next to the repository")
    assert set(_feature_rows()) == set(FEATURE_ROWS)


@pytest.mark.parametrize(
    "name", [n for names in FEATURE_ROWS.values() for n in names] + INTERACTION + ["tag_removed"]
)
def test_catalogue_has_every_starting_point(name: str) -> None:
    assert name in CATALOG


def test_original_names_and_events_are_kept() -> None:
    assert {n: CATALOG[n].event for n in ORIGINAL} == ORIGINAL


def test_every_trigger_listens_to_a_canonical_event_whose_key_matches() -> None:
    for tt in CATALOG.values():
        spec = CANONICAL_EVENTS[tt.event]
        if tt.keyed_by_journey:
            assert spec.key == "journey", tt.name
        if tt.key_param is not None:
            assert tt.key_param in {p.name for p in tt.params}, tt.name
            assert spec.key is not None, tt.name
        if tt.entry_key is not None:
            assert tt.entry_key in spec.properties, tt.name


def test_exclusive_types_are_cart_and_order_notifications() -> None:
    exclusive = {n for n, t in CATALOG.items() if t.exclusive}
    assert exclusive == {
        "abandoned_cart",
        "abandoned_cart_products",
        "order_confirmation",
        "order_cancellation",
        "order_invoice",
        "shipping_confirmation",
        "refund_confirmation",
    }
    assert {CATALOG[n].entry_key for n in exclusive} == {"cart_id", "order_id"}


def test_interaction_and_schedule_flags() -> None:
    assert {n for n, t in CATALOG.items() if t.interaction} == set(INTERACTION)
    assert {n for n, t in CATALOG.items() if t.schedule == "once"} == {"specific_date"}
    assert {n for n, t in CATALOG.items() if t.schedule == "yearly"} == {
        "birthday",
        "signup_anniversary",
        "recurring_date",
    }
    for name in ("specific_date", "birthday", "signup_anniversary", "recurring_date"):
        assert {"offset_days", "time"} <= {p.name for p in CATALOG[name].params}


def test_routing_keys() -> None:
    assert CATALOG["tag_added"].routing_key({"tag": "VIP"}) == "VIP"
    assert CATALOG["signup"].routing_key({}) == "*"
    assert CATALOG["journey_api"].routing_key({}, journey_id="42") == "42"
    assert CATALOG["journey_api"].routing_key({}) == "*"


def test_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: abandoned_cart"):
        trigger_type("tag_addded")


def test_catalog_as_json_groups_every_type() -> None:
    doc = catalog_as_json()
    listed = [t["name"] for g in doc["groups"] for t in g["types"]]
    assert sorted(listed) == sorted(CATALOG)
    tag = next(t for g in doc["groups"] for t in g["types"] if t["name"] == "tag_added")
    assert tag["params"] == [
        {"name": "tag", "type": "text", "label": "Tag", "required": True, "picker": "tags"}
    ]
    business = next(t for g in doc["groups"] for t in g["types"] if t["name"] == "business_trigger")
    assert "contact_created" in business["params"][0]["choices"]
    assert set(doc["events"]) == set(CANONICAL_EVENTS)


# --- event conditions, checked with the reference evaluator ------------------------------


def _holds(name: str, params: dict[str, Any], event: dict[str, Any]) -> bool:
    conditions = CATALOG[name].event_conditions(params)
    for cond in conditions:  # each one must also be a valid document condition
        assert parse_condition(dump_condition(cond)) == cond
    return evaluate(Group("all", tuple(conditions)), {"event": event, "now": 0})


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"field": "status", "before": "lead", "after": "customer"}, True),
        ({"field": "status", "after": "customer"}, True),
        ({"field": "status", "before": "customer", "after": "customer"}, False),
        ({"field": "status", "before": "customer", "after": "lead"}, False),
    ],
)
def test_field_changed_to_value(event: dict[str, Any], expected: bool) -> None:
    assert _holds("field_changed", {"field": "status", "value": "customer"}, event) is expected


def test_purchased_product_or_category() -> None:
    assert _holds("purchased_product", {"product": "p1"}, {"products": ["p0", "p1"]})
    assert not _holds("purchased_product", {"product": "p1"}, {"products": ["p0"]})
    assert _holds(
        "purchased_product", {"category": "beans"}, {"products": ["p0"], "categories": ["beans"]}
    )


def test_abandoned_cart_with_products() -> None:
    params = {"include_products": ["a", "b"], "exclude_products": ["z"]}
    assert _holds("abandoned_cart_products", params, {"products": ["b", "c"]})
    assert not _holds("abandoned_cart_products", params, {"products": ["b", "z"]})
    assert not _holds("abandoned_cart_products", params, {"products": ["c"]})


def test_record_updated_with_field_filter() -> None:
    params = {"table": "lead", "field": "status", "value": "qualified"}
    event = {
        "table": "lead",
        "change": "updated",
        "changed_fields": ["status"],
        "record": {"status": "qualified"},
    }
    assert _holds("record_updated", params, event)
    assert not _holds("record_updated", params, {**event, "changed_fields": ["owner"]})
    assert not _holds("record_created", params, event)


def test_segment_members_now_or_later() -> None:
    assert _holds("joined_segment", {"segment": "s"}, {"existing": True})
    assert not _holds(
        "joined_segment", {"segment": "s", "existing_members": False}, {"existing": True}
    )
    assert _holds("joined_segment", {"segment": "s", "existing_members": False}, {})
    assert not _holds("joined_segment", {"segment": "s", "new_members": False}, {})


def test_specific_link_clicked() -> None:
    params = {"email": "news", "url": "https://x.example/a"}
    assert _holds("email_link_clicked", params, {"email_id": "news", "url": "https://x.example/a"})
    assert not _holds(
        "email_link_clicked", params, {"email_id": "news", "url": "https://x.example/b"}
    )


@pytest.mark.parametrize(
    ("name", "params", "errors"),
    [
        ("tag_added", {"tag": "VIP"}, {}),
        ("birthday", {}, {}),
        ("birthday", {"offset_days": -400}, {"offset_days": ["must be at least -366"]}),
        ("birthday", {"offset_days": 1.5}, {"offset_days": ["must be a whole number"]}),
        ("recurring_date", {}, {"field": ["required"]}),
        (
            "email_not_opened",
            {"email": "w", "within": "three days"},
            {"within": ["'three days' is not an ISO 8601 duration such as P3D, PT2H or -P1W"]},
        ),
        (
            "abandoned_cart_products",
            {"include_products": []},
            {"include_products": ["must be a non-empty list of texts"]},
        ),
        (
            "abandoned_cart_products",
            {},
            {"include_products": ["give include_products or exclude_products"]},
        ),
        (
            "record_created",
            {"table": "lead", "value": 1},
            {"field": ["a value needs the field it is compared with"]},
        ),
        (
            "joined_segment",
            {"segment": "s", "existing_members": False, "new_members": False},
            {"new_members": ["current members, new members, or both must enter"]},
        ),
        (
            "field_changed",
            {"field": "status", "value": ["a"]},
            {"value": ["must be a text, a number or true/false"]},
        ),
    ],
)
def test_param_validation(name: str, params: dict[str, Any], errors: dict[str, list[str]]) -> None:
    assert CATALOG[name].param_errors(params) == errors
