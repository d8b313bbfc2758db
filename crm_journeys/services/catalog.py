"""What the builder can offer, as data: starting-point types, step forms, actions with their
parameter forms, operators per field type. ``GET /api/catalog`` serves it and the UI
renders its forms from the same structures, so they cannot disagree.
"""

from __future__ import annotations

from typing import Any

from crm_journeys.actions.registry import installed_actions
from crm_journeys.definition.triggers import CANONICAL_EVENTS, catalog_as_json

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ENTRY_POLICIES = ("once", "every_time", "after_exit", "cooldown", "max_times")

OPERATORS: dict[str, list[dict[str, str]]] = {
    "text": [{"op": o, "label": label} for o, label in (
        ("eq", "is"), ("neq", "is not"), ("contains", "contains"), ("not_contains", "does not contain"),
        ("starts_with", "starts with"), ("in", "is one of"), ("not_in", "is none of"),
        ("is_set", "is set"), ("is_blank", "is blank"))],
    "number": [{"op": o, "label": label} for o, label in (
        ("eq", "equals"), ("neq", "does not equal"), ("gt", "is more than"), ("gte", "is at least"),
        ("lt", "is less than"), ("lte", "is at most"), ("in", "is one of"), ("is_set", "is set"),
        ("is_blank", "is blank"))],
    "date": [{"op": o, "label": label} for o, label in (
        ("date_before", "is before"), ("date_after", "is after"), ("within_last_days", "is within the last N days"),
        ("within_next_days", "is within the next N days"), ("is_set", "is set"), ("is_blank", "is blank"))],
    "bool": [{"op": o, "label": label} for o, label in (("is_true", "is true"), ("is_false", "is false"),
                                                       ("is_set", "is set"))],
    "tags": [{"op": "has_tag", "label": "has tag"}, {"op": "not_has_tag", "label": "does not have tag"}],
    "groups": [{"op": "in_group", "label": "is in group"}, {"op": "not_in_group", "label": "is not in group"}],
    "segments": [{"op": "in_segment", "label": "is in segment"}, {"op": "not_in_segment", "label": "is not in segment"}],
    "email_activity": [{"op": o, "label": label} for o, label in (
        ("email_sent", "was sent email"), ("email_opened", "opened email"), ("email_clicked", "clicked in email"))],
}
NO_VALUE = ("is_set", "is_blank", "is_true", "is_false")
NO_FIELD = ("has_tag", "not_has_tag", "in_group", "not_in_group", "in_segment", "not_in_segment",
            "email_sent", "email_opened", "email_clicked")


def _f(name: str, type_: str, label: str, required: bool = True, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "label": label, "required": required, **extra}


_NEXT = _f("next", "step", "Then go to", required=False)
_YES_NO = [_f("branches.yes", "step", "If yes, go to", required=False),
           _f("branches.no", "step", "Otherwise, go to", required=False)]

STEP_FORMS: dict[str, dict[str, Any]] = {
    "action": {"label": "Do something (action)", "fields": [
        _f("action", "action", "Action"), _f("params", "action_params", "Details"),
        _f("run_multiple_times", "bool", "Run again when the contact comes back", required=False), _NEXT]},
    "wait": {"label": "Wait", "fields": [_f("duration", "duration", "Wait for", help="e.g. P3D, PT2H"), _NEXT]},
    "wait_until": {"label": "Wait until a date or time", "fields": [
        _f("date", "date", "Fixed date", required=False), _f("field", "text", "Or a contact date field", False, picker="fields"),
        _f("offset", "duration", "Offset from that date", required=False),
        _f("time", "time", "At time of day", required=False),
        _f("weekdays", "list", "On weekdays", required=False, choices=list(WEEKDAYS)), _NEXT]},
    "wait_and_check": {"label": "Wait, then check", "fields": [
        _f("duration", "duration", "Check after"), _f("condition", "condition", "Condition"), *_YES_NO]},
    "react_to_event": {"label": "React to an event", "fields": [
        _f("event.type", "event_type", "Event"), _f("event.key", "text", "Only for (e.g. email id)", required=False),
        _f("event.where", "condition", "And the event matches", required=False),
        _f("timeout", "duration", "Wait at most"), *_YES_NO]},
    "if_then": {"label": "Hold until a condition (if/then)", "fields": [
        _f("condition", "condition", "Condition"), _f("timeout", "duration", "Give up after", required=False),
        *_YES_NO]},
    "condition_split": {"label": "Split by condition", "fields": [_f("condition", "condition", "Condition"), *_YES_NO]},
    "multi_split": {"label": "Split into several paths", "fields": [
        _f("cases", "cases", "Cases (first match wins)"), _f("default", "step", "Otherwise, go to", required=False)]},
    "random_split": {"label": "Random split (A/B)", "fields": [_f("paths", "paths", "Paths (percentages add up to 100)")]},
    "jump": {"label": "Go back to a step", "fields": [
        _f("to", "step", "Go back to"), _f("max_times", "integer", "At most this many times"), _NEXT]},
    "exit": {"label": "End the journey", "fields": []},
}


def actions_json() -> list[dict[str, Any]]:
    return [cls.describe() for cls in installed_actions().values()]


def catalog() -> dict[str, Any]:
    """The whole catalogue, as served by ``GET /api/catalog``."""
    starting = catalog_as_json()
    return {
        "starting_points": starting["groups"],
        "events": starting["events"],
        "steps": [{"type": t, **form} for t, form in STEP_FORMS.items()],
        "actions": actions_json(),
        "operators": OPERATORS,
        "entry_policies": list(ENTRY_POLICIES),
    }


def event_types() -> list[str]:
    return sorted(CANONICAL_EVENTS)
