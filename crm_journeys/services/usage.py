"""Which journeys name a saved segment or a custom trigger, so the setup pages can say
where each is used and a delete can be refused while a published journey depends on it.

A journey names a segment through a starting point whose parameter picks segments
(``joined_segment``), an ``in_segment`` / ``not_in_segment`` test in any condition, or a
``segment_joined`` / ``segment_left`` event (goals, exit rules, react-to-event steps); a
custom trigger through the ``custom_trigger`` starting point or event. Read-only; the
two refusals the setup writes share live here too (the pages' delete handler is in
``web.ui.deletes``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.definition.triggers import CATALOG
from crm_journeys.errors import CrmJourneysError
from crm_journeys.storage.models import Journey, JourneyVersion

Kind = Literal["segment", "custom_trigger"]
PUBLISHED = ("live", "paused")
_PICKER = {"segment": "segments", "custom_trigger": "custom_triggers"}
_EVENTS = {"segment": ("segment_joined", "segment_left"), "custom_trigger": ("custom_trigger",)}


@dataclass(frozen=True)
class Use:
    """One journey naming the thing; ``published`` when its live version does (not just the draft)."""

    journey_id: int
    name: str
    status: str
    published: bool

    def label(self) -> str:
        return f"“{self.name}” (#{self.journey_id}, {self.status})"


class NameTaken(CrmJourneysError):
    """Another segment (or custom trigger) of the tenant already has this name."""


class InUse(CrmJourneysError):
    """Published journeys depend on it; ``journeys`` says which."""

    def __init__(self, what: str, journeys: list[Use]):
        names = ", ".join(u.label() for u in journeys)
        super().__init__(f"{what} is used by published journeys: {names}. "
                         "Take it out of them (or archive them) first.")
        self.journeys = journeys


def names_in(document: Any, kind: Kind) -> set[str]:
    """Every segment (or custom trigger) name a journey document refers to."""
    out: set[str] = set()
    for node in _dicts(document):
        type_ = node.get("type")
        if kind == "segment" and node.get("op") in ("in_segment", "not_in_segment"):
            out |= _text(node.get("value"))
        if type_ in _EVENTS[kind]:
            out |= _text(node.get("key"))
        params = node.get("params")
        if isinstance(type_, str) and type_ in CATALOG and isinstance(params, dict):
            for param in CATALOG[type_].params:
                if param.picker == _PICKER[kind]:
                    out |= _text(params.get(param.name))
    return out


def uses_by_name(s: Session, tenant_id: int, kind: Kind) -> dict[str, list[Use]]:
    """name -> the tenant's journeys (not archived) naming it, in journey order."""
    journeys = list(s.scalars(select(Journey).where(Journey.tenant_id == tenant_id, Journey.status != "archived")
                              .order_by(Journey.id)))
    live_ids = [j.live_version_id for j in journeys if j.live_version_id and j.status in PUBLISHED]
    live: dict[int, dict[str, Any]] = {}
    if live_ids:
        rows = s.execute(select(JourneyVersion.id, JourneyVersion.document).where(
            JourneyVersion.tenant_id == tenant_id, JourneyVersion.id.in_(live_ids)))
        live = {version_id: document for version_id, document in rows}
    out: dict[str, list[Use]] = defaultdict(list)
    for journey in journeys:
        published = names_in(live.get(journey.live_version_id or -1), kind)
        for name in sorted(published | names_in(journey.draft, kind)):
            out[name].append(Use(journey.id, journey.name, journey.status, name in published))
    return dict(out)


def uses(s: Session, tenant_id: int, kind: Kind, name: str) -> list[Use]:
    return uses_by_name(s, tenant_id, kind).get(name, [])


def _dicts(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _dicts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dicts(item)


def _text(value: Any) -> set[str]:
    return {value} if isinstance(value, str) and value else set()

