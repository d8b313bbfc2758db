"""Applies one decision's intents to rows: instance state, outbox rows, wake-ups, the log.

Runs inside the caller's transaction, so an event's whole effect commits together with
its "processed" mark, or not at all (ARCHITECTURE.md invariant 2).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_journeys.definition import model as m
from crm_journeys.rules.engine import Firing
from crm_journeys.rules.lowering import decode_value
from crm_journeys.runtime.lanes import lane_of
from crm_journeys.runtime.schedule import wake_time
from crm_journeys.runtime.versions import LoadedVersion
from crm_journeys.storage.models import Contact, Instance, Wakeup

if TYPE_CHECKING:
    from crm_journeys.runtime.batch import BatchCache


class Applier:
    """One per decision: walks the firings in order and writes what they mean."""

    def __init__(self, session: Session, version: LoadedVersion, contact: Contact, now: datetime,
                 batch: BatchCache, *, known: list[Instance] | None = None):
        self.session = session
        self.version = version
        self.contact = contact
        self.now = now
        self.instance: Instance | None = None  # the instance the firings are moving
        self.known = known  # all of the contact's instances, when the caller tracks them
        # The batch hands out row ids without a flush and queues every row for one
        # statement per table when it ends.
        self.batch = batch
        self._seen: dict[str, Any] = {}
        self._facts_logged = False

    def apply(self, firings: list[Firing], instance: Instance | None, entry_key: str = "") -> Instance | None:
        """Write what ``firings`` mean; returns the instance they moved (new on entry)."""
        self.instance = instance
        # One decision sees one set of facts (the chain only moves the step): summarise once.
        self._seen = _facts(firings[0].message) if firings else {}
        for firing in firings:
            op = firing.intent["op"]
            if op == "enter":
                self._enter(firing, entry_key)
                continue
            if self.instance is None or self.instance.status != "active":
                break
            getattr(self, f"_{op}")(self.instance, firing)
        return self.instance

    # --- intents ----------------------------------------------------------------------
    def _enter(self, firing: Firing, entry_key: str) -> None:
        if self.known is not None:
            rotation = sum(1 for i in self.known if i.version_id == self.version.id and i.entry_key == entry_key)
        else:
            rotation = self.session.scalar(
                select(func.count(Instance.id)).where(Instance.version_id == self.version.id,
                                                      Instance.contact_id == self.contact.id,
                                                      Instance.entry_key == entry_key)) or 0
        values = dict(tenant_id=self.version.tenant_id, journey_id=self.version.journey_id,
                      version_id=self.version.id, contact_id=self.contact.id, entry_key=entry_key,
                      rotation=rotation, status="active", step=None, loops={}, visits=0,
                      entered_at=self.now, updated_at=self.now)
        inst = self.batch.new_row(Instance, values)
        if self.known is not None:
            self.known.append(inst)
        self.instance = inst
        self._log(inst, "entered", "", firing, branch=firing.intent["starting_point"])
        if not firing.intent.get("to"):
            self._finish(inst, "completed", "no first step")

    def _action(self, inst: Instance, firing: Firing) -> None:
        intent = firing.intent
        step = self.version.journey.step(intent["step"])
        assert isinstance(step, m.ActionStep)
        self._arrive(inst, step.id)
        key = self._idempotency_key(inst, step)
        row = {
            "tenant_id": inst.tenant_id, "instance_id": inst.id, "contact_id": self.contact.id,
            "step": step.id, "idempotency_key": key, "action": step.action, "params": step.params,
            "status": "pending", "attempts": 0, "next_attempt_at": self.now, "last_error": "",
            "result": {}, "created_at": self.now, "lane": lane_of(inst.tenant_id, step.action, step.params),
        }
        detail = self._log(inst, "action", step.id, firing, extra={"action": step.action, "key": key})
        self.batch.queue_outbox(row, detail)  # one insert per batch; it fills in "queued"
        self._move_on(inst, intent.get("to"))

    def _goto(self, inst: Instance, firing: Firing) -> None:
        intent = firing.intent
        self._leave_hold(inst, intent["step"])
        self._log(inst, "branch", intent["step"], firing, branch=intent.get("branch", ""))
        self._move_on(inst, intent.get("to"))

    def _jump(self, inst: Instance, firing: Firing) -> None:
        step_id = firing.intent["step"]
        loops = dict(inst.loops or {})
        loops[step_id] = int(loops.get(step_id, 0)) + 1
        inst.loops = loops
        self._goto(inst, firing)

    def _hold(self, inst: Instance, firing: Firing) -> None:
        step = self.version.journey.step(firing.intent["step"])
        self._arrive(inst, step.id)
        hold = self.version.compiled.holds[step.id]
        due = wake_time(step, hold, self.now, self.contact.fields or {}, self.version.journey)
        values = dict(tenant_id=inst.tenant_id, instance_id=inst.id, step=step.id, visit=inst.visits,
                      due_at=due, pending=True)
        self.batch.new_row(Wakeup, values)
        self._log(inst, "hold", step.id, firing, extra={"until": due.isoformat()})

    def _exit(self, inst: Instance, firing: Firing) -> None:
        self._cancel_wakeups(inst)
        self._log(inst, "exit", firing.intent.get("step", inst.step or ""), firing)
        self._finish(inst, "exited", firing.intent.get("reason", "exit"))

    def _goal(self, inst: Instance, firing: Firing) -> None:
        self._cancel_wakeups(inst)
        self._log(inst, "goal", inst.step or "", firing, branch=firing.intent["goal"])
        if firing.intent.get("to") is None:
            self._finish(inst, "completed", f"goal {firing.intent['goal']}")

    # --- state ------------------------------------------------------------------------
    def _arrive(self, inst: Instance, step_id: str) -> None:
        inst.step = step_id
        inst.visits += 1
        inst.updated_at = self.now

    def _move_on(self, inst: Instance, target: str | None) -> None:
        if target is None:
            self._finish(inst, "completed", "reached the end")
        else:
            inst.step = target
            inst.updated_at = self.now

    def _leave_hold(self, inst: Instance, step_id: str) -> None:
        if isinstance(self.version.journey.step(step_id), m.HOLDING_STEPS):
            self._cancel_wakeups(inst)

    def _cancel_wakeups(self, inst: Instance) -> None:
        self.batch.cancel_wakeups(inst.id)  # one UPDATE for the whole batch

    def _finish(self, inst: Instance, status: str, outcome: str) -> None:
        inst.status = status
        inst.outcome = outcome
        inst.ended_at = self.now
        inst.updated_at = self.now
        self._add_log(dict(tenant_id=inst.tenant_id, journey_id=inst.journey_id, instance_id=inst.id,
                           at=self.now, step=inst.step or "", kind="done", branch=status,
                           detail={"outcome": outcome}))

    def _idempotency_key(self, inst: Instance, step: m.ActionStep) -> str:
        """Once per contact unless the element may run multiple times (then per visit)."""
        if step.run_multiple_times:
            return f"i{inst.id}:{step.id}:{inst.visits}"
        return f"j{inst.journey_id}:c{self.contact.id}:{inst.entry_key}:{step.id}"

    def _log(self, inst: Instance, kind: str, step: str, firing: Firing, *, branch: str = "",
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """A log row per firing; the facts only on the decision's first one (the rest of the
        chain saw the same facts, and readers carry them forward: ``services.queries.timeline``)."""
        detail: dict[str, Any] = {"rule": firing.rule, "why": firing.intent.get("why", "")}
        if not self._facts_logged:
            detail["facts"] = self._seen
            self._facts_logged = True
        detail.update(extra or {})
        self._add_log(dict(tenant_id=inst.tenant_id, journey_id=inst.journey_id, instance_id=inst.id,
                           at=self.now, step=step, kind=kind, branch=branch, detail=detail))
        return detail  # the caller may still complete it: it is written when the batch ends

    def _add_log(self, row: dict[str, Any]) -> None:
        self.batch.queue_log(row)  # one insert per batch


def _facts(message: dict[str, Any]) -> dict[str, Any]:
    """What the rule saw, minus bookkeeping: shown in the contact's timeline. Runs once per
    decision, so the layout ``facts.contact_facts`` builds is walked directly: only text
    fields carry type prefixes, only the lists carry sentinels, the other groups hold
    numbers and booleans as they are shown; anything else takes the general route."""
    out: dict[str, Any] = {}
    for key, value in (message.get("contact") or {}).items():
        if key == "f":
            value = {name: decode_value(v) for name, v in value.items()}
        elif key in _AS_IS:
            pass
        elif isinstance(value, list):
            value = [i for i in value if i != ""]
        else:
            value = _shown(value)
        if value:
            out[key] = value
    if message.get("type"):
        out["event"] = {"type": message["type"], "key": message.get("key", ""),
                        **_shown(message.get("event") or {})}
    return out


_AS_IS = frozenset({"d", "n", "act", "x"})  # epoch seconds, numbers, activity stamps, booleans


def _shown(value: Any) -> Any:
    """Facts as a person reads them: no list sentinels, no type prefixes."""
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [i for i in value if i != ""]
    return decode_value(value)
