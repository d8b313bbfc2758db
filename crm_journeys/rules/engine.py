"""The one module that imports durable_rules: an ephemeral, deterministic transition function.

For one unit of work the caller hands over a message (facts of the contact, the event and
the instance); the ruleset's consequents record intents and chain the next step by
posting an ``arrive`` message, which is how forward chaining carries a contact through
consecutive immediate steps in one evaluation. Then the session is deleted: nothing
durable lives in the engine (no timers, no persistence callbacks, no background threads).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import threading
from dataclasses import dataclass
from typing import Any

from durable import engine as dr

from crm_journeys.errors import CrmJourneysError
from crm_journeys.rules.compiler import CompiledJourney

MAX_CHAIN = 500  # intents in one decision: a guard against a loop no check caught
NOOP_RULE = "cj_noop"


class RuleEngineError(CrmJourneysError):
    """The engine failed inside a decision; the event stays unprocessed and is retried."""


@dataclass(frozen=True)
class Firing:
    """One rule that fired: its id, the intent it records, and the facts it saw."""

    rule: str
    intent: dict[str, Any]
    message: dict[str, Any]


class _QuietHost(dr.Host):
    """A durable_rules host with its background dispatch loops switched off."""

    def __init__(self, owner: RulesEngine):
        self._owner = owner
        super().__init__()

    def _run(self) -> None:  # no engine threads: we only ever post synchronously
        pass

    def get_action(self, action_name: str) -> Any:
        return self._owner.action_for(action_name)


class RulesEngine:
    """Registers compiled journeys once and decides one message at a time (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._host = _QuietHost(self)
        self._compiled: dict[str, CompiledJourney] = {}
        self._sids = itertools.count(1)
        self._firings: list[Firing] | None = None

    def ensure(self, compiled: CompiledJourney) -> None:
        """Register a ruleset the first time it is seen (names are never re-registered)."""
        with self._lock:
            if compiled.ruleset_name in self._compiled:
                return
            ruleset = copy.deepcopy(compiled.ruleset)  # the engine mutates what it is given
            ruleset[NOOP_RULE] = {"all": [{"m": {"kind": "noop"}}], "pri": 0,
                                  "run": f"{compiled.ruleset_name}/{NOOP_RULE}"}
            self._compiled[compiled.ruleset_name] = compiled
            try:
                self._host.register_rulesets({compiled.ruleset_name: ruleset})
            except Exception:
                del self._compiled[compiled.ruleset_name]
                raise

    def decide(self, compiled: CompiledJourney, message: dict[str, Any]) -> list[Firing]:
        """Post one message; return the rules that fired, in order (maybe none)."""
        self.ensure(compiled)
        name = compiled.ruleset_name
        with self._lock:
            sid = str(next(self._sids))
            firings: list[Firing] = []
            self._firings = firings
            try:
                self._post(name, {**message, "sid": sid})
                return firings
            finally:
                self._firings = None
                self._drop_session(name, sid, acted=bool(firings))

    def _post(self, name: str, message: dict[str, Any]) -> None:
        try:
            state = self._host.post(name, message)
        except dr.MessageNotHandledException:
            return
        if isinstance(state, dict) and state.get("exception"):
            raise RuleEngineError(f"rule action failed in {name}: {state['exception']}")

    def _drop_session(self, name: str, sid: str, *, acted: bool) -> None:
        # A session that never ran an action may free garbage when deleted; the no-op
        # rule makes sure one ran first (ARCHITECTURE.md section 3). When a rule fired,
        # an action ran already and the session can go at once.
        try:
            if not acted:
                self._host.post(name, {"sid": sid, "kind": "noop"})
            self._host.delete_state(name, sid)
        except Exception as exc:  # pragma: no cover - engine bookkeeping only
            raise RuleEngineError(f"could not drop session {sid} of {name}: {exc}") from exc

    # --- consequents ------------------------------------------------------------------
    def action_for(self, action_name: str) -> Any:
        ruleset_name, rule_id = action_name.rsplit("/", 1)
        if rule_id == NOOP_RULE:
            return lambda c: None
        compiled = self._compiled[ruleset_name]
        intent = compiled.intents[rule_id]

        def consequent(c: Any) -> None:
            self._record(rule_id, intent, c)

        return consequent

    def _record(self, rule_id: str, intent: dict[str, Any], c: Any) -> None:
        firings = self._firings
        if firings is None:
            return
        message = _plain(c.m)
        firings.append(Firing(rule_id, intent, message))
        if len(firings) >= MAX_CHAIN:
            raise RuleEngineError(f"more than {MAX_CHAIN} steps in one evaluation: a loop without a wait")
        target = intent.get("to")
        if intent["op"] in ("enter", "goto", "action", "jump", "goal") and target:
            # A step with no rule for this arrival ends the chain there.
            with contextlib.suppress(dr.MessageNotHandledException):
                c.post(_arrival(message, intent, target))


def _arrival(message: dict[str, Any], intent: dict[str, Any], target: str) -> dict[str, Any]:
    """The chained message: the same facts, the instance now arriving at ``target``."""
    chained = {k: v for k, v in message.items() if k not in ("id", "$s")}
    inst = dict(chained.get("inst") or {})
    loops = dict(inst.get("loops") or {})
    if intent["op"] == "jump":
        loops[intent["step"]] = loops.get(intent["step"], 0) + 1
    inst.update(step=target, loops=loops)
    chained.update(kind="arrive", inst=inst)
    return chained


def _plain(content: Any) -> dict[str, Any]:
    """The message as a dict. durable_rules parses a fresh copy from JSON for every
    consequent, so it is ours to keep without copying."""
    return getattr(content, "_d", content)
