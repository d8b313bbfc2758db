"""Date-based starting points: a due-time index of (journey version, starting point, contact).

Each contact with a usable date gets one ``DateSchedule`` row per date starting point,
holding the next instant it is due: the date (yearly types: this year's anniversary; a
29 February falls on 28 February in other years), moved by ``offset_days``, at ``time``
in the contact's time zone (else the journey's), via zoneinfo so daylight-saving changes
move the UTC instant, not the local time. Rows are written when a journey is published
and when a contact's date field or time zone changes; the worker reads only the rows that
are due, ingests a ``date_due`` event addressed to the journey, and moves yearly rows on
to next year (``once`` rows never fire again). Nothing scans every contact every day.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crm_journeys.definition import model as m
from crm_journeys.definition.triggers import TriggerType, trigger_type
from crm_journeys.runtime.identity import contact_ident
from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.runtime.schedule import zone_for
from crm_journeys.storage.journey_models import DateSchedule
from crm_journeys.storage.models import Contact, Journey, JourneyVersion

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime
    from crm_journeys.runtime.versions import LoadedVersion

ROUTE_PREFIX = "date>"  # aux route: "date>birthday" -> versions reading that field
FIXED = "*"  # aux route key part of a fixed-date starting point (every contact)


# --- the calendar -------------------------------------------------------------------------

def date_starting_points(journey: m.Journey) -> list[tuple[m.StartingPoint, TriggerType]]:
    return [(sp, tt) for sp in journey.starting_points if (tt := trigger_type(sp.type)).schedule]


def field_of(sp: m.StartingPoint, tt: TriggerType) -> str | None:
    """The contact date field a starting point reads; ``None`` for a fixed date."""
    if sp.params.get("date"):
        return None
    if tt.name == "signup_anniversary" and sp.params.get("list"):
        return f"signup_date.{sp.params['list']}"  # stamped by the mirror (runtime.mirror)
    default = next((p.default for p in tt.params if p.name == "field"), None)
    return sp.params.get("field") or default


def as_date(value: Any) -> date | None:
    """The calendar date of a field value (ISO date or datetime text, date, datetime)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def anniversary(base: date, year: int) -> date:
    """``base``'s month and day in ``year``; 29 February is 28 February in other years."""
    if base.month == 2 and base.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return base.replace(year=year)


def at_local(day: date, hhmm: str, zone: ZoneInfo) -> datetime:
    """``day`` at ``hhmm`` wall-clock time in ``zone``, as a UTC instant."""
    hh, mm = (int(p) for p in hhmm.split(":")[:2])
    return datetime.combine(day, time(hh, mm), tzinfo=zone).astimezone(UTC)


def next_occurrence(sp: m.StartingPoint, tt: TriggerType, base: date, zone: ZoneInfo,
                    after: datetime) -> tuple[date, datetime] | None:
    """The first (local date, UTC instant) strictly after ``after``, or ``None``."""
    offset = timedelta(days=int(sp.params.get("offset_days") or 0))
    hhmm = sp.params.get("time") or "09:00"
    if tt.schedule == "once":
        day = base + offset
        due = at_local(day, hhmm, zone)
        return (day, due) if due > after else None
    year = after.astimezone(zone).year
    best: tuple[date, datetime] | None = None
    for y in range(year - 1, year + 3):
        if tt.name == "signup_anniversary" and y <= base.year:
            continue  # the signup day itself is not an anniversary
        day = anniversary(base, y) + offset
        due = at_local(day, hhmm, zone)
        if due > after and (best is None or due < best[1]):
            best = (day, due)
    return best


# --- writing the index --------------------------------------------------------------------

def schedule_contact(session: Session, version: LoadedVersion, sp: m.StartingPoint, contact: Contact,
                     now: datetime) -> DateSchedule | None:
    """Create or move the contact's row for one starting point; ``None`` when nothing is due."""
    tt = trigger_type(sp.type)
    name = field_of(sp, tt)
    base = as_date(sp.params.get("date")) if name is None else as_date((contact.fields or {}).get(name))
    row = session.scalar(select(DateSchedule).where(
        DateSchedule.version_id == version.id, DateSchedule.starting_point == sp.id,
        DateSchedule.contact_id == contact.id))
    if row is not None and tt.schedule == "once" and row.fired_count:
        return row  # a specific date fires once, whatever changes later
    nxt = None if base is None or contact.deleted else next_occurrence(
        sp, tt, base, zone_for(contact.fields or {}, version.journey), now)
    if nxt is None:
        if row is not None:
            row.pending = False
        return row
    day, due = nxt
    if row is None:
        row = DateSchedule(tenant_id=version.tenant_id, journey_id=version.journey_id,
                           version_id=version.id, starting_point=sp.id, contact_id=contact.id,
                           field=name or "", date=day.isoformat(), due_at=due, pending=True,
                           fired_count=0)
        session.add(row)
    else:
        row.date, row.due_at, row.pending = day.isoformat(), due, True
    return row


