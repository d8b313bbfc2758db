"""Saved segments: named, reusable filters whose membership lives in ``Contact.segments``.

Membership is maintained incrementally: when one contact changes, only that contact is
evaluated against the tenant's segments (``definition.conditions.evaluate``, the
reference evaluator), and joins and leaves become ``segment_joined`` / ``segment_left``
signals in the same dispatch pass. A full rebuild runs only when a segment is created or
its condition edited. Segments are addressed by name (``in_segment`` / ``joined_segment``).

A segment-based journey lets every current member enter at publish: one
``segment_joined`` event per member with ``existing: true`` and the journey's id, which
the compiler admits only into that journey.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.definition.conditions import evaluate
from crm_journeys.definition.schema import flatten_errors, parse_condition
from crm_journeys.errors import DefinitionError, NotFound
from crm_journeys.runtime.identity import contact_ident
from crm_journeys.runtime.ingest import IncomingEvent, ingest_many
from crm_journeys.runtime.mirror import Signal, readable_fields
from crm_journeys.storage.journey_models import Segment
from crm_journeys.storage.models import Contact


def contact_facts(contact: Contact, now: datetime, segments: list[str] | None = None) -> dict[str, Any]:
    """The reference evaluator's facts for a mirrored contact."""
    return {"fields": readable_fields(contact), "tags": contact.tags or [], "groups": contact.groups or [],
            "segments": list(contact.segments or []) if segments is None else segments,
            "activity": contact.activity or {}, "event": {}, "now": now.timestamp()}


def _parse(condition: dict[str, Any]) -> Any:
    return _parse_text(json.dumps(condition, sort_keys=True))


@lru_cache(maxsize=1024)
def _parse_text(text: str) -> Any:
    """Parsed once per distinct condition: membership checks run on every contact change."""
    try:
        return parse_condition(json.loads(text))
    except ValidationError as exc:
        raise DefinitionError(flatten_errors(exc.messages, "condition")) from None


def save_segment(session: Session, tenant_id: int, name: str, condition: dict[str, Any],
                 now: datetime) -> Segment:
    """Create or edit a segment, then rebuild its membership over the tenant's contacts."""
    name = (name or "").strip()
    if not name:
        raise DefinitionError({"name": ["a segment needs a name"]})
    _parse(condition)
    seg = session.scalar(select(Segment).where(Segment.tenant_id == tenant_id, Segment.name == name))
    if seg is None:
        seg = Segment(tenant_id=tenant_id, name=name, condition=condition, member_count=0,
                      created_at=now, updated_at=now)
        session.add(seg)
    else:
        seg.condition, seg.updated_at = condition, now
    session.flush()
    rebuild(session, seg, now)
    return seg


def delete_segment(session: Session, tenant_id: int, name: str) -> None:
    seg = session.scalar(select(Segment).where(Segment.tenant_id == tenant_id, Segment.name == name))
    if seg is None:
        raise NotFound(f"no segment {name!r}")
    for contact in _contacts(session, tenant_id):
        if name in (contact.segments or []):
            contact.segments = [s for s in contact.segments if s != name]
    session.delete(seg)


def rebuild(session: Session, seg: Segment, now: datetime) -> int:
    """Evaluate every contact of the tenant against one segment; returns the member count."""
    cond = _parse(seg.condition)
    count = 0
    for contact in _contacts(session, seg.tenant_id):
        current = list(contact.segments or [])
        member = not contact.deleted and evaluate(cond, contact_facts(contact, now))
        if member != (seg.name in current):
            contact.segments = current + [seg.name] if member else [s for s in current if s != seg.name]
        count += member
    seg.member_count = count
    return count


def update_membership(contact: Contact, now: datetime, segments: list[Segment]) -> list[Signal]:
    """Re-evaluate one changed contact against its tenant's ``segments`` (the batch read
    them); the signals implied."""
    if not segments:
        return []
    before = list(contact.segments or [])
    after = [s for s in before if s not in {seg.name for seg in segments}]  # unknown names stay
    signals: list[Signal] = []
    for seg in segments:
        member = not contact.deleted and evaluate(_parse(seg.condition), contact_facts(contact, now, after))
        if member:
            after.append(seg.name)
        if member and seg.name not in before:
            seg.member_count += 1
            signals.append(Signal("segment_joined", seg.name, {"segment": seg.name, "existing": False}))
        elif not member and seg.name in before:
            seg.member_count = max(0, seg.member_count - 1)
            signals.append(Signal("segment_left", seg.name, {"segment": seg.name}))
    if sorted(after) != sorted(before):
        contact.segments = after
    return signals


def members(session: Session, tenant_id: int, name: str) -> list[Contact]:
    return [c for c in _contacts(session, tenant_id) if name in (c.segments or [])]


def enter_current_members(session: Session, tenant_id: int, journey_id: int, version_id: int,
                          name: str, now: datetime) -> int:
    """At publish: one ``segment_joined`` (``existing``) per current member, for one journey."""
    events = [IncomingEvent(type="segment_joined", key=name, contact=contact_ident(c),
                            properties={"segment": name, "existing": True, "journey": str(journey_id)},
                            dedup_key=f"segment:{version_id}:{name}:{c.id}")
              for c in members(session, tenant_id, name)]
    return ingest_many(session, tenant_id, events, now)


def _contacts(session: Session, tenant_id: int) -> Any:
    return session.scalars(select(Contact).where(Contact.tenant_id == tenant_id, Contact.deleted.is_(False))
                           .order_by(Contact.id).execution_options(yield_per=500))
