"""The one module that imports durable_rules: an ephemeral, deterministic transition function.

For one unit of work the caller hands over a message (facts of the contact, the event and
the instance); the ruleset's consequents record intents and chain the next step by
posting an ``arrive`` message, which is how forward chaining carries a contact through
consecutive immediate steps in one evaluation. Nothing durable lives in the engine (no
timers, no persistence callbacks, no background threads).

Decisions share one session per ruleset. Every compiled rule has a single condition, so a
message either matches (and the action that consumes it runs before ``decide`` returns)
or is not handled and not kept: a session holds nothing from one decision to the next,
and creating and deleting one per decision cost 15 % of a decision (bench P3). A session
is still replaced after any failure inside it and after ``SESSION_USES`` decisions, so
nothing the C engine might keep can build up.

The adapter drives durable_rules' C engine (``durable_rules_engine``, the module that
``durable.engine`` wraps) with the same calls ``durable.engine.Host.post`` makes, minus the
work a synchronous, stateless caller does not need: no ``Host``/``Closure``/``Promise``
objects per action, no session-state JSON parsed and written back after every action
(``update_state``: every compiled rule tests ``kind``, which the state fact lacks, and our
consequents never change the state), no exception objects built (with a JSON dump of the message) for unmatched messages.
Pinned to durable-rules==2.0.28 (setup.cfg); ``_run`` names the Python code it mirrors.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import traceback
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any, NamedTuple

import durable_rules_engine as rete
from durable import engine as dr

from crm_journeys import jsontext
from crm_journeys.errors import CrmJourneysError
from crm_journeys.rules.compiler import CompiledJourney

SESSION_USES = 10_000  # decisions before a ruleset's session is replaced
MAX_CHAIN = 500  # intents in one decision: a guard against a loop no check caught
NOOP_RULE = "cj_noop"
CHAINING_OPS = ("enter", "goto", "action", "jump", "goal")

# assert_event's result codes (durable_rules' rules.h), as durable.engine.Ruleset reads them
_HANDLED, _NOT_HANDLED, _OBSERVED, _DEFERRED = 0, 1, 2, 3


_to_json = jsontext.writer(ensure_ascii=False)  # the text durable.engine hands the C engine
# json.loads without its leading and trailing whitespace scans (the C engine writes none)
_from_json = json.JSONDecoder().raw_decode


class RuleEngineError(CrmJourneysError):
    """The engine failed inside a decision; the event stays unprocessed and is retried."""


class Firing(NamedTuple):
    """One rule that fired: its id, the intent it records, and the facts it saw (a named
    tuple: several are made per decision, at a fifth of a frozen dataclass's cost)."""

    rule: str
    intent: dict[str, Any]
    message: dict[str, Any]


@dataclass(frozen=True)
class _Ruleset:
    """One registered ruleset: its handle in the C engine and each rule's intent."""

    name: str
    handle: int
    intents: dict[str, dict[str, Any] | None]  # None: the no-op rule, which records nothing


class RulesEngine:
    """Registers compiled journeys once and decides one message at a time (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._rulesets: dict[str, _Ruleset] = {}
        self._sids = itertools.count(1)
        self._sessions: dict[str, tuple[str, int]] = {}  # ruleset -> (session id, decisions made)

    def ensure(self, compiled: CompiledJourney) -> None:
        """Register a ruleset the first time it is seen (names are never re-registered)."""
        self._ruleset(compiled)

    def _ruleset(self, compiled: CompiledJourney) -> _Ruleset:
        with self._lock:
            rs = self._rulesets.get(compiled.ruleset_name)
            if rs is not None:
                return rs
            # What durable.engine.Ruleset hands the C engine: the rules without their "run".
            definition = {rule_id: {k: v for k, v in rule.items() if k != "run"}
                          for rule_id, rule in compiled.ruleset.items()}
            definition[NOOP_RULE] = {"all": [{"m": {"kind": "noop"}}], "pri": 0}
            intents: dict[str, dict[str, Any] | None] = {
                rule_id: compiled.intents[rule_id] for rule_id in compiled.ruleset}
            intents[NOOP_RULE] = None
            handle = rete.create_ruleset(compiled.ruleset_name, _to_json(definition))
            rs = self._rulesets[compiled.ruleset_name] = _Ruleset(compiled.ruleset_name, handle, intents)
            return rs

    def decide(self, compiled: CompiledJourney, message: dict[str, Any]) -> list[Firing]:
        """Post one message; return the rules that fired, in order (maybe none)."""
        with self._lock:
            rs = self._ruleset(compiled)
            session = self._sessions.get(rs.name)
            if session is None or session[1] >= SESSION_USES:
                if session is not None:
                    self._drop_session(rs, session[0])
                session = (str(next(self._sids)), 0)
            sid, uses = session
            firings: list[Firing] = []
            posted = _Posted(sid)
            try:
                self._run(rs, posted.encode(message), firings, posted)
            except BaseException:
                self._sessions.pop(rs.name, None)
                with contextlib.suppress(RuleEngineError):  # the first failure is the one to report
                    self._drop_session(rs, sid)
                raise
            self._sessions[rs.name] = (sid, uses + 1)
            return firings

    def _run(self, rs: _Ruleset, text: str, firings: list[Firing], posted: _Posted | None) -> None:
        """Post the message ``text`` and run the actions it starts, one at a time, until
        none is left.

        The same C calls, in the same order, as durable.engine's Host.post ->
        Ruleset.assert_event -> do_actions -> _flush_actions; like Promise.run, an exception
        in a consequent is kept and the remaining actions still run.
        """
        handle = rs.handle
        code, state = rete.assert_event(handle, text)
        if code == _NOT_HANDLED:
            return
        if code == _OBSERVED:
            raise dr.MessageObservedException(text)
        if code == _DEFERRED:  # only with a queue callback, which we never set
            state = 0
        started = rete.start_action_for_state(handle, state)
        action = started[1] if started else None
        failure = None
        while action:
            rule_id, facts = _matched(action, posted)
            try:
                self._consequent(rs, rule_id, facts, firings, posted)
            except BaseException as exc:  # durable's Promise.run swallows all into state
                failure = f"exception caught {exc}, traceback {traceback.format_tb(exc.__traceback__)}"
            try:
                action = rete.complete_and_start_action(handle, state)
            except BaseException:
                rete.abandon_action(handle, state)
                raise
        if failure:
            raise RuleEngineError(f"rule action failed in {rs.name}: {failure}")

    def _drop_session(self, rs: _Ruleset, sid: str) -> None:
        # A session that never ran an action may free garbage when deleted (the C engine's
        # createStateNode leaves the action buffers that deleteStateNode frees
        # uninitialised; completing an action sets them to NULL): the no-op rule makes sure
        # one ran first, whatever the session did before.
        try:
            self._run(rs, _to_json({"sid": sid, "kind": "noop"}), [], None)
            rete.delete_state(rs.handle, sid)
        except Exception as exc:  # pragma: no cover - engine bookkeeping only
            raise RuleEngineError(f"could not drop session {sid} of {rs.name}: {exc}") from exc

    # --- consequents ------------------------------------------------------------------
    def _consequent(self, rs: _Ruleset, rule_id: str, facts: dict[str, Any],
                    firings: list[Firing], posted: _Posted | None) -> None:
        """Record the rule's intent with the facts it saw and chain the next step."""
        intent = rs.intents[rule_id]
        if intent is None:
            return
        firings.append(Firing(rule_id, intent, facts))
        if len(firings) >= MAX_CHAIN:
            raise RuleEngineError(f"more than {MAX_CHAIN} steps in one evaluation: a loop without a wait")
        target = intent.get("to")
        if intent["op"] in CHAINING_OPS and target:
            # Posted to the same session; the C engine queues the action it starts, which
            # _run's loop picks up next. A step with no rule for this arrival ends the chain.
            chained = _arrival(facts, intent, target)
            text = posted.encode(chained) if posted is not None else _to_json(chained)
            code, _ = rete.assert_event(rs.handle, text)
            if code == _OBSERVED:
                raise dr.MessageObservedException(chained)


class _Posted:
    """The messages one decision posts, by the exact text the engine was given.

    Every message of a decision carries the same facts; only ``kind`` and ``inst`` change
    from one arrival to the next (``_arrival``). So the facts are encoded once per decision
    and each message's text is spliced from them. And since the C engine hands a matched
    message back as the very text it was given, an action's message is looked up here
    instead of parsed (``_matched``). Both were a fifth of a decision's cost (bench P3).
    """

    __slots__ = ("sid", "by_text", "_facts")

    def __init__(self, sid: str):
        self.sid = sid
        self.by_text: dict[str, dict[str, Any]] = {}
        self._facts: str | None = None  # the shared keys' JSON, without its braces

    def encode(self, message: dict[str, Any]) -> str:
        if self._facts is None:
            shared = {k: v for k, v in message.items() if k not in _PER_MESSAGE}
            shared["sid"] = self.sid
            self._facts = _to_json(shared)[1:-1]
        inst = f', "inst": {_to_json(message["inst"])}' if "inst" in message else ""
        kind = message.get("kind")
        text = f'{{"kind": {encode_basestring(kind) if type(kind) is str else _to_json(kind)}{inst}, {self._facts}}}'
        self.by_text[text] = message
        return text


_PER_MESSAGE = frozenset({"kind", "inst", "sid", "id", "$s"})
_ACTION_HEAD = '":{"m":'  # an action reads {"<rule id>":{"m":<message>}}


def _matched(action: str, posted: _Posted | None) -> tuple[str, dict[str, Any]]:
    """The rule an action runs and the message it matched: found by its text among the
    decision's own messages, else (any other shape) parsed."""
    if posted is not None and action.startswith('{"'):
        cut = action.find(_ACTION_HEAD, 2)
        if cut > 0:
            found = posted.by_text.get(action[cut + len(_ACTION_HEAD):-2])
            if found is not None:
                return action[2:cut], found
    rule_id, matched = next(iter(_from_json(action)[0].items()))
    return rule_id, matched["m"]


def _arrival(message: dict[str, Any], intent: dict[str, Any], target: str) -> dict[str, Any]:
    """The chained message: the same facts, the instance now arriving at ``target``."""
    chained = dict(message)
    chained.pop("id", None)
    chained.pop("$s", None)
    inst = dict(chained.get("inst") or {})
    loops = dict(inst.get("loops") or {})
    if intent["op"] == "jump":
        loops[intent["step"]] = loops.get(intent["step"], 0) + 1
    inst.update(step=target, loops=loops)
    chained.update(kind="arrive", inst=inst)
    return chained