def route_events(journey: m.Journey) -> list[str]:
    """Aux route events of a version: which contact fields move its schedules."""
    return sorted({ROUTE_PREFIX + (field_of(sp, tt) or FIXED) for sp, tt in date_starting_points(journey)})


def on_publish(session: Session, version: LoadedVersion, now: datetime) -> int:
    """Index every contact of the tenant for the new version (once, at publish); the
    journey's older versions stop firing. Returns the rows written."""
    session.execute(update(DateSchedule).where(DateSchedule.journey_id == version.journey_id,
                                               DateSchedule.version_id != version.id)
                    .values(pending=False))
    points = date_starting_points(version.journey)
    if not points:
        return 0
    written = 0
    contacts = session.scalars(select(Contact).where(Contact.tenant_id == version.tenant_id,
                                                     Contact.deleted.is_(False))
                               .order_by(Contact.id).execution_options(yield_per=500))
    for contact in contacts:
        for sp, _ in points:
            if schedule_contact(session, version, sp, contact, now) is not None:
                written += 1
    return written


def on_contact_change(session: Session, versions: list[LoadedVersion], contact: Contact,
                      changed: set[str], now: datetime) -> None:
    """Re-index the contact for the versions whose date fields (or its zone) changed."""
    for version in versions:
        for sp, tt in date_starting_points(version.journey):
            name = field_of(sp, tt)
            if "time_zone" in changed or "*" in changed or (name or FIXED) in changed:
                schedule_contact(session, version, sp, contact, now)


# --- firing -------------------------------------------------------------------------------

def fire_due_dates(runtime: Runtime, limit: int = 500) -> int:
    """Ingest a ``date_due`` event for every due row (up to ``limit``); move yearly rows on."""
    now = runtime.clock.now()
    with runtime.db.unit_of_work() as session:
        stmt = (select(DateSchedule).where(DateSchedule.pending.is_(True), DateSchedule.due_at <= now)
                .order_by(DateSchedule.due_at, DateSchedule.id).limit(limit))
        if runtime.db.is_postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(session.scalars(stmt))
        for row in rows:
            _fire(runtime, session, row, now)
        return len(rows)


def _fire(runtime: Runtime, session: Session, row: DateSchedule, now: datetime) -> None:
    journey = session.get(Journey, row.journey_id)
    version_row = session.get(JourneyVersion, row.version_id)
    contact = session.get(Contact, row.contact_id)
    live = journey is not None and journey.status == "live" and version_row is not None and version_row.active
    if contact is not None and not contact.deleted and live:
        ingest(session, row.tenant_id, IncomingEvent(
            type="date_due", key=str(row.journey_id), contact=contact_ident(contact),
            properties={"journey": str(row.journey_id), "starting_point": row.starting_point,
                        "field": row.field, "date": row.date},
            occurred_at=row.due_at, dedup_key=f"date:{row.id}:{row.date}"), now)
        row.fired_count += 1
        row.last_fired_at = now
    version = runtime.versions.get(session, row.version_id) if version_row is not None else None
    sp = next((s for s in version.journey.starting_points if s.id == row.starting_point), None) \
        if version is not None else None
    if version is None or sp is None or contact is None or trigger_type(sp.type).schedule == "once" \
            or not live:
        row.pending = False
        return
    tt = trigger_type(sp.type)
    name = field_of(sp, tt)
    base = as_date(sp.params.get("date")) if name is None else as_date((contact.fields or {}).get(name))
    nxt = None if base is None else next_occurrence(sp, tt, base, zone_for(contact.fields or {},
                                                                         version.journey), row.due_at)
    if nxt is None:
        row.pending = False
    else:
        row.date, row.due_at = nxt[0].isoformat(), nxt[1]


def next_due_at(session: Session) -> datetime | None:
    from sqlalchemy import func

    return session.scalar(select(func.min(DateSchedule.due_at)).where(DateSchedule.pending.is_(True)))
