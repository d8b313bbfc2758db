"""Wrong journeys: each must fail with a DefinitionError naming the exact path and reason."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from marshmallow import Schema, fields

from crm_journeys.definition.checks import validate_document
from crm_journeys.errors import DefinitionError

BASE: dict[str, Any] = {
    "format_version": 1,
    "name": "Test journey",
    "starting_points": [{"id": "sp", "type": "tag_added", "params": {"tag": "VIP"}}],
    "first_step": "a",
    "steps": [
        {"id": "a", "type": "action", "action": "add_tag", "params": {"tag": "x"}, "next": "w"},
        {"id": "w", "type": "wait", "duration": "P1D", "next": "c"},
        {
            "id": "c",
            "type": "condition_split",
            "condition": {
                "all": [
                    {"op": "has_tag", "value": "x"},
                    {"op": "eq", "field": "lang", "value": "de"},
                ]
            },
            "branches": {"yes": "r", "no": None},
        },
        {
            "id": "r",
            "type": "random_split",
            "paths": [
                {"name": "A", "percent": 50, "next": "e"},
                {"name": "B", "percent": 50, "next": None},
            ],
        },
        {"id": "e", "type": "exit"},
    ],
}

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """Set ``a.b[0].c`` style paths in the document."""

    def apply(doc: dict[str, Any]) -> None:
        target: Any = doc
        parts = path.replace("[", ".").replace("]", "").split(".")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        last = parts[-1]
        if value is _DELETE:
            del target[int(last) if last.isdigit() else last]
        elif last.isdigit() and int(last) == len(target):
            target.append(value)
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return apply


_DELETE = object()


def _all(*mutations: Mutation) -> Mutation:
    def apply(doc: dict[str, Any]) -> None:
        for mutate in mutations:
            mutate(doc)

    return apply


def _leaf(cond: dict[str, Any]) -> Mutation:
    return _set("steps.2.condition.all.1", cond)


def _starts(*points: dict[str, Any]) -> Mutation:
    return _set("starting_points", list(points))


SP_DATE = {"id": "d", "type": "specific_date", "params": {"date": "2026-12-24"}}
SP_BDAY = {"id": "b", "type": "birthday", "params": {}}
SP_CART = {"id": "cart", "type": "abandoned_cart", "params": {}}
SP_TAG = {"id": "sp", "type": "tag_added", "params": {"tag": "VIP"}}

CASES: list[tuple[str, Mutation, str, str]] = [
    ("format version", _set("format_version", 2), "format_version", "unsupported format_version 2"),
    ("name missing", _set("name", _DELETE), "name", "Missing data for required field"),
    ("unknown top key", _set("nmae", "x"), "nmae", "Unknown field"),
    (
        "unknown step type",
        _set("steps.0.type", "sned_email"),
        "steps[0].type",
        "unknown step type 'sned_email'",
    ),
    ("unknown step key", _set("steps.1.until", "P1D"), "steps[1].until", "Unknown field"),
    ("bad id", _set("steps.0.id", "a b"), "steps[0].id", "an id uses letters"),
    (
        "branch missing",
        _set("steps.2.branches", {"yes": "r"}),
        "steps[2].branches.no",
        "Missing data",
    ),
    (
        "dangling branch",
        _set("steps.2.branches.yes", "nowhere"),
        "steps[2].branches.yes",
        "no step with id 'nowhere'",
    ),
    ("dangling next", _set("steps.0.next", "ww"), "steps[0].next", "no step with id 'ww'"),
    (
        "unknown operator",
        _leaf({"op": "equals", "field": "lang", "value": "de"}),
        "steps[2].condition.all[1].op",
        "unknown operator 'equals'",
    ),
    (
        "field op without field",
        _leaf({"op": "eq", "value": "de"}),
        "steps[2].condition.all[1].field",
        "needs a field",
    ),
    (
        "set op without value",
        _set("steps.2.condition.all.0", {"op": "has_tag"}),
        "steps[2].condition.all[0].value",
        "needs a value",
    ),
    (
        "set op with field",
        _set("steps.2.condition.all.0", {"op": "has_tag", "field": "tags", "value": "x"}),
        "steps[2].condition.all[0].field",
        "not used by operator has_tag",
    ),
    (
        "in needs a list",
        _leaf({"op": "in", "field": "lang", "value": "de"}),
        "steps[2].condition.all[1].value",
        "non-empty list",
    ),
    (
        "gt needs number or date",
        _leaf({"op": "gt", "field": "score", "value": "high"}),
        "steps[2].condition.all[1].value",
        "number or an ISO date",
    ),
    (
        "within needs days",
        _leaf({"op": "within_last_days", "field": "joined"}),
        "steps[2].condition.all[1].days",
        "needs days",
    ),
    (
        "is_set takes no value",
        _leaf({"op": "is_set", "field": "email", "value": 1}),
        "steps[2].condition.all[1].value",
        "not used by operator is_set",
    ),
    (
        "empty all",
        _set("steps.2.condition", {"all": []}),
        "steps[2].condition.all",
        "non-empty list",
    ),
    (
        "mixed group and leaf",
        _set("steps.2.condition", {"any": [{"op": "is_set", "field": "x"}], "op": "eq"}),
        "steps[2].condition.op",
        "cannot be combined with 'any'",
    ),
    (
        "condition not an object",
        _set("steps.2.condition", "lang == 'de'"),
        "steps[2].condition",
        "a condition is an object",
    ),
    (
        "bad duration",
        _set("steps.1.duration", "3 days"),
        "steps[1].duration",
        "not an ISO 8601 duration",
    ),
    ("month duration", _set("steps.1.duration", "P1M"), "steps[1].duration", "years and months"),
    ("zero wait", _set("steps.1.duration", "PT0S"), "steps[1].duration", "longer than zero"),
    (
        "wait_until without moment",
        _set("steps.1", {"id": "w", "type": "wait_until", "next": "c"}),
        "steps[1]",
        "needs a date, a field, a time or weekdays",
    ),
    (
        "wait_until bad time",
        _set("steps.1", {"id": "w", "type": "wait_until", "time": "9am", "next": "c"}),
        "steps[1].time",
        "HH:MM",
    ),
    (
        "strict bool",
        _set("steps.0.run_multiple_times", "yes"),
        "steps[0].run_multiple_times",
        "true or false",
    ),
    ("duplicate step id", _set("steps.4.id", "a"), "steps[4].id", "duplicate id 'a'"),
    ("first step dangling", _set("first_step", "start"), "first_step", "no step with id 'start'"),
    (
        "unreachable step",
        _set("steps.5", {"id": "z", "type": "exit"}),
        "steps[5]",
        "cannot be reached",
    ),
    (
        "loop without wait",
        _all(_set("steps.0.next", "c"), _set("steps.2.branches.no", "a")),
        "steps[0]",
        "form a loop with no wait step and no jump limit",
    ),
    ("percent sum", _set("steps.3.paths.1.percent", 40), "steps[3].paths", "add up to 90, not 100"),
    (
        "percent missing",
        _set("steps.3.paths.1.percent", _DELETE),
        "steps[3].paths[1].percent",
        "Missing data",
    ),
    (
        "duplicate path name",
        _set("steps.3.paths.1.name", "A"),
        "steps[3].paths[1].name",
        "duplicate name 'A'",
    ),
    (
        "jump to nowhere",
        _all(_set("steps.4", {"id": "e", "type": "jump", "to": "zz", "max_times": 2})),
        "steps[4].to",
        "no step with id 'zz'",
    ),
    (
        "react unknown event",
        _set(
            "steps.1",
            {
                "id": "w",
                "type": "react_to_event",
                "event": {"type": "opened"},
                "timeout": "P1D",
                "branches": {"yes": "c", "no": None},
            },
        ),
        "steps[1].event.type",
        "unknown event type 'opened'",
    ),
    ("no starting point", _starts(), "starting_points", "at least one starting point"),
    (
        "unknown starting point",
        _set("starting_points.0.type", "tag_addded"),
        "starting_points[0].type",
        "unknown starting point type 'tag_addded'",
    ),
    (
        "starting point param missing",
        _set("starting_points.0.params", {}),
        "starting_points[0].params.tag",
        "required",
    ),
    (
        "starting point param unknown",
        _set("starting_points.0.params.colour", "red"),
        "starting_points[0].params.colour",
        "unknown parameter",
    ),
    (
        "starting point param type",
        _set("starting_points.0.params.tag", 7),
        "starting_points[0].params.tag",
        "non-empty text",
    ),
    (
        "starting point choice",
        _starts({"id": "s", "type": "business_trigger", "params": {"trigger": "lead_lost"}}),
        "starting_points[0].params.trigger",
        "must be one of",
    ),
    (
        "specific date: date or field",
        _starts({"id": "d", "type": "specific_date", "params": {}}),
        "starting_points[0].params.date",
        "give exactly one of date, field",
    ),
    (
        "exclusive cart",
        _starts(SP_CART, SP_TAG),
        "starting_points[0].type",
        "cannot share a journey",
    ),
    (
        "specific date with birthday",
        _all(_starts(SP_DATE, SP_BDAY), _set("steps.1", {"id": "w", "type": "exit"})),
        "starting_points[0].type",
        "cannot be combined with birthday",
    ),
    ("specific date with wait", _starts(SP_DATE), "steps[1].type", "cannot contain wait steps"),
    (
        "interaction trigger",
        _starts({"id": "i", "type": "email_delivered", "params": {"email": "w"}}),
        "starting_points[0].type",
        "interaction_triggers_start is true",
    ),
    (
        "entry filter",
        _set(
            "entry_filter", {"all": [{"op": "is_set", "field": "a"}, {"op": "like", "field": "b"}]}
        ),
        "entry_filter.all[1].op",
        "unknown operator 'like'",
    ),
    (
        "cooldown missing",
        _set("entry", {"policy": "cooldown"}),
        "entry.cooldown",
        "policy cooldown needs cooldown",
    ),
    (
        "max_entries without policy",
        _set("entry", {"max_entries": 3}),
        "entry.max_entries",
        "only used with policy max_times",
    ),
    (
        "time zone",
        _set("settings", {"time_zone": "Europe/Atlantis"}),
        "settings.time_zone",
        "unknown time zone",
    ),
    (
        "goal without test",
        _set("goals", [{"id": "g"}]),
        "goals[0]",
        "needs a condition, an event, or both",
    ),
    (
        "goal then dangling",
        _set("goals", [{"id": "g", "event": {"type": "purchase"}, "then": "zz"}]),
        "goals[0].then",
        "no step with id 'zz'",
    ),
    (
        "multi split case names",
        _set(
            "steps.2",
            {
                "id": "c",
                "type": "multi_split",
                "default": None,
                "cases": [
                    {"name": "de", "condition": {"op": "is_set", "field": "x"}, "next": "r"},
                    {"name": "de", "condition": {"op": "is_set", "field": "y"}, "next": None},
                ],
            },
        ),
        "steps[2].cases[1].name",
        "duplicate name 'de'",
    ),
]


def _broken(mutate: Mutation) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    mutate(doc)
    return doc


def test_base_journey_is_valid() -> None:
    validate_document(BASE)


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_wrong_journey_reports_path_and_reason(mutate: Mutation, path: str, fragment: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_document(_broken(mutate))
    errors = caught.value.errors
    assert path in errors, f"expected {path!r}, got {errors}"
    assert any(fragment in message for message in errors[path]), errors[path]


def test_all_errors_are_reported_at_once() -> None:
    doc = _broken(
        _all(_set("name", ""), _set("steps.1.duration", "soon"), _set("steps.0.type", "nope"))
    )
    with pytest.raises(DefinitionError) as caught:
        validate_document(doc)
    assert {"name", "steps[1].duration", "steps[0].type"} <= set(caught.value.errors)
    assert "(and 2 more)" in str(caught.value)


@pytest.mark.parametrize("doc", [None, [], "journey", 3])
def test_a_document_that_is_not_an_object(doc: Any) -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_document(doc)
    assert caught.value.errors == {"": ["a journey document must be a JSON object"]}


def test_a_jump_bounds_a_loop() -> None:
    """a -> c -> (no) j -> back to a: no wait, but the jump counts the rounds."""
    doc = _broken(
        _all(
            _set("steps.0.next", "c"),
            _set("steps.2.branches.no", "j"),
            _set("steps.1", {"id": "j", "type": "jump", "to": "a", "max_times": 3, "next": None}),
        )
    )
    validate_document(doc)


# --- actions --------------------------------------------------------------------------


class TagParams(Schema):
    tag = fields.String(required=True)


class TagAction:
    params_schema = TagParams


def test_unknown_action_lists_the_installed_ones() -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_document(
            _broken(_set("steps.0.action", "add_tagg")), actions={"add_tag": TagAction()}
        )
    assert caught.value.errors["steps[0].action"] == [
        "unknown action 'add_tagg'; installed: add_tag"
    ]


def test_action_params_are_checked_by_the_action_schema() -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_document(
            _broken(_set("steps.0.params", {"tags": "x"})), actions={"add_tag": TagAction()}
        )
    errors = caught.value.errors
    assert errors["steps[0].params.tag"] == ["Missing data for required field."]
    assert errors["steps[0].params.tags"] == ["Unknown field."]


def test_actions_none_skips_action_checks() -> None:
    validate_document(_broken(_set("steps.0.action", "anything")), actions=None)
