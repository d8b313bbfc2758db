"""Builds the message the rules engine sees: only the facts the journey reads.

Layout (addressed by ``rules.lowering``): ``contact.f`` values, ``contact.d`` dates as
epoch seconds, ``contact.tags|groups|segments`` (only the ones the journey names),
``contact.act.<kind>.<email>``, ``contact.x.<test>`` text-test booleans, ``event``,
``inst``, ``hist``, ``dice`` (per random split) and ``now``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from crm_journeys.definition.conditions import evaluate
from crm_journeys.definition.dates import is_number as _is_number
from crm_journeys.definition.dates import to_epoch
from crm_journeys.definition.model import Leaf
from crm_journeys.rules.lowering import FactNeeds, encode_value
from crm_journeys.runtime.mirror import readable_fields
from crm_journeys.storage.models import Contact, Instance


def contact_facts(contact: Contact, needs: FactNeeds, event: dict[str, Any]) -> dict[str, Any]:
    """The contact's part of a message: only the groups of facts the journey reads (a rule
    reads nothing else, and the timeline shows no empty group), each only with the facts
    it names."""
    facts: dict[str, Any] = {}
    fields = readable_fields(contact)
    if needs.fields:
        facts["f"] = {k: _scalar(fields[k]) for k in needs.fields if fields.get(k) is not None}
    if needs.date_fields:
        facts["d"] = {k: e for k in needs.date_fields if (e := to_epoch(fields.get(k))) is not None}
    if needs.number_fields:
        facts["n"] = {k: fields[k] for k in needs.number_fields if _is_number(fields.get(k))}
    # Each list opens with a "" sentinel: durable_rules' all-items test is false on an
    # empty list, and "has no tag X" must be true for a contact with no tags at all.
    if needs.tags:
        facts["tags"] = ["", *(t for t in contact.tags or [] if t in needs.tags)]
    if needs.groups:
        facts["groups"] = ["", *(g for g in contact.groups or [] if g in needs.groups)]
    if needs.segments:
        facts["segments"] = ["", *(s for s in contact.segments or [] if s in needs.segments)]
    if needs.activity:
        facts["act"] = _activity(contact.activity or {}, needs)
    if needs.text_tests:
        facts["x"] = {tid: text_test(path, op, value, fields, event)
                      for tid, (path, op, value) in needs.text_tests.items()}
    return facts


def message(kind: str, *, contact: Contact, needs: FactNeeds, now: datetime,
            event_type: str = "", key: str = "", props: dict[str, Any] | None = None,
            instance: Instance | None = None, hist: dict[str, Any] | None = None,
            journey_id: int = 0) -> dict[str, Any]:
    """One engine message for ``kind`` in trigger | event | update | timer | arrive."""
    props = props or {}
    msg: dict[str, Any] = {
        "kind": kind, "type": event_type, "key": key, "now": now.timestamp(),
        "event": {k: _event_value(v) for k, v in props.items()},
        "contact": contact_facts(contact, needs, props),
        "hist": hist or {"entries": 0, "active": 0, "since_entry": 0},
    }
    if instance is not None:
        msg["inst"] = {"step": instance.step or "",
                       "loops": {s: int((instance.loops or {}).get(s, 0)) for s in needs.jump_steps},
                       "entry_key": _event_value(instance.entry_key or "")}
    else:
        msg["inst"] = {"step": "", "loops": {s: 0 for s in needs.jump_steps}, "entry_key": ""}
    msg["dice"] = {s: dice(journey_id, contact.id, s) for s in needs.random_steps}
    return msg


def dice(journey_id: int, contact_id: int, step_id: str) -> int:
    """A stable 0..99 draw per contact and step: the same contact always takes the same path."""
    digest = hashlib.blake2b(f"{journey_id}:{contact_id}:{step_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def text_test(path: str, op: str, value: Any, fields: dict[str, Any], event: dict[str, Any]) -> bool:
    """contains / not_contains / starts_with, decided by the reference evaluator itself, so
    the derived boolean means exactly what the condition language defines."""
    return evaluate(Leaf(op=op, field=path, value=value), {"fields": fields, "event": event})


def _activity(activity: dict[str, Any], needs: FactNeeds) -> dict[str, Any]:
    out: dict[str, dict[str, float]] = {}
    for kind, email in needs.activity:
        stamp = (activity.get(kind) or {}).get(email)
        if stamp is not None:
            out.setdefault(kind, {})[email] = float(stamp)
    return out


def _scalar(value: Any) -> Any:
    if isinstance(value, dict | list):
        return str(value)
    return encode_value(value)


def _event_value(value: Any) -> Any:
    """Event properties as the rules read them: ISO dates become epoch seconds, nested
    records are walked, scalars are typed like contact fields."""
    if isinstance(value, dict):
        return {k: _event_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return value
    if isinstance(value, str) and len(value) >= 10 and value[4:5] == "-" and value[7:8] == "-":
        epoch = to_epoch(value)
        if epoch is not None:
            return epoch
    return encode_value(value)
