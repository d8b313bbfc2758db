"""The compiled durable_rules tests agree with the reference evaluator on every operator.

Each generated condition becomes a one-step journey (a condition split); the contact's
facts go through the runtime's own message builder and the real engine; the branch the
engine takes must be the one ``definition.conditions.evaluate`` predicts.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

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
