"""The reference evaluator: truth tables, missing fields, dates, and exact negation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_journeys.definition.conditions import evaluate, negate, referenced_fields
from crm_journeys.definition.model import Group, Leaf
from crm_journeys.definition.schema import dump_condition, parse_condition

DAY = 86400
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z

FACTS: dict[str, Any] = {
    "fields": {
        "language": "de",
        "score": 12,
        "vip": True,
        "blank": "",
        "city": "Milano",
        "birthday": "1990-02-03",
        "renewal_date": "2026-01-04",
        "joined": "2025-12-30T10:00:00Z",
        "interests": ["Coffee", "tea"],
        "count": 1,
        "nothing": None,
    },
    "tags": ["Kunde", "Instagram Follower"],
    "groups": ["newsletter"],
    "segments": ["germans"],
    "activity": {"opened": {"welcome": NOW - 2 * DAY}, "sent": {"welcome": NOW - 3 * DAY}},
    "event": {"tag": "VIP", "products": ["p1", "p2"], "record": {"status": "won"}, "amount": 40},
    "now": NOW,
}

TABLE: list[tuple[dict[str, Any], bool]] = [
    ({"op": "eq", "field": "language", "value": "de"}, True),
    ({"op": "eq", "field": "language", "value": "DE"}, False),
    ({"op": "eq", "field": "missing", "value": "de"}, False),
    ({"op": "neq", "field": "missing", "value": "de"}, True),
    ({"op": "neq", "field": "language", "value": "it"}, True),
    ({"op": "eq", "field": "count", "value": True}, False),
    ({"op": "eq", "field": "vip", "value": 1}, False),
    ({"op": "contains", "field": "city", "value": "MIL"}, True),
    ({"op": "contains", "field": "interests", "value": "coffee"}, True),
    ({"op": "contains", "field": "interests", "value": "cof"}, False),
    ({"op": "not_contains", "field": "missing", "value": "x"}, True),
    ({"op": "starts_with", "field": "city", "value": "mi"}, True),
    ({"op": "starts_with", "field": "missing", "value": "mi"}, False),
    ({"op": "gt", "field": "score", "value": 10}, True),
    ({"op": "gte", "field": "score", "value": 12}, True),
    ({"op": "lt", "field": "score", "value": 12}, False),
    ({"op": "lte", "field": "missing", "value": 12}, False),
    ({"op": "gt", "field": "language", "value": 3}, False),
    ({"op": "gt", "field": "birthday", "value": "1989-12-31"}, True),
    ({"op": "in", "field": "language", "value": ["it", "de"]}, True),
    ({"op": "in", "field": "missing", "value": ["it", "de"]}, False),
    ({"op": "not_in", "field": "missing", "value": ["it"]}, True),
    ({"op": "is_set", "field": "language"}, True),
    ({"op": "is_set", "field": "blank"}, False),
    ({"op": "is_set", "field": "nothing"}, False),
    ({"op": "is_blank", "field": "missing"}, True),
    ({"op": "is_true", "field": "vip"}, True),
    ({"op": "is_false", "field": "vip"}, False),
    ({"op": "is_false", "field": "missing"}, False),
    ({"op": "is_true", "field": "count"}, False),
    ({"op": "date_before", "field": "birthday", "value": "2000-01-01"}, True),
    ({"op": "date_after", "field": "birthday", "value": "2000-01-01"}, False),
    ({"op": "date_after", "field": "missing", "value": "2000-01-01"}, False),
    ({"op": "date_before", "field": "city", "value": "2000-01-01"}, False),
    ({"op": "within_last_days", "field": "joined", "days": 3}, True),
    ({"op": "within_last_days", "field": "joined", "days": 1}, False),
    ({"op": "within_next_days", "field": "renewal_date", "days": 3}, True),
    ({"op": "within_next_days", "field": "renewal_date", "days": 2}, False),
    ({"op": "within_next_days", "field": "joined", "days": 30}, False),
    ({"op": "has_tag", "value": "Kunde"}, True),
    ({"op": "has_tag", "value": "kunde"}, False),
    ({"op": "not_has_tag", "value": "VIP"}, True),
    ({"op": "in_group", "value": "newsletter"}, True),
    ({"op": "not_in_segment", "value": "germans"}, False),
    ({"op": "email_opened", "value": "welcome"}, True),
    ({"op": "email_opened", "value": "welcome", "days": 1}, False),
    ({"op": "email_opened", "value": "welcome", "days": 2}, True),
    ({"op": "email_clicked", "value": "welcome"}, False),
    ({"op": "eq", "field": "event.tag", "value": "VIP"}, True),
    ({"op": "contains", "field": "event.products", "value": "P2"}, True),
    ({"op": "eq", "field": "event.record.status", "value": "won"}, True),
    ({"op": "eq", "field": "event.record.missing.deeper", "value": "won"}, False),
    ({"op": "gte", "field": "event.amount", "value": 40}, True),
    (
        {
            "all": [
                {"op": "has_tag", "value": "Kunde"},
                {"op": "has_tag", "value": "Instagram Follower"},
            ]
        },
        True,
    ),
    ({"all": [{"op": "has_tag", "value": "Kunde"}, {"op": "has_tag", "value": "VIP"}]}, False),
    (
        {
            "any": [
                {"op": "has_tag", "value": "VIP"},
                {"op": "eq", "field": "language", "value": "de"},
            ]
        },
        True,
    ),
    ({"not": {"op": "gt", "field": "missing", "value": 1}}, True),
    (
        {
            "not": {
                "any": [{"op": "has_tag", "value": "VIP"}, {"op": "is_blank", "field": "language"}]
            }
        },
        True,
    ),
]


@pytest.mark.parametrize(("doc", "expected"), TABLE, ids=[str(d) for d, _ in TABLE])
def test_truth_table(doc: dict[str, Any], expected: bool) -> None:
    cond = parse_condition(doc)
    assert evaluate(cond, FACTS) is expected
    assert evaluate(negate(cond), FACTS) is (not expected)


def test_empty_groups() -> None:
    assert evaluate(Group("all", ()), FACTS) is True
    assert evaluate(Group("any", ()), FACTS) is False


def test_empty_facts_only_negative_tests_hold() -> None:
    facts = {"now": NOW}
    assert evaluate(parse_condition({"op": "neq", "field": "a", "value": 1}), facts)
    assert evaluate(parse_condition({"op": "not_has_tag", "value": "x"}), facts)
    assert not evaluate(parse_condition({"op": "email_sent", "value": "x"}), facts)


def test_negate_flips_twins_and_wraps_the_rest() -> None:
    assert negate(Leaf("eq", "a", 1)) == Leaf("neq", "a", 1)
    assert negate(Leaf("is_blank", "a")) == Leaf("is_set", "a")
    assert negate(Leaf("gt", "a", 1)) == Group("not", (Leaf("gt", "a", 1),))
    assert negate(Group("not", (Leaf("gt", "a", 1),))) == Leaf("gt", "a", 1)
    assert negate(Group("all", (Leaf("has_tag", value="x"), Leaf("eq", "a", 1)))) == Group(
        "any", (Leaf("not_has_tag", value="x"), Leaf("neq", "a", 1))
    )


def test_referenced_fields() -> None:
    cond = parse_condition(
        {
            "all": [
                {"op": "eq", "field": "language", "value": "de"},
                {"not": {"op": "contains", "field": "event.url", "value": "x"}},
                {"op": "has_tag", "value": "Kunde"},
            ]
        }
    )
    assert referenced_fields(cond) == {"language", "event.url"}


# --- properties -------------------------------------------------------------------------

FIELD_NAMES = ["a", "b", "d", "event.x"]
SCALARS = st.one_of(
    st.sampled_from(["de", "it", "", "Mi", "2026-01-02", "2025-12-01T10:00:00Z"]),
    st.integers(-3, 3),
    st.booleans(),
)
FIELD_VALUES = st.one_of(
    st.none(), SCALARS, st.lists(st.sampled_from(["de", "it", "x"]), max_size=3)
)


def _leaf_docs() -> st.SearchStrategy[dict[str, Any]]:
    field = st.sampled_from(FIELD_NAMES)
    scalar = st.one_of(st.sampled_from(["de", "it", "Mi"]), st.integers(-3, 3), st.booleans())
    order_value = st.one_of(st.integers(-3, 3), st.sampled_from(["2026-01-01", "2025-06-30"]))
    name = st.sampled_from(["x", "y"])
    return st.one_of(
        st.builds(
            lambda op, f, v: {"op": op, "field": f, "value": v},
            st.sampled_from(["eq", "neq"]),
            field,
            scalar,
        ),
        st.builds(
            lambda op, f, v: {"op": op, "field": f, "value": v},
            st.sampled_from(["contains", "not_contains", "starts_with"]),
            field,
            st.sampled_from(["d", "M", "x"]),
        ),
        st.builds(
            lambda op, f, v: {"op": op, "field": f, "value": v},
            st.sampled_from(["gt", "gte", "lt", "lte"]),
            field,
            order_value,
        ),
        st.builds(
            lambda op, f, v: {"op": op, "field": f, "value": v},
            st.sampled_from(["in", "not_in"]),
            field,
            st.lists(scalar, min_size=1, max_size=3),
        ),
        st.builds(
            lambda op, f: {"op": op, "field": f},
            st.sampled_from(["is_set", "is_blank", "is_true", "is_false"]),
            field,
        ),
        st.builds(
            lambda op, f, v: {"op": op, "field": f, "value": v},
            st.sampled_from(["date_before", "date_after"]),
            field,
            st.sampled_from(["2026-01-01", "2025-12-01"]),
        ),
        st.builds(
            lambda op, f, d: {"op": op, "field": f, "days": d},
            st.sampled_from(["within_last_days", "within_next_days"]),
            field,
            st.integers(0, 40),
        ),
        st.builds(
            lambda op, v: {"op": op, "value": v},
            st.sampled_from(
                [
                    "has_tag",
                    "not_has_tag",
                    "in_group",
                    "not_in_group",
                    "in_segment",
                    "not_in_segment",
                ]
            ),
            name,
        ),
        st.builds(
            lambda op, v, d: {"op": op, "value": v, **({} if d is None else {"days": d})},
            st.sampled_from(["email_sent", "email_opened", "email_clicked"]),
            name,
            st.one_of(st.none(), st.integers(0, 10)),
        ),
    )


CONDITIONS = st.recursive(
    _leaf_docs(),
    lambda inner: st.one_of(
        st.builds(lambda items: {"all": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"any": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda item: {"not": item}, inner),
    ),
    max_leaves=6,
)


@st.composite
def facts(draw: st.DrawFn) -> dict[str, Any]:
    values = {name: draw(FIELD_VALUES) for name in FIELD_NAMES}
    present = {k: v for k, v in values.items() if draw(st.booleans())}
    names = st.lists(st.sampled_from(["x", "y"]), unique=True)
    stamps = st.dictionaries(st.sampled_from(["x", "y"]), st.integers(NOW - 20 * DAY, NOW))
    return {
        "fields": {k: v for k, v in present.items() if not k.startswith("event.")},
        "event": {k[6:]: v for k, v in present.items() if k.startswith("event.")},
        "tags": draw(names),
        "groups": draw(names),
        "segments": draw(names),
        "activity": {kind: draw(stamps) for kind in ("sent", "opened", "clicked")},
        "now": NOW,
    }


@settings(max_examples=400, deadline=None)
@given(CONDITIONS, facts())
def test_negation_is_exact(doc: dict[str, Any], f: dict[str, Any]) -> None:
    cond = parse_condition(doc)
    assert evaluate(negate(cond), f) is (not evaluate(cond, f))
    assert evaluate(negate(negate(cond)), f) is evaluate(cond, f)


@settings(max_examples=200, deadline=None)
@given(st.lists(CONDITIONS, min_size=1, max_size=3), facts())
def test_de_morgan(docs: list[dict[str, Any]], f: dict[str, Any]) -> None:
    items = tuple(parse_condition(d) for d in docs)
    all_of, any_of = Group("all", items), Group("any", items)
    assert evaluate(negate(all_of), f) is evaluate(Group("any", tuple(negate(c) for c in items)), f)
    assert evaluate(any_of, f) is (not evaluate(Group("all", tuple(negate(c) for c in items)), f))


@settings(max_examples=200, deadline=None)
@given(CONDITIONS)
def test_conditions_round_trip_through_json(doc: dict[str, Any]) -> None:
    cond = parse_condition(doc)
    assert parse_condition(dump_condition(cond)) == cond
