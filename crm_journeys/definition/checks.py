"""Semantic checks of a loaded journey: references, reachability, loops, catalogue rules.

``schema.load_journey`` has already checked shape and types; this module checks what
only the whole journey shows (a dangling target, an unreachable step, a loop that would
spin forever, starting points that may not be combined) and the parameters of starting
points and actions against their declarations. Every problem is reported at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from marshmallow import Schema, ValidationError

from crm_journeys.definition import model as m
from crm_journeys.definition.schema import flatten_errors, load_journey
from crm_journeys.definition.triggers import CANONICAL_EVENTS, CATALOG
from crm_journeys.errors import DefinitionError


class ActionInfo(Protocol):
    """What checks need of an installed action: the marshmallow schema of its params."""

    @property
    def params_schema(self) -> type[Schema] | None: ...


class Report:
    """Collects ``path -> messages``; raises them all at the end."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def raise_if_any(self) -> None:
        if self.errors:
            raise DefinitionError(self.errors)


def validate_document(doc: Any, actions: Mapping[str, ActionInfo] | None = None) -> m.Journey:
    """Load and check a journey document: the one call every entry point uses.

    Args:
        doc: the parsed JSON document.
        actions: installed actions by name; ``None`` skips action checks (drafts, tests).

    Raises:
        DefinitionError: every problem, keyed by JSON path.
    """
    check_size(doc)
    journey = load_journey(doc)
    check_journey(journey, actions=actions)
    return journey


MAX_STEPS = 2000  # the compiler has its own, lower limit for long chains (EngineLimitError)
MAX_STARTING_POINTS = 50
MAX_DEPTH = 32


def check_size(doc: Any) -> None:
    """Refuse documents too big or too deep to load safely, before anything walks them.

    The loader and the compiler recurse through condition groups, and every step becomes
    rules in the engine: a 50,000-step or 1,000-level document must be a clear error, not
    a RecursionError or minutes of compiling.
    """
    if not isinstance(doc, dict):
        return
    errors: dict[str, list[str]] = {}
    for key, limit in (("steps", MAX_STEPS), ("starting_points", MAX_STARTING_POINTS)):
        if isinstance(doc.get(key), list) and len(doc[key]) > limit:
            errors[key] = [f"at most {limit} are allowed (got {len(doc[key])})"]
    if _depth(doc) > MAX_DEPTH:
        errors["$"] = [f"the document nests deeper than {MAX_DEPTH} levels"]
    if errors:
        raise DefinitionError(errors)


