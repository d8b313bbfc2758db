"""The compiled durable_rules tests agree with the reference evaluator on every operator.

Each generated condition becomes a one-step journey (a condition split); the contact's
facts go through the runtime's own message builder and the real engine; the branch the
engine takes must be the one ``definition.conditions.evaluate`` predicts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_journeys.definition.conditions import evaluate
from crm_journeys.definition.model import (
    ConditionSplitStep,
    ExitStep,
    Group,
    Journey,
    Leaf,
    StartingPoint,
)
from crm_journeys.rules import engine as engine_module
from crm_journeys.rules.compiler import compile_journey
from crm_journeys.rules.engine import RulesEngine
from crm_journeys.runtime.facts import message
from crm_journeys.storage.models import Contact

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ENGINE = RulesEngine()
NAMES = itertools.count()

FIELDS = ("city", "age", "vip", "signed_up")
TEXTS = ("Rome", "rome", "Vilnius", "", "Roma Nord")
NUMBERS = (0, 17, 18, 42)
DATES = ("2026-05-30", "2026-05-01", "2026-06-05", "2025-12-31")

values = st.one_of(st.sampled_from(TEXTS), st.sampled_from(NUMBERS), st.booleans(), st.sampled_from(DATES))

leaf = st.one_of(
    st.builds(Leaf, op=st.sampled_from(["eq", "neq"]), field=st.sampled_from(FIELDS), value=values),
    st.builds(Leaf, op=st.sampled_from(["in", "not_in"]), field=st.sampled_from(FIELDS),
              value=st.lists(values, min_size=1, max_size=3)),
    st.builds(Leaf, op=st.sampled_from(["gt", "gte", "lt", "lte"]), field=st.sampled_from(FIELDS),
              value=st.one_of(st.sampled_from(NUMBERS), st.sampled_from(DATES))),
    st.builds(Leaf, op=st.sampled_from(["is_set", "is_blank", "is_true", "is_false"]),
              field=st.sampled_from(FIELDS)),
    st.builds(Leaf, op=st.sampled_from(["contains", "not_contains", "starts_with"]),
              field=st.sampled_from(FIELDS), value=st.sampled_from(["rom", "Vil", "x"])),
    st.builds(Leaf, op=st.sampled_from(["date_before", "date_after"]), field=st.sampled_from(FIELDS),
              value=st.sampled_from(DATES)),
    st.builds(Leaf, op=st.sampled_from(["within_last_days", "within_next_days"]),
              field=st.sampled_from(FIELDS), days=st.sampled_from([1, 7, 60])),
    st.builds(Leaf, op=st.sampled_from(["has_tag", "not_has_tag", "in_group", "not_in_group",
                                        "in_segment", "not_in_segment"]),
              value=st.sampled_from(["Kunde", "VIP"])),
    st.builds(Leaf, op=st.sampled_from(["email_sent", "email_opened", "email_clicked"]),
              value=st.sampled_from(["welcome", "promo"]), days=st.sampled_from([None, 3])),
)
conditions = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda items: Group("all", tuple(items)), st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: Group("any", tuple(items)), st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda item: Group("not", (item,)), inner),
    ),
    max_leaves=5,
)
contacts = st.fixed_dictionaries({
    "fields": st.dictionaries(st.sampled_from(FIELDS), values, max_size=4),
    "tags": st.lists(st.sampled_from(["Kunde", "VIP", "other"]), unique=True, max_size=2),
    "groups": st.lists(st.sampled_from(["Kunde", "VIP"]), unique=True, max_size=2),
    "segments": st.lists(st.sampled_from(["Kunde", "VIP"]), unique=True, max_size=2),
    "activity": st.dictionaries(st.sampled_from(["sent", "opened", "clicked"]),
                                st.dictionaries(st.sampled_from(["welcome", "promo"]),
                                                st.sampled_from([NOW.timestamp() - 86400,
                                                                 NOW.timestamp() - 10 * 86400]),
                                                max_size=2), max_size=2),
})


def engine_says(cond, facts) -> bool:  # type: ignore[no-untyped-def]
    journey = Journey(name="agreement", starting_points=(StartingPoint("sp", "signup"),),
                      steps=(ConditionSplitStep("split", condition=cond, yes="y", no="n"),
                             ExitStep("y"), ExitStep("n")), first_step="split")
    compiled = compile_journey(journey, f"agree_{next(NAMES)}")
    contact = Contact(id=1, tenant_id=1, external_id="c1", fields=facts["fields"], tags=facts["tags"],
                      groups=facts["groups"], segments=facts["segments"], activity=facts["activity"])
    msg = message("trigger", contact=contact, needs=compiled.needs, now=NOW, event_type="subscribed")
    msg["kind"], msg["inst"]["step"] = "arrive", "split"
    firings = ENGINE.decide(compiled, msg)
    branches = [f.intent.get("branch") for f in firings if f.intent.get("step") == "split"]
    assert len(branches) == 1, firings
    return branches[0] == "yes"


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cond=conditions, facts=contacts)
def test_compiled_rules_agree_with_reference_evaluator(cond, facts):
    oracle = evaluate(cond, {**facts, "event": {}, "now": NOW.timestamp()})
    assert engine_says(cond, facts) == oracle


def test_known_truth_table_kunde_and_instagram():
    cond = Group("all", (Leaf("has_tag", value="Kunde"), Leaf("has_tag", value="Instagram Follower")))
    base = {"fields": {}, "groups": [], "segments": [], "activity": {}}
    assert engine_says(cond, {**base, "tags": ["Kunde", "Instagram Follower"]}) is True
    assert engine_says(cond, {**base, "tags": ["Kunde"]}) is False
    assert engine_says(cond, {**base, "tags": []}) is False


# --- one session per ruleset: nothing carries over from one decision to the next ---------
SHARED = RulesEngine()


@pytest.fixture(scope="module")
def monkeypatch_session_uses() -> Iterator[None]:
    """Sessions replaced every 3 decisions, so the tests cross that boundary often
    (module-scoped: hypothesis runs the body many times per function-scoped fixture)."""
    saved = engine_module.SESSION_USES
    engine_module.SESSION_USES = 3
    yield
    engine_module.SESSION_USES = saved


def _split(cond, name: str):  # type: ignore[no-untyped-def]
    journey = Journey(name="shared", starting_points=(StartingPoint("sp", "signup"),),
                      steps=(ConditionSplitStep("split", condition=cond, yes="y", no="n"),
                             ExitStep("y"), ExitStep("n")), first_step="split")
    return compile_journey(journey, name)


def _ask(engine: RulesEngine, compiled, facts, step: str = "split") -> list:  # type: ignore[no-untyped-def]
    contact = Contact(id=1, tenant_id=1, external_id="c1", fields=facts["fields"], tags=facts["tags"],
                      groups=facts["groups"], segments=facts["segments"], activity=facts["activity"])
    msg = message("trigger", contact=contact, needs=compiled.needs, now=NOW, event_type="subscribed")
    msg["kind"], msg["inst"]["step"] = "arrive", step
    return [f.intent.get("branch") for f in engine.decide(compiled, msg) if f.intent.get("step") == "split"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cond=conditions, many=st.lists(contacts, min_size=2, max_size=12))
def test_decisions_in_one_session_agree_one_by_one(cond, many, monkeypatch_session_uses):
    """Many contacts decided in the ruleset's one session (replaced every 3 decisions here),
    with unmatched messages in between, each branch as the reference evaluator predicts."""
    compiled = _split(cond, f"shared_{next(NAMES)}")
    for facts in many:
        assert _ask(SHARED, compiled, facts, step="nowhere") == []
        oracle = evaluate(cond, {**facts, "event": {}, "now": NOW.timestamp()})
        assert _ask(SHARED, compiled, facts) == ["yes" if oracle else "no"]


def test_a_failed_decision_leaves_the_next_one_right(monkeypatch):  # type: ignore[no-untyped-def]
    engine = RulesEngine()
    compiled = _split(Leaf("has_tag", value="VIP"), f"shared_{next(NAMES)}")
    vip = {"fields": {}, "tags": ["VIP"], "groups": [], "segments": [], "activity": {}}
    assert _ask(engine, compiled, vip) == ["yes"]
    real = RulesEngine._consequent

    def broken(self, *args):  # type: ignore[no-untyped-def]
        raise RuntimeError("consequent failed")

    monkeypatch.setattr(RulesEngine, "_consequent", broken)
    try:
        _ask(engine, compiled, vip)
    except Exception as exc:
        assert "consequent failed" in str(exc)
    else:
        raise AssertionError("the failure was swallowed")
    monkeypatch.setattr(RulesEngine, "_consequent", real)
    assert _ask(engine, compiled, {**vip, "tags": []}) == ["no"]
    assert _ask(engine, compiled, vip) == ["yes"]


def test_matched_messages_are_looked_up_not_parsed(monkeypatch):  # type: ignore[no-untyped-def]
    """The engine hands an action's message back as the text it was given: a decision finds
    it among its own messages (parsing stays the fallback for any other shape)."""
    compiled = _split(Leaf("has_tag", value="VIP"), f"shared_{next(NAMES)}")
    vip = {"fields": {}, "tags": ["VIP"], "groups": [], "segments": [], "activity": {}}

    def no_parse(text):  # type: ignore[no-untyped-def]
        raise AssertionError(f"parsed {text[:60]}")

    monkeypatch.setattr(engine_module, "_from_json", no_parse)
    assert _ask(RulesEngine(), compiled, vip) == ["yes"]
    monkeypatch.undo()
    assert engine_module._matched('{"r1":{"m":{"kind": "arrive", "sid": "7"}}}', None) == (
        "r1", {"kind": "arrive", "sid": "7"})
