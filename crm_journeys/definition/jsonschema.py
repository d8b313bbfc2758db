"""Generates the published JSON Schema (draft 2020-12) of the journey document.

Editors and other tools validate journeys with ``journey.schema.json``; it is derived
from the same constants as ``schema.py`` and the trigger catalogue, and a test keeps the
checked-in file current (``python -m crm_journeys.definition.jsonschema`` rewrites it).
The marshmallow loader plus ``checks`` stay the authority: this schema cannot express
cross-references, reachability or loops.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from crm_journeys.definition import model as m
from crm_journeys.definition import schema as s
from crm_journeys.definition.durations import DURATION_RE
from crm_journeys.definition.triggers import CATALOG, Param, TriggerType

SCHEMA_PATH = Path(__file__).with_name("journey.schema.json")
SCHEMA_ID = "https://crm-journeys.example/schemas/journey-1.schema.json"

DURATION = {
    "type": "string",
    "pattern": re.sub(r"\(\?P<\w+>", "(", DURATION_RE.pattern),
    "description": "ISO 8601 duration in weeks, days, hours, minutes, seconds: P3D, PT2H, P1W, -P3D",
}
ID = {"type": "string", "pattern": s.ID_RE.pattern}
TARGET = {
    "type": ["string", "null"],
    "pattern": s.ID_RE.pattern,
    "description": "a step id; null ends the journey here",
}
FIELD = {"type": "string", "pattern": s.FIELD_RE.pattern}
COND = {"$ref": "#/$defs/condition"}
EVENT = {"$ref": "#/$defs/event_match"}
SCALAR = {"type": ["string", "number", "boolean"]}


def _object(
    properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    """A closed object, as marshmallow's ``unknown = RAISE`` makes every object."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
        **extra,
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


# --- conditions -------------------------------------------------------------------------


def _leaf() -> dict[str, Any]:
    def when(ops: tuple[str, ...], then: dict[str, Any]) -> dict[str, Any]:
        return {"if": {"properties": {"op": {"enum": list(ops)}}}, "then": then}

    order_value = {
        "anyOf": [
            {"type": "number"},
            {"type": "string", "format": "date"},
            {"type": "string", "format": "date-time"},
        ]
    }
    return _object(
        {
            "op": {"enum": list(m.OPERATORS)},
            "field": FIELD,
            "value": {},
            "days": {"type": "integer", "minimum": 0},
        },
        ("op",),
        allOf=[
            when(m.FIELD_OPS, {"required": ["field"]}),
            when(
                m.SET_OPS + m.ACTIVITY_OPS,
                {
                    "required": ["value"],
                    "not": {"required": ["field"]},
                    "properties": {"value": {"type": "string", "minLength": 1}},
                },
            ),
            when(
                ("in", "not_in"),
                {
                    "required": ["value"],
                    "properties": {"value": {"type": "array", "minItems": 1, "items": SCALAR}},
                },
            ),
            when(s.ORDER_OPS, {"required": ["value"], "properties": {"value": order_value}}),
            when(
                ("date_before", "date_after"),
                {"required": ["value"], "properties": {"value": {"type": "string"}}},
            ),
            when(
                ("eq", "neq") + s.TEXT_OPS, {"required": ["value"], "properties": {"value": SCALAR}}
            ),
            when(("within_last_days", "within_next_days"), {"required": ["days"]}),
            when(s.NO_VALUE_OPS, {"not": {"required": ["value"]}}),
        ],
    )


def _condition() -> dict[str, Any]:
    items = {"type": "array", "minItems": 1, "items": COND}
    return {
        "oneOf": [
            _object({"all": items}, ("all",)),
            _object({"any": items}, ("any",)),
            _object({"not": COND}, ("not",)),
            {"$ref": "#/$defs/leaf"},
        ]
    }


# --- steps ------------------------------------------------------------------------------


def _step(kind: str, properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    base = {"id": ID, "type": {"const": kind}, "label": {"type": "string"}}
    return _object(base | properties, ("id", "type") + required)


def _steps() -> list[dict[str, Any]]:
    branches = _object({"yes": TARGET, "no": TARGET}, ("yes", "no"))
    split = {"branches": branches}
    case = _object(
        {
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "not": {"const": "default"},
            },
            "condition": COND,
            "next": TARGET,
        },
        ("name", "condition", "next"),
    )
    path = _object(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 64},
            "percent": {"type": "integer", "minimum": 0, "maximum": 100},
            "next": TARGET,
        },
        ("name", "percent", "next"),
    )
    return [
        _step(
            "action",
            {
                "action": {"type": "string", "minLength": 1},
                "params": {"type": "object"},
                "next": TARGET,
                "run_multiple_times": {"type": "boolean"},
            },
            ("action",),
        ),
        _step("wait", {"duration": DURATION, "next": TARGET}, ("duration",)),
        _step(
            "wait_until",
            {
                "date": {"type": "string", "format": "date"},
                "field": FIELD,
                "offset": DURATION,
                "time": {"type": "string", "pattern": s.TIME_RE.pattern},
                "weekdays": {
                    "type": "array",
                    "uniqueItems": True,
                    "items": {"enum": list(s.WEEKDAYS)},
                },
                "next": TARGET,
            },
        ),
        _step(
            "wait_and_check",
            {"duration": DURATION, "condition": COND, **split},
            ("duration", "condition", "branches"),
        ),
        _step(
            "react_to_event",
            {"event": EVENT, "timeout": DURATION, **split},
            ("event", "timeout", "branches"),
        ),
        _step(
            "if_then", {"condition": COND, "timeout": DURATION, **split}, ("condition", "branches")
        ),
        _step("condition_split", {"condition": COND, **split}, ("condition", "branches")),
        _step(
            "multi_split",
            {"cases": {"type": "array", "minItems": 1, "items": case}, "default": TARGET},
            ("cases",),
        ),
        _step(
            "random_split", {"paths": {"type": "array", "minItems": 2, "items": path}}, ("paths",)
        ),
        _step(
            "jump",
            {
                "to": ID,
                "max_times": {"type": "integer", "minimum": 1, "maximum": 1000},
                "next": TARGET,
            },
            ("to",),
        ),
        _step("exit", {}),
    ]