def _depth(doc: Any) -> int:
    deepest, stack = 0, [(doc, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:  # deeper is already an error: stop walking
                stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_journey(journey: m.Journey, *, actions: Mapping[str, ActionInfo] | None = None) -> None:
    """Raise DefinitionError with every semantic problem of an already loaded journey."""
    report = Report()
    for check in CHECKS:
        check(journey, report)
    if actions is not None:
        _check_actions(journey, actions, report)
    report.raise_if_any()


# --- connections ------------------------------------------------------------------------


def connections(step: m.Step) -> list[tuple[str, str | None]]:
    """Each outgoing connection of a step as ``(json path suffix, target)``."""
    if isinstance(step, m.MultiSplitStep):
        out = [(f"cases[{k}].next", c.next) for k, c in enumerate(step.cases)]
        return out + [("default", step.default)]
    if isinstance(step, m.RandomSplitStep):
        return [(f"paths[{k}].next", p.next) for k, p in enumerate(step.paths)]
    if isinstance(step, m.JumpStep):
        return [("to", step.to), ("next", step.next)]
    return [
        (f"branches.{name}" if name in ("yes", "no") else name, target)
        for name, target in step.targets().items()
    ]


def _entry_targets(journey: m.Journey) -> Iterator[tuple[str, str | None]]:
    """Connections into the step graph from outside it (entries and goals)."""
    yield "first_step", journey.first_step
    for i, sp in enumerate(journey.starting_points):
        yield f"starting_points[{i}].next", sp.next
    for i, goal in enumerate(journey.goals):
        yield f"goals[{i}].then", goal.then


def _index(journey: m.Journey) -> dict[str, int]:
    """Step id -> position of its first occurrence."""
    out: dict[str, int] = {}
    for i, step in enumerate(journey.steps):
        out.setdefault(step.id, i)
    return out


# --- structure --------------------------------------------------------------------------


def _check_unique_ids(journey: m.Journey, report: Report) -> None:
    groups: tuple[tuple[str, Sequence[Any]], ...] = (
        ("steps", journey.steps),
        ("starting_points", journey.starting_points),
        ("goals", journey.goals),
        ("exit_rules", journey.exit_rules),
    )
    for key, items in groups:
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.id in seen:
                report.add(f"{key}[{i}].id", f"duplicate id {item.id!r}")
            seen.add(item.id)


def _check_targets(journey: m.Journey, report: Report) -> None:
    known = _index(journey)
    for path, target in _entry_targets(journey):
        if target is not None and target not in known:
            report.add(path, f"no step with id {target!r}")
    for i, step in enumerate(journey.steps):
        for suffix, target in connections(step):
            if target is not None and target not in known:
                report.add(f"steps[{i}].{suffix}", f"no step with id {target!r}")


def _check_entry(journey: m.Journey, report: Report) -> None:
    if not journey.starting_points:
        report.add("starting_points", "a journey needs at least one starting point")
    if journey.first_step is None:
        for sp in journey.starting_points:
            if sp.next is None:
                report.add(
                    "first_step", f"required: starting point {sp.id!r} has no next of its own"
                )
                return


def _check_reachable(journey: m.Journey, report: Report) -> None:
    known = _index(journey)
    todo = [t for _, t in _entry_targets(journey) if t in known]
    seen: set[str] = set()
    while todo:
        step_id = todo.pop()
        if step_id not in seen:
            seen.add(step_id)
            step = journey.steps[known[step_id]]
            todo += [t for _, t in connections(step) if t in known]
    for i, step in enumerate(journey.steps):
        if step.id not in seen and known[step.id] == i:
            report.add(
                f"steps[{i}]", f"step {step.id!r} cannot be reached from any starting point or goal"
            )


def _check_loops(journey: m.Journey, report: Report) -> None:
    """A loop must hold the contact somewhere (a wait) or pass a jump that counts rounds.

    Holding steps and jump-back connections are cut; any cycle left would run forever
    within one event.
    """
    known = _index(journey)
    graph = {
        s.id: [
            t
            for suffix, t in connections(s)
            if t in known
            and suffix != "to"
            and not isinstance(journey.steps[known[t]], m.HOLDING_STEPS)
        ]
        for s in journey.steps
        if not isinstance(s, m.HOLDING_STEPS)
    }
    for cycle in _cycles(graph):
        ordered = sorted(cycle, key=known.__getitem__)
        report.add(
            f"steps[{known[ordered[0]]}]",
            f"steps {', '.join(ordered)} form a loop with no wait step and no jump limit: "
            "a contact would go round it forever",
        )


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """One representative cycle per strongly connected component that loops (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, []):
                found.append(component)

    for node in graph:
        if node not in index:
            visit(node)
    return found


def _check_random_splits(journey: m.Journey, report: Report) -> None:
    for i, step in enumerate(journey.steps):
        if isinstance(step, m.RandomSplitStep):
            total = sum(p.percent for p in step.paths)
            if total != 100:
                report.add(f"steps[{i}].paths", f"percentages add up to {total}, not 100")


def _check_event_types(journey: m.Journey, report: Report) -> None:
    matches: list[tuple[str, m.EventMatch | None]] = [
        (f"steps[{i}].event.type", s.event)
        for i, s in enumerate(journey.steps)
        if isinstance(s, m.ReactToEventStep)
    ]
    matches += [(f"goals[{i}].event.type", g.event) for i, g in enumerate(journey.goals)]
    matches += [(f"exit_rules[{i}].event.type", x.event) for i, x in enumerate(journey.exit_rules)]
    for path, event in matches:
        if event is not None and event.type != m.ANY_EVENT and event.type not in CANONICAL_EVENTS:
            report.add(
                path,
                f"unknown event type {event.type!r}; known: any, {', '.join(sorted(CANONICAL_EVENTS))}",
            )


# --- starting points --------------------------------------------------------------------


def _check_starting_points(journey: m.Journey, report: Report) -> None:
    for i, sp in enumerate(journey.starting_points):
        tt = CATALOG.get(sp.type)
        if tt is None:
            report.add(
                f"starting_points[{i}].type",
                f"unknown starting point type {sp.type!r}; known: {', '.join(sorted(CATALOG))}",
            )
            continue
        for name, messages in tt.param_errors(sp.params).items():
            for message in messages:
                report.add(f"starting_points[{i}].params.{name}", message)
        if tt.interaction and not journey.settings.interaction_triggers_start:
            report.add(
                f"starting_points[{i}].type",
                f"{tt.label!r} is an interaction trigger: it may start a journey only when "
                "settings.interaction_triggers_start is true",
            )


INTERACTION_EVENTS = frozenset(tt.event for tt in CATALOG.values() if tt.interaction)


def _check_interaction_ends(journey: m.Journey, report: Report) -> None:
    """Dynamics 365's rule, as for starting points: an interaction trigger (email
    delivered / not delivered / opened) only branches inside a journey, so it cannot end
    one through a goal or an exit rule either, unless the journey takes the other model."""
    if journey.settings.interaction_triggers_start:
        return
    ends = [(f"goals[{i}]", g.event) for i, g in enumerate(journey.goals)]
    ends += [(f"exit_rules[{i}]", x.event) for i, x in enumerate(journey.exit_rules)]
    for path, event in ends:
        if event is not None and event.type in INTERACTION_EVENTS:
            report.add(
                f"{path}.event.type",
                f"{event.type!r} is an interaction trigger: it may end a journey only when "
                "settings.interaction_triggers_start is true (else use it in a react_to_event "
                "step to branch)",
            )


def _check_combinations(journey: m.Journey, report: Report) -> None:
    """FEATURES.md rules: specific dates stand alone in time; cart/order types stand alone."""
    types = [CATALOG.get(sp.type) for sp in journey.starting_points]
    for i, tt in enumerate(types):
        if tt is None:
            continue
        if tt.exclusive and len(types) > 1:
            report.add(
                f"starting_points[{i}].type",
                f"{tt.label!r} cannot share a journey with other starting points",
            )
        if tt.schedule == "once" and any(t is not None and t.schedule == "yearly" for t in types):
            report.add(
                f"starting_points[{i}].type",
                "a specific-date starting point cannot be combined with birthday, "
                "anniversary or recurring date starting points",
            )
    if any(t is not None and t.schedule == "once" for t in types):
        for j, step in enumerate(journey.steps):
            if _is_wait(step):
                report.add(
                    f"steps[{j}].type",
                    "a journey started by a specific date cannot contain wait steps",
                )


def _is_wait(step: m.Step) -> bool:
    if isinstance(step, m.IfThenStep):
        return bool(step.timeout)
    return isinstance(step, m.HOLDING_STEPS)


# --- actions ----------------------------------------------------------------------------


def _check_actions(journey: m.Journey, actions: Mapping[str, ActionInfo], report: Report) -> None:
    for i, step in enumerate(journey.steps):
        if not isinstance(step, m.ActionStep):
            continue
        info = actions.get(step.action)
        if info is None:
            installed = ", ".join(sorted(actions)) or "none"
            report.add(
                f"steps[{i}].action", f"unknown action {step.action!r}; installed: {installed}"
            )
            continue
        for path, messages in _action_param_errors(info, step.params).items():
            for message in messages:
                report.add(f"steps[{i}].params" + (f".{path}" if path else ""), message)


def _action_param_errors(info: ActionInfo, params: dict[str, Any]) -> dict[str, list[str]]:
    """The action's own schema decides; its messages keep their field paths."""
    schema_class = getattr(info, "params_schema", None)
    if schema_class is None:
        return {name: ["this action takes no parameters"] for name in params}
    try:
        schema_class().load(params)
    except ValidationError as exc:
        return flatten_errors(exc.messages)
    return {}


CHECKS: tuple[Callable[[m.Journey, Report], None], ...] = (
    _check_unique_ids,
    _check_entry,
    _check_targets,
    _check_reachable,
    _check_loops,
    _check_random_splits,
    _check_event_types,
    _check_starting_points,
    _check_interaction_ends,
    _check_combinations,
)
