"""Saved segments behind the setup page and the REST API: tenant-scoped reads, and writes
that go through ``runtime.segments`` exactly as before (a save rebuilds the segment's
membership over the tenant's contacts once; later changes keep it current incrementally).

A segment is addressed by its name inside journeys, so the name is fixed once created;
deleting one is refused while a published journey names it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, cast, exists, func, select
from sqlalchemy.orm import Session

from crm_journeys.errors import DefinitionError, NotFound
from crm_journeys.runtime.segments import delete_segment, save_segment
from crm_journeys.services.queries import total
from crm_journeys.services.usage import InUse, NameTaken, names_in, uses
from crm_journeys.storage.journey_models import Segment
from crm_journeys.storage.models import Contact

NAME_MAX = 120


def segments(s: Session, tenant_id: int, *, limit: int, offset: int = 0) -> list[Segment]:
    return list(s.scalars(select(Segment).where(Segment.tenant_id == tenant_id)
                          .order_by(Segment.name, Segment.id).limit(limit).offset(offset)))


def count_segments(s: Session, tenant_id: int) -> int:
    return total(s, select(Segment.id).where(Segment.tenant_id == tenant_id))


def segment(s: Session, tenant_id: int, segment_id: int) -> Segment:
    row = s.scalar(select(Segment).where(Segment.tenant_id == tenant_id, Segment.id == segment_id))
    if row is None:
        raise NotFound(f"no segment {segment_id}")
    return row


def segment_names(s: Session, tenant_id: int) -> list[str]:
    return list(s.scalars(select(Segment.name).where(Segment.tenant_id == tenant_id).order_by(Segment.name)))


def check(name: str, condition: Any) -> dict[str, list[str]]:
    """Plain-words errors the runtime would not give as such (the condition's own
    operators and values are checked by ``save_segment``)."""
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = ["Give the segment a name."]
    elif len(name) > NAME_MAX:
        errors["name"] = [f"Use at most {NAME_MAX} characters."]
    if not condition:
        errors["condition"] = ["Add at least one test: which contacts belong to this segment?"]
    elif name and name in names_in(condition, "segment"):
        errors["condition"] = ["A segment cannot test whether contacts are in itself."]
    return errors


def create(s: Session, tenant_id: int, name: str, condition: Any, now: datetime) -> Segment:
    """A new segment, its members found at once.

    Raises:
        DefinitionError: the name or condition is not usable (paths ``name``, ``condition...``).
        NameTaken: the tenant already has a segment with this name.
    """
    name = (name or "").strip()
    errors = check(name, condition)
    if errors:
        raise DefinitionError(errors)
    if s.scalar(select(Segment.id).where(Segment.tenant_id == tenant_id, Segment.name == name)) is not None:
        raise NameTaken(f"There is already a segment named “{name}”.")
    return save_segment(s, tenant_id, name, condition, now)


def update(s: Session, tenant_id: int, segment_id: int, condition: Any, now: datetime) -> Segment:
    """A new condition for an existing segment; its membership is rebuilt."""
    row = segment(s, tenant_id, segment_id)
    errors = check(row.name, condition)
    if errors:
        raise DefinitionError(errors)
    return save_segment(s, tenant_id, row.name, condition, now)


def delete(s: Session, tenant_id: int, segment_id: int) -> str:
    """Delete a segment no published journey names; returns its name.

    Raises:
        InUse: published journeys name it (drafts do not block: they fail to publish later).
    """
    row = segment(s, tenant_id, segment_id)
    blocking = [u for u in uses(s, tenant_id, "segment", row.name) if u.published]
    if blocking:
        raise InUse(f"The segment “{row.name}”", blocking)
    delete_segment(s, tenant_id, row.name)
    return row.name


def members(s: Session, tenant_id: int, name: str, *, limit: int, offset: int = 0) -> list[Contact]:
    """One page of the segment's current members, by contact id."""
    query = select(Contact).where(*_member_of(s, tenant_id, name)).order_by(Contact.id)
    return list(s.scalars(query.limit(limit).offset(offset)))


def count_members(s: Session, tenant_id: int, name: str) -> int:
    return total(s, select(Contact.id).where(*_member_of(s, tenant_id, name)))


def _member_of(s: Session, tenant_id: int, name: str) -> list[ColumnElement[bool]]:
    """Membership is a JSON list on the contact: matched in SQL on both databases, so a
    page reads only its own rows (PostgreSQL: jsonb containment; SQLite: json_each)."""
    base = [Contact.tenant_id == tenant_id, Contact.deleted.is_(False)]
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        return [*base, cast(Contact.segments, JSONB).contains([name])]
    items = func.json_each(Contact.segments).table_valued("value")
    return [*base, exists(select(1).select_from(items).where(items.c.value == name))]

