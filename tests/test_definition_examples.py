"""The worked journeys load and check; the published JSON Schema is current and agrees."""

from __future__ import annotations

import configparser
import json
from datetime import timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from crm_journeys.definition import model as m
from crm_journeys.definition.checks import validate_document
from crm_journeys.definition.durations import format_duration, parse_duration
from crm_journeys.definition.jsonschema import SCHEMA_PATH, journey_json_schema, render
from crm_journeys.definition.schema import dump_journey, load_journey
from crm_journeys.errors import DefinitionError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
WORKED = [
    "welcome_promo",
    "post_sale_followup",
    "contoso_lead_nurture",
    "multi_start_filtered",
    "birthday_greetings",
]


def _load(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "examples" / f"{name}.json").read_text(encoding="utf-8"))


def test_the_five_worked_journeys_exist() -> None:
    assert set(WORKED) <= {p.stem for p in EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_loads_checks_and_round_trips(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    journey = validate_document(doc)
    assert load_journey(dump_journey(journey)) == journey


def _installed_actions() -> dict[str, Any]:
    """The built-in actions named in setup.cfg, imported directly (no install needed)."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    found = {}
    for line in parser["options.entry_points"]["crm_journeys.actions"].strip().splitlines():
        name, target = (part.strip() for part in line.split("="))
        module, cls = target.split(":")
        found[name] = getattr(import_module(module), cls)
    return found


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_actions_match_the_installed_actions(path: Path) -> None:
    try:
        actions = _installed_actions()
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"built-in actions not importable yet: {exc}")
    validate_document(json.loads(path.read_text(encoding="utf-8")), actions=actions)


def test_post_sale_follow_up_has_ten_elements_all_repeatable() -> None:
    journey = load_journey(_load("post_sale_followup"))
    assert len(journey.starting_points) + len(journey.steps) == 10
    assert all(s.run_multiple_times for s in journey.steps if isinstance(s, m.ActionStep))


def test_welcome_checks_the_open_after_three_days() -> None:
    step = load_journey(_load("welcome_promo")).step("opened_welcome")
    assert isinstance(step, m.WaitAndCheckStep) and step.duration == timedelta(days=3)


# --- JSON Schema --------------------------------------------------------------------------


def test_checked_in_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(), (
        "run: python -m crm_journeys.definition.jsonschema"
    )


def _validator() -> jsonschema.Draft202012Validator:
    schema = journey_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_satisfy_the_json_schema(path: Path) -> None:
    errors = list(_validator().iter_errors(json.loads(path.read_text(encoding="utf-8"))))
    assert errors == []


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("steps", 0, "type"), "sned"),
        (("steps", 1, "duration"), "3 days"),
        (("starting_points", 0, "params"), {"lst": "x"}),
        (("entry_filter",), {"op": "like", "field": "a"}),
        (("format_version",), 2),
    ],
)
def test_json_schema_rejects_what_the_loader_rejects(where: tuple[Any, ...], value: Any) -> None:
    doc = _load("welcome_promo")
    target: Any = doc
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    assert list(_validator().iter_errors(doc))
    with pytest.raises(DefinitionError):
        validate_document(doc)


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "delta", "canonical"),
    [
        ("P3D", timedelta(days=3), "P3D"),
        ("PT2H", timedelta(hours=2), "PT2H"),
        ("P1W", timedelta(days=7), "P7D"),
        ("-P3D", timedelta(days=-3), "-P3D"),
        ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30), "P1DT2H30M"),
        ("PT1.5S", timedelta(seconds=1.5), "PT1.5S"),
        ("PT0S", timedelta(0), "PT0S"),
    ],
)
def test_durations(text: str, delta: timedelta, canonical: str) -> None:
    assert parse_duration(text) == delta
    assert format_duration(delta) == canonical
    assert parse_duration(format_duration(delta)) == delta


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("P", "not an ISO 8601 duration"),
        ("PT", "not an ISO 8601 duration"),
        ("3D", "not an ISO 8601 duration"),
        ("P1DT", "not an ISO 8601 duration"),
        ("p3d", "not an ISO 8601 duration"),
        ("P3D\n", "not an ISO 8601 duration"),
        ("P1M", "years and months"),
        ("P1Y", "years and months"),
    ],
)
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


# --- docs/journey-format.md -----------------------------------------------------------------

DOC = ROOT / "docs" / "journey-format.md"


def test_the_format_guide_names_every_type_operator_and_step() -> None:
    from crm_journeys.definition.triggers import CANONICAL_EVENTS, CATALOG

    text = DOC.read_text(encoding="utf-8")
    names = [*CATALOG, *m.OPERATORS, *m.STEP_TYPES, *CANONICAL_EVENTS]
    assert [n for n in names if f"`{n}`" not in text and f"### {n}:" not in text] == []


def _json_blocks() -> list[Any]:
    text = DOC.read_text(encoding="utf-8")
    blocks = []
    for block in text.split("```json\n")[1:]:
        try:
            blocks.append(json.loads(block.split("```", 1)[0]))
        except json.JSONDecodeError:
            continue  # a fragment such as "settings": {...}
    return blocks


def test_the_format_guide_examples_are_valid() -> None:
    from crm_journeys.definition.schema import STEP_SCHEMAS, StartingPointSchema, parse_condition
    from crm_journeys.definition.triggers import CATALOG

    checked = 0
    for block in _json_blocks():
        if "format_version" in block:
            validate_document(block)
        elif block.get("type") in STEP_SCHEMAS and "id" in block:
            STEP_SCHEMAS[block["type"]]().load(block)
        elif "params" in block and "id" in block:
            point = StartingPointSchema().load(block)
            assert CATALOG[point.type].param_errors(point.params) == {}
        else:
            parse_condition(block)
        checked += 1
    assert checked >= 15