# --- starting points --------------------------------------------------------------------

_PARAM_TYPES: dict[str, dict[str, Any]] = {
    "text": {"type": "string", "minLength": 1},
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "duration": DURATION,
    "date": {"type": "string", "format": "date"},
    "time": {"type": "string", "pattern": s.TIME_RE.pattern},
    "bool": {"type": "boolean"},
    "list": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
    "value": SCALAR,
}


def _param(p: Param) -> dict[str, Any]:
    out = dict(_PARAM_TYPES.get(p.type, {}))
    if p.type == "choice":
        out = {"enum": list(p.choices)}
    if p.minimum is not None:
        out["minimum"] = p.minimum
    if p.maximum is not None:
        out["maximum"] = p.maximum
    if p.label:
        out["title"] = p.label
    return out


def _trigger_params(tt: TriggerType) -> dict[str, Any]:
    params = _object(
        {p.name: _param(p) for p in tt.params}, tuple(p.name for p in tt.params if p.required)
    )
    then: dict[str, Any] = {"properties": {"params": params}}
    if params["required"]:
        then["required"] = ["params"]
    return {"if": {"properties": {"type": {"const": tt.name}}, "required": ["type"]}, "then": then}


def _starting_point() -> dict[str, Any]:
    return _object(
        {
            "id": ID,
            "type": {"enum": list(CATALOG)},
            "params": {"type": "object"},
            "filter": _nullable(COND),
            "next": TARGET,
        },
        ("id", "type"),
        allOf=[_trigger_params(tt) for tt in CATALOG.values()],
    )


# --- document ---------------------------------------------------------------------------


def journey_json_schema() -> dict[str, Any]:
    """The JSON Schema of a format_version 1 journey document."""
    goal_or_exit = {
        "anyOf": [
            {"required": ["condition"], "properties": {"condition": COND}},
            {"required": ["event"], "properties": {"event": EVENT}},
        ]
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "crm_journeys journey document, format_version 1",
        **_object(
            {
                "format_version": {"const": m.FORMAT_VERSION},
                "name": {"type": "string", "minLength": 1, "maxLength": 200},
                "description": {"type": "string"},
                "settings": _object(
                    {
                        "interaction_triggers_start": {"type": "boolean"},
                        "time_zone": {
                            "type": "string",
                            "description": "IANA name, e.g. Europe/Rome",
                        },
                        "priority": {"type": "integer", "minimum": 0, "maximum": 100},
                        "email_tracking": {"type": "boolean"},
                    }
                ),
                "entry": _object(
                    {
                        "policy": {"enum": list(s.ENTRY_POLICIES)},
                        "cooldown": DURATION,
                        "max_entries": {"type": "integer", "minimum": 1},
                    }
                ),
                "starting_points": {"type": "array", "items": {"$ref": "#/$defs/starting_point"}},
                "entry_filter": _nullable(COND),
                "first_step": TARGET,
                "steps": {"type": "array", "items": {"oneOf": _steps()}},
                "goals": {
                    "type": "array",
                    "items": _object(
                        {
                            "id": ID,
                            "label": {"type": "string"},
                            "condition": _nullable(COND),
                            "event": _nullable(EVENT),
                            "then": TARGET,
                        },
                        ("id",),
                        **goal_or_exit,
                    ),
                },
                "exit_rules": {
                    "type": "array",
                    "items": _object(
                        {"id": ID, "condition": _nullable(COND), "event": _nullable(EVENT)},
                        ("id",),
                        **goal_or_exit,
                    ),
                },
            },
            ("format_version", "name", "starting_points", "first_step", "steps"),
        ),
        "$defs": {
            "condition": _condition(),
            "leaf": _leaf(),
            "event_match": _object(
                {
                    "type": {"type": "string", "minLength": 1},
                    "key": {"type": ["string", "null"]},
                    "where": _nullable(COND),
                },
                ("type",),
            ),
            "starting_point": _starting_point(),
        },
    }


def render() -> str:
    """The schema as the exact text of the checked-in file."""
    return json.dumps(journey_json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    path.write_text(render(), encoding="utf-8")
    return path


if __name__ == "__main__":
    sys.stdout.write(f"wrote {write_schema()}\n")
