"""The compiler's output and its guard against durable_rules' hard limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crm_journeys.definition.checks import validate_document
from crm_journeys.errors import EngineLimitError
from crm_journeys.rules.compiler import compile_journey
from crm_journeys.rules.engine import RulesEngine

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _chain(n: int) -> dict:
    steps = [{"id": f"s{i}", "type": "action", "action": "add_tag", "params": {"tag": f"t{i}"},
              "next": f"s{i + 1}" if i + 1 < n else None} for i in range(n)]
    return {"format_version": 1, "name": f"{n} steps",
            "starting_points": [{"id": "sp", "type": "form_submitted", "params": {"form": "f"}}],
            "first_step": "s0", "steps": steps}


def test_huge_journey_is_rejected_with_a_message_not_a_hang():
    journey = validate_document(_chain(600))
    with pytest.raises(EngineLimitError) as err:
        compile_journey(journey, "too_big")
    assert "inst.step" in str(err.value.errors) and "engine hangs past about 500" in str(err.value.errors)


def test_long_chain_within_limits_runs_in_one_evaluation():
    journey = validate_document(_chain(300))
    compiled = compile_journey(journey, "long_chain_300")
    msg = {"kind": "trigger", "type": "form_submitted", "key": "f", "now": 0.0, "event": {},
           "contact": {"f": {}, "d": {}, "n": {}, "tags": [""], "groups": [""], "segments": [""], "act": {}, "x": {}},
           "hist": {"entries": 0, "active": 0, "since_entry": 0}, "inst": {"step": "", "loops": {}}, "dice": {}}
    firings = RulesEngine().decide(compiled, msg)
    assert [f.intent["op"] for f in firings] == ["enter"] + ["action"] * 300


def test_compiled_form_is_stable_json():
    journey = validate_document(json.loads((EXAMPLES / "welcome_promo.json").read_text()))
    first = compile_journey(journey, "stable", "7").to_json()
    second = compile_journey(journey, "stable", "7").to_json()
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert first["entry_routes"] == [{"event": "subscribed", "key": "newsletter", "starting_point": "subscribed",
                                      "entry_key": ""}]
    assert set(first["listens"]) == {"purchase", "unsubscribed"}
    assert first["needs"]["activity"] == [["opened", "welcome"]]


def test_engine_error_inside_a_rule_is_reported(monkeypatch):
    """durable_rules swallows exceptions in consequents into state["exception"]; the
    adapter must surface them, or a failed decision would look like "nothing matched"."""
    from crm_journeys.rules import engine as engine_module

    def broken(*_args):  # type: ignore[no-untyped-def]
        raise ValueError("boom")

    monkeypatch.setattr(engine_module, "_arrival", broken)
    journey = validate_document(_chain(2))
    compiled = compile_journey(journey, "broken_consequent")
    with pytest.raises(engine_module.RuleEngineError, match="boom"):
        RulesEngine().decide(compiled, {"kind": "trigger", "type": "form_submitted", "key": "f",
                                        "hist": {"entries": 0, "active": 0}, "inst": {"step": ""}})


def test_sessions_never_outlive_a_decision():
    """durable_rules allows 1,024 live sessions per ruleset; 3,000 decisions, half of them
    matching nothing, must not leave one behind (the next would raise MemoryError)."""
    journey = validate_document(_chain(1))
    compiled = compile_journey(journey, "session_hygiene")
    engine = RulesEngine()
    base = {"now": 0.0, "event": {}, "hist": {"entries": 0, "active": 0, "since_entry": 0},
            "inst": {"step": "", "loops": {}}, "dice": {},
            "contact": {"f": {}, "d": {}, "n": {}, "tags": [""], "groups": [""], "segments": [""], "act": {}, "x": {}}}
    fired = sum(bool(engine.decide(compiled, {**base, "kind": "trigger", "type": "form_submitted",
                                              "key": "f" if i % 2 else "other"}))
                for i in range(3000))
    assert fired == 1500
