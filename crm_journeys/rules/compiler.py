"""Compiles one journey version into its own durable_rules ruleset plus an intent table.

Pure: takes a ``Journey`` and returns JSON-able data. Each rule's consequent is an
*intent* (enter, goto, run action, hold, exit, goal) that the runtime applies; the rules
engine only decides. A message is consumed by the single highest-priority rule it
matches, which is how "else" branches are expressed: an unconditional rule of lower
priority on the same step. Priorities: exit rules, then goals, then step and entry rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from crm_journeys.definition import model as m
from crm_journeys.definition.triggers import trigger_type
from crm_journeys.errors import EngineLimitError
from crm_journeys.rules.lowering import FactNeeds, Lowerer, finish

PRI_EXIT, PRI_GOAL, PRI_STEP, PRI_ELSE = 1, 2, 10, 100

# Hard limits measured on durable_rules 2.0.28 (ARCHITECTURE.md section 3), with margin.
MAX_TESTS_ON_ONE_FIELD = 450
MAX_RULES = 4000
MAX_MESSAGE_KEYS = 240

HELD_KINDS = ("event", "update", "timer")
# Raise when the rules a document compiles to change (a fix in how a step or goal
# compiles): versions stored by an older compiler are compiled again when loaded
# (``runtime.versions.compiled_of``), so the fix reaches them without a republish.
COMPILER_VERSION = 2
CART_DONE_EVENTS = ("order_confirmed", "purchase")  # carry the cart_id they complete


@dataclass
class CompiledJourney:
    """Everything the runtime needs to run one journey version, derived from its document."""

    ruleset_name: str
    ruleset: dict[str, Any]
    intents: dict[str, dict[str, Any]]
    needs: FactNeeds
    entry_routes: list[dict[str, str]]
    listens: list[str]
    holds: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "ruleset_name": self.ruleset_name, "ruleset": self.ruleset, "intents": self.intents,
            "needs": self.needs.to_json(), "entry_routes": self.entry_routes,
            "listens": self.listens, "holds": self.holds, "compiler": COMPILER_VERSION,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CompiledJourney:
        return cls(
            ruleset_name=data["ruleset_name"], ruleset=data["ruleset"], intents=data["intents"],
            needs=FactNeeds.from_json(data["needs"]), entry_routes=data["entry_routes"],
            listens=data["listens"], holds=data.get("holds", {}),
        )


def ruleset_name_for(journey_id: int | str, version: int) -> str:
    """durable_rules refuses a name twice: one name per journey version, forever."""
    return f"j{journey_id}_v{version}"


def compile_journey(journey: m.Journey, name: str, journey_key: str | None = None) -> CompiledJourney:
    """Compile a validated journey. Raises ``EngineLimitError`` past the engine's limits.

    ``journey_key`` (the journey's id) routes the starting points keyed by journey:
    manual add, the journey API, date schedules.
    """
    builder = _Builder(journey, name, journey_key)
    builder.build()
    compiled = builder.result()
    lint(compiled)
    return compiled


class _Builder:
    def __init__(self, journey: m.Journey, name: str, journey_key: str | None):
        self.journey = journey
        self.name = name
        self.journey_key = journey_key
        self.low = Lowerer()
        self.rules: dict[str, Any] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        self.listens: set[str] = set()
        self.holds: dict[str, dict[str, Any]] = {}

    def result(self) -> CompiledJourney:
        routes = []
        for sp in self.journey.starting_points:
            tt = trigger_type(sp.type)
            if tt.interaction and not self.journey.settings.interaction_triggers_start:
                continue
            routes.append({"event": tt.event, "key": tt.routing_key(sp.params, self.journey_key),
                           "starting_point": sp.id,
                           "entry_key": tt.entry_key or ""})
        return CompiledJourney(self.name, self.rules, self.intents, self.low.needs, routes,
                               sorted(self.listens), self.holds)

    def add(self, tests: list[dict[str, Any]], intent: dict[str, Any], pri: int, why: str) -> None:
        rule_id = f"r{len(self.rules)}"
        test = {"$and": tests} if len(tests) > 1 else tests[0]
        self.rules[rule_id] = {"all": [{"m": finish(test)}], "pri": pri,
                               "run": f"{self.name}/{rule_id}"}
        self.intents[rule_id] = {**intent, "why": why}

    def build(self) -> None:
        self._exits()
        self._goals()
        self._entries()
        for step in self.journey.steps:
            getattr(self, f"_step_{type(step).__name__}")(step)

    # --- exits, goals, entries ------------------------------------------------------
    def _continuous(self, cond: m.Condition | None, event: m.EventMatch | None) -> list[list[Any]]:
        """Tests for a rule checked on every message of an instance in flight."""
        alternatives = []
        if cond is not None:
            alternatives.append([_kind_in(HELD_KINDS), self.low.condition(cond)])
            self.listens.add("*")
        if event is not None:
            alternatives.append(self._event_tests(event))
        return alternatives

    def _exits(self) -> None:
        self._cart_exits()
        for rule in self.journey.exit_rules:
            for tests in self._continuous(rule.condition, rule.event):
                self.add(tests, {"op": "exit", "reason": f"exit rule {rule.id}"}, PRI_EXIT,
                         f"exit rule '{rule.id}' matched")

    def _cart_exits(self) -> None:
        """Implicit exit: a cart's instance leaves when an order for that cart completes."""
        if not any(trigger_type(sp.type).entry_key == "cart_id" for sp in self.journey.starting_points):
            return
        for event in CART_DONE_EVENTS:
            self.listens.add(event)
            self.add([{"kind": "event"}, {"type": event}, {"event.cart_id": {"$m": "inst.entry_key"}}],
                     {"op": "exit", "reason": f"order completed ({event})"}, PRI_EXIT,
                     f"the order for this cart completed ({event})")

    def _goals(self) -> None:
        for goal in self.journey.goals:
            for tests in self._continuous(goal.condition, goal.event):
                self.add(tests, {"op": "goal", "goal": goal.id, "to": goal.then}, PRI_GOAL,
                         f"goal '{goal.label or goal.id}' reached")

    def _entries(self) -> None:
        policy = _policy_tests(self.journey.entry)
        for order, sp in enumerate(self.journey.starting_points):
            tt = trigger_type(sp.type)
            if tt.interaction and not self.journey.settings.interaction_triggers_start:
                continue  # interaction triggers only branch unless the journey lets them start it
            tests: list[dict[str, Any]] = [{"kind": "trigger"}, {"type": tt.event}]
            key = tt.routing_key(sp.params, self.journey_key)
            if key != "*":
                tests.append({"key": key})
            tests += [self.low.condition(c) for c in tt.event_conditions(sp.params)]
            if tt.name == "joined_segment" and self.journey_key:
                # members entered at publish are addressed to one journey only
                tests.append(self.low.condition(m.Group("any", (
                    m.Group("not", (m.Leaf("is_true", "event.existing"),)),
                    m.Leaf("eq", "event.journey", str(self.journey_key))))))
            for cond in (sp.filter, self.journey.entry_filter):
                if cond is not None:
                    tests.append(self.low.condition(cond))
            tests += policy
            first = sp.next or self.journey.first_step
            self.add(tests, {"op": "enter", "starting_point": sp.id, "to": first},
                     PRI_STEP + order, f"starting point '{sp.id}' ({tt.label}) fired")

    def _event_tests(self, event: m.EventMatch) -> list[dict[str, Any]]:
        tests: list[dict[str, Any]] = [{"kind": "event"}]
        if event.type == m.ANY_EVENT:  # every event of the contact, so no test of its type
            self.listens.add("*")
        else:
            self.listens.add(event.type)
            tests.append({"type": event.type})
        if event.key is not None:
            tests.append({"key": event.key})
        if event.where is not None:
            tests.append(self.low.condition(event.where))
        return tests

    # --- steps ------------------------------------------------------------------------
    def _at(self, step: m.Step, kind: str) -> list[dict[str, Any]]:
        return [{"kind": kind}, {"inst.step": step.id}]

    def _goto(self, step: m.Step, branch: str, to: str | None, tests: list[dict[str, Any]],
              pri: int, why: str) -> None:
        self.add(tests, {"op": "goto", "step": step.id, "branch": branch, "to": to}, pri, why)

    def _hold(self, step: m.Step, wake: str, **extra: Any) -> None:
        self.holds[step.id] = {"wake": wake, **extra}
        self.add(self._at(step, "arrive"), {"op": "hold", "step": step.id}, PRI_ELSE,
                 f"'{step.id}' holds the contact")

    def _step_ActionStep(self, step: m.ActionStep) -> None:
        self.add(self._at(step, "arrive"),
                 {"op": "action", "step": step.id, "action": step.action, "to": step.next,
                  "multiple": step.run_multiple_times},
                 PRI_STEP, f"action '{step.label or step.action}'")

    def _step_WaitStep(self, step: m.WaitStep) -> None:
        self._hold(step, "duration", seconds=step.duration.total_seconds())
        self._goto(step, "next", step.next, self._at(step, "timer"), PRI_STEP, "wait is over")

    def _step_WaitUntilStep(self, step: m.WaitUntilStep) -> None:
        if step.field:
            self.low.needs.fields.add(step.field)
        self._hold(step, "until")
        self._goto(step, "next", step.next, self._at(step, "timer"), PRI_STEP, "the moment came")

    def _step_WaitAndCheckStep(self, step: m.WaitAndCheckStep) -> None:
        self._hold(step, "duration", seconds=step.duration.total_seconds())
        at = self._at(step, "timer")
        self._goto(step, "yes", step.yes, [*at, self.low.condition(step.condition)], PRI_STEP,
                   "checked after the wait: condition true")
        self._goto(step, "no", step.no, at, PRI_ELSE - 1, "checked after the wait: condition false")

    def _step_ReactToEventStep(self, step: m.ReactToEventStep) -> None:
        self._hold(step, "duration", seconds=step.timeout.total_seconds())
        tests = [*self._event_tests(step.event), {"inst.step": step.id}]
        self._goto(step, "yes", step.yes, tests, PRI_STEP, f"'{step.event.type}' happened")
        self._goto(step, "no", step.no, self._at(step, "timer"), PRI_STEP, "timed out waiting")

    def _step_IfThenStep(self, step: m.IfThenStep) -> None:
        cond = self.low.condition(step.condition)
        self._goto(step, "yes", step.yes, [*self._at(step, "arrive"), cond], PRI_STEP,
                   "condition already true")
        self._hold(step, "duration", seconds=step.timeout.total_seconds())
        self.listens.add("*")
        self._goto(step, "yes", step.yes,
                   [_kind_in(("update", "event")), {"inst.step": step.id}, cond],
                   PRI_STEP, "condition became true")
        self._goto(step, "no", step.no, self._at(step, "timer"), PRI_STEP, "timed out")

    def _step_ConditionSplitStep(self, step: m.ConditionSplitStep) -> None:
        at = self._at(step, "arrive")
        self._goto(step, "yes", step.yes, [*at, self.low.condition(step.condition)], PRI_STEP,
                   "condition true")
        self._goto(step, "no", step.no, at, PRI_ELSE, "condition false")

    def _step_MultiSplitStep(self, step: m.MultiSplitStep) -> None:
        at = self._at(step, "arrive")
        for i, case in enumerate(step.cases):
            self._goto(step, case.name, case.next, [*at, self.low.condition(case.condition)],
                       PRI_STEP + i, f"case '{case.name}' matched first")
        self._goto(step, "default", step.default, at, PRI_ELSE, "no case matched")

    def _step_RandomSplitStep(self, step: m.RandomSplitStep) -> None:
        self.low.needs.random_steps.append(step.id)
        at = self._at(step, "arrive")
        bound = 0
        for i, path in enumerate(step.paths[:-1]):
            bound += path.percent
            self._goto(step, path.name, path.next, [*at, {"$lt": {f"dice.{step.id}": bound}}],
                       PRI_STEP + i, f"random draw under {bound}%")
        last = step.paths[-1]
        self._goto(step, last.name, last.next, at, PRI_ELSE, f"random draw at or over {bound}%")

    def _step_JumpStep(self, step: m.JumpStep) -> None:
        self.low.needs.jump_steps.append(step.id)
        at = self._at(step, "arrive")
        self.add([*at, {"$lt": {f"inst.loops.{step.id}": step.max_times}}],
                 {"op": "jump", "step": step.id, "branch": "to", "to": step.to}, PRI_STEP,
                 f"jump back to '{step.to}'")
        self._goto(step, "next", step.next, at, PRI_ELSE, f"jumped {step.max_times} times already")

    def _step_ExitStep(self, step: m.ExitStep) -> None:
        self.add(self._at(step, "arrive"), {"op": "exit", "step": step.id, "reason": "exit step"},
                 PRI_STEP, "reached an exit step")


def _kind_in(kinds: tuple[str, ...]) -> dict[str, Any]:
    return {"$or": [{"kind": k} for k in kinds]}


def _policy_tests(policy: m.EntryPolicy) -> list[dict[str, Any]]:
    """Entry policy as tests on the ``hist`` facts the runtime computes for the contact."""
    if policy.mode == "once":
        return [{"hist.entries": 0}]
    if policy.mode == "after_exit":
        return [{"hist.active": 0}]
    if policy.mode == "cooldown":
        seconds = policy.cooldown.total_seconds() if policy.cooldown else 0
        return [{"hist.active": 0},
                {"$or": [{"hist.entries": 0}, {"$gte": {"hist.since_entry": seconds}}]}]
    if policy.mode == "max_times":
        return [{"hist.active": 0}, {"$lt": {"hist.entries": policy.max_entries or 1}}]
    return []


# --- lint against the engine's hard limits ----------------------------------------------

def lint(compiled: CompiledJourney) -> None:
    """Reject, with a plain message, journeys that would crash or hang durable_rules."""
    errors: dict[str, list[str]] = {}
    if len(compiled.ruleset) > MAX_RULES:
        errors.setdefault("steps", []).append(
            f"the journey compiles to {len(compiled.ruleset)} rules; the engine allows {MAX_RULES}")
    for path, count in _tests_per_field(compiled.ruleset).items():
        if count > MAX_TESTS_ON_ONE_FIELD:
            errors.setdefault("steps", []).append(
                f"{count} tests on '{path}' (the engine hangs past about 500); split the journey "
                f"or use fewer steps / list values")
    keys = compiled.needs.key_count()
    if keys > MAX_MESSAGE_KEYS:
        errors.setdefault("$", []).append(
            f"the journey reads {keys} facts per event; the engine handles about 250")
    if errors:
        raise EngineLimitError(errors)


def _tests_per_field(ruleset: dict[str, Any]) -> dict[str, int]:
    """Distinct tests per fact path: the engine's alpha network fans out on these."""
    seen: dict[str, set[str]] = {}
    for rule in ruleset.values():
        for path, test in _leaf_tests(rule["all"][0]["m"]):
            seen.setdefault(path, set()).add(test)
    return {path: len(tests) for path, tests in seen.items()}


def _leaf_tests(test: Any) -> list[tuple[str, str]]:
    if isinstance(test, list):
        return [t for item in test for t in _leaf_tests(item)]
    if not isinstance(test, dict):
        return []
    out: list[tuple[str, str]] = []
    for key, val in test.items():
        if key in ("$and", "$or"):
            out += _leaf_tests(val)
        elif key.startswith("$") and isinstance(val, dict):
            out += [(path, f"{key}:{json.dumps(v, sort_keys=True)}") for path, v in val.items()]
        elif not key.startswith("$"):
            out.append((key, json.dumps(val, sort_keys=True)))
    return out
