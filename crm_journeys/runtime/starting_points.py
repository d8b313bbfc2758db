"""The runtime side of starting points, plugged into dispatch, publish and the worker.

* ``observe`` runs in the dispatch pass right after the contact mirror is updated: it
  keeps segment membership current (adding ``segment_joined``/``segment_left`` signals),
  re-indexes the contact's date schedules when a date field or its time zone changed,
  cancels lapses the event answers and arms the ones it starts.
* ``on_publish`` / ``on_status`` write the aux routes (``date>field``, ``lapse>event``)
  next to the entry routes, index date schedules, and let current segment members enter.
* ``fire_due`` is the worker's call for due date schedules and lapses; ``next_due``
  tells a sleeping worker (or a virtual clock) when the next one is.
* ``add_contacts_to_journey`` is the manual add (one contact, a list, or a segment).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.definition import model as m
from crm_journeys.definition.triggers import CATALOG
from crm_journeys.errors import DefinitionError
from crm_journeys.runtime import dates, lapses, segments
from crm_journeys.runtime.identity import contact_ident
from crm_journeys.runtime.ingest import IncomingEvent, ingest_many
from crm_journeys.storage.models import Contact, InboxEvent, Journey, JourneyVersion, Route

if TYPE_CHECKING:
    from crm_journeys.rules.compiler import CompiledJourney
    from crm_journeys.runtime.batch import BatchCache
    from crm_journeys.runtime.mirror import Change
    from crm_journeys.runtime.services import Runtime
    from crm_journeys.runtime.versions import LoadedVersion


# --- dispatch ---------------------------------------------------------------------------

def observe(runtime: Runtime, session: Session, contact: Contact, event: InboxEvent, change: Change,
            now: datetime, batch: BatchCache) -> None:
    """Everything a starting point derives from one event, in the same transaction; the
    tenant's segments and aux routes come from the batch's reads."""
    created = any(s.type == "contact_created" or s.props.get("op") == "created" for s in change.signals)
    if change.updated or created:
        joined_left = segments.update_membership(contact, now, batch.segments(contact.tenant_id))
        if joined_left:
            change.signals.extend(joined_left)
            change.updated = True
    changed = {s.key for s in change.signals if s.type == "field_changed"}
    if created:
        changed |= set(contact.fields or {}) | {"*"}
    if changed:
        names: list[str] | None = [dates.ROUTE_PREFIX + f for f in changed] + [dates.ROUTE_PREFIX + dates.FIXED]
        if "time_zone" in changed:
            names = None  # every date schedule of the contact moves
        dates.on_contact_change(session, _versions(runtime, session, batch, contact.tenant_id, names, None,
                                                   prefix=dates.ROUTE_PREFIX),
                                contact, changed, now)
    for signal in list(change.signals):
        lapses.cancel(session, contact, signal)
        if signal.type in _LAPSE_SOURCES:
            found = _versions(runtime, session, batch, contact.tenant_id, [lapses.ROUTE_PREFIX + signal.type],
                              signal.key)
            if found:
                lapses.arm(session, found, contact, signal, now, event.occurred_at)


_LAPSE_SOURCES = {tt.lapse.source for tt in CATALOG.values() if tt.lapse}


def _versions(runtime: Runtime, session: Session, batch: BatchCache, tenant_id: int, events: list[str] | None,
              key: str | None, prefix: str = "") -> list[LoadedVersion]:
    """Active versions holding one of the aux route ``events`` (all with ``prefix`` when None)."""
    return [runtime.versions.get(session, vid) for vid in sorted(batch.aux_versions(tenant_id, events, key, prefix))]


# --- publish and status -----------------------------------------------------------------

def _loaded(journey: Journey, version: JourneyVersion, model: m.Journey, compiled: CompiledJourney) -> LoadedVersion:
    from crm_journeys.runtime.versions import LoadedVersion

    return LoadedVersion(version.id, journey.id, journey.tenant_id, version.version, model, compiled)


def write_aux_routes(session: Session, journey: Journey, version: JourneyVersion, model: m.Journey) -> None:
    """Routes that are not entries: which versions read a date field or arm a lapse."""
    if journey.status != "live":
        return
    pairs = [(e, "*") for e in dates.route_events(model)] + lapses.route_pairs(model)
    for event, key in pairs:
        session.add(Route(tenant_id=journey.tenant_id, event=event, key=key, version_id=version.id))


def on_publish(session: Session, journey: Journey, version: JourneyVersion, model: m.Journey,
               compiled: CompiledJourney, now: datetime) -> None:
    write_aux_routes(session, journey, version, model)
    loaded = _loaded(journey, version, model, compiled)
    dates.on_publish(session, loaded, now)
    for sp in model.starting_points:
        if sp.type == "joined_segment" and sp.params.get("existing_members", True):
            segments.enter_current_members(session, journey.tenant_id, journey.id, version.id,
                                           str(sp.params["segment"]), now)


def on_status(session: Session, journey: Journey, version: JourneyVersion, now: datetime) -> None:
    """After pause / resume / archive: aux routes follow; a resumed journey is re-indexed."""
    from crm_journeys.runtime.versions import compiled_of, validate

    model = validate(version.document)
    write_aux_routes(session, journey, version, model)
    if journey.status == "live":
        dates.on_publish(session, _loaded(journey, version, model, compiled_of(version, model)), now)


# --- worker -----------------------------------------------------------------------------

def fire_due(runtime: Runtime, limit: int = 500) -> int:
    """Due date schedules and lapses become inbox events; returns how many were taken."""
    return dates.fire_due_dates(runtime, limit) + lapses.fire_due_lapses(runtime, limit)


def next_due(session: Session) -> datetime | None:
    found = [t for t in (dates.next_due_at(session), lapses.next_due_at(session)) if t is not None]
    return min(found, default=None)


# --- manual add -------------------------------------------------------------------------

def add_contacts_to_journey(session: Session, tenant_id: int, journey_id: int, now: datetime, *,
                            emails: list[str] | None = None, segment: str | None = None,
                            added_by: str = "") -> int:
    """Add one contact, a list of addresses, or a saved segment's members by hand.

    Ingests one ``manual_add`` event per contact addressed to the journey (it must be live
    and have a manual-add starting point); returns how many were queued.
    """
    journey = session.scalar(select(Journey).where(Journey.tenant_id == tenant_id, Journey.id == journey_id))
    if journey is None or journey.status != "live" or journey.live_version_id is None:
        raise DefinitionError({"journey": ["publish the journey (and keep it live) before adding contacts"]})
    version = session.get(JourneyVersion, journey.live_version_id)
    assert version is not None
    if not any(sp.get("type") == "manual_add" for sp in version.document.get("starting_points") or []):
        raise DefinitionError({"journey": ["the journey has no 'Added by hand' starting point"]})
    if bool(emails) == bool(segment):
        raise DefinitionError({"contacts": ["give either a list of email addresses or a segment"]})
    idents: list[dict[str, Any]]
    if segment:
        idents = [contact_ident(c) for c in segments.members(session, tenant_id, segment)]
    else:
        bad = [e for e in emails or [] if "@" not in str(e)]
        if bad:
            raise DefinitionError({"emails": [f"not an email address: {', '.join(map(str, bad))}"]})
        wanted = list(dict.fromkeys(str(e).strip().lower() for e in emails or []))
        known = {c.email: c for c in session.scalars(select(Contact).where(
            Contact.tenant_id == tenant_id, Contact.email.in_(wanted)))}
        idents = [contact_ident(known[e]) if e in known else {"email": e} for e in wanted]
    stamp = now.isoformat()
    events = [IncomingEvent(type="manual_add", key=str(journey_id), contact=ident,
                            properties={"journey": str(journey_id), "added_by": added_by},
                            dedup_key=f"manual:{journey_id}:{ident.get('id') or ident.get('email')}:{stamp}")
              for ident in idents]
    return ingest_many(session, tenant_id, events, now)
