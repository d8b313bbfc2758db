"""Lapse starting points: "nothing happened within N" as rows with a due time.

A starting point whose type has a ``Lapse`` (email not opened / no link clicked within a
period, time since last purchase, abandoned cart) is armed by its ``source`` event: one
``LapseTimer`` row per (journey version, starting point, contact, correlate value), a
new source event for the same correlate value re-arming it (a cart changed again waits
its idle time afresh). A ``cancel`` event carrying the same correlate value (the email
id, the cart id; purchases also complete carts) cancels it. When a row comes due the
worker ingests the trigger's own event (``email_not_opened``, ``cart_abandoned``, ...)
addressed to the journey, carrying the source event's properties.

Which versions listen for a source event is found through aux routes
(``lapse>email_sent``) in ``cj_route``, so arming stays an indexed lookup.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_journeys.definition import model as m
from crm_journeys.definition.durations import parse_duration
from crm_journeys.definition.triggers import CATALOG, TriggerType, trigger_type
from crm_journeys.runtime.identity import contact_ident
from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.storage.journey_models import LapseTimer
from crm_journeys.storage.models import Contact, Journey, JourneyVersion

if TYPE_CHECKING:
    from crm_journeys.runtime.mirror import Signal
    from crm_journeys.runtime.services import Runtime
    from crm_journeys.runtime.versions import LoadedVersion

ROUTE_PREFIX = "lapse>"
ORDER_DONE = ("order_confirmed", "purchase")  # either completes the cart it names


def _cancels(tt: TriggerType) -> tuple[str, ...]:
    assert tt.lapse is not None
    if tt.entry_key == "cart_id":
        return ORDER_DONE
    return (tt.lapse.cancel,)


# incoming event type -> stored ``cancel_event`` values it cancels
CANCELLED_BY: dict[str, set[str]] = {}
for _tt in CATALOG.values():
    if _tt.lapse is not None:
        for _ev in _cancels(_tt):
            CANCELLED_BY.setdefault(_ev, set()).add(_tt.lapse.cancel)


def lapse_starting_points(journey: m.Journey) -> list[tuple[m.StartingPoint, TriggerType]]:
    return [(sp, tt) for sp in journey.starting_points if (tt := trigger_type(sp.type)).lapse]


def source_key(sp: m.StartingPoint, tt: TriggerType) -> str:
    """The routing key a source event must carry: the email for email lapses, else any."""
    return str(sp.params.get("email") or "*")


def route_pairs(journey: m.Journey) -> list[tuple[str, str]]:
    """Aux routes of a version: (``lapse>`` + source event, key)."""
    pairs = {(ROUTE_PREFIX + tt.lapse.source, source_key(sp, tt))
             for sp, tt in lapse_starting_points(journey) if tt.lapse}
    return sorted(pairs)


def _correlate(tt: TriggerType, signal: Signal) -> str:
    assert tt.lapse is not None
    if tt.lapse.correlate is None:
        return ""
    value = signal.props.get(tt.lapse.correlate)
    if value in (None, "") and tt.lapse.correlate == "email_id":
        value = signal.key  # email events are keyed by the email id
    return "" if value in (None, "") else str(value)


def cancel(session: Session, contact: Contact, signal: Signal) -> int:
    """Cancel the contact's pending lapses this event answers; returns how many."""
    stored = CANCELLED_BY.get(signal.type)
    if not stored:
        return 0
    rows = session.scalars(select(LapseTimer).where(
        LapseTimer.tenant_id == contact.tenant_id, LapseTimer.contact_id == contact.id,
        LapseTimer.cancel_event.in_(sorted(stored)), LapseTimer.status == "pending")).all()
    values = {str(v) for v in (signal.key, signal.props.get("email_id"), signal.props.get("cart_id"))
              if v not in (None, "")}
    hit = 0
    for row in rows:
        if row.correlate == "" or row.correlate in values:
            row.status = "cancelled"
            hit += 1
    return hit


def arm(session: Session, versions: list[LoadedVersion], contact: Contact, signal: Signal,
        now: datetime, occurred_at: datetime | None = None) -> int:
    """Arm (or re-arm) the lapses the source ``signal`` starts; returns rows written."""
    armed = 0
    for version in versions:
        for sp, tt in lapse_starting_points(version.journey):
            assert tt.lapse is not None
            if tt.lapse.source != signal.type or source_key(sp, tt) not in ("*", signal.key):
                continue
            if tt.name == "time_since_last_purchase" and not _after_live(session, version, occurred_at or now):
                continue  # only purchases after the journey went live count
            correlate = _correlate(tt, signal)
            for old in session.scalars(select(LapseTimer).where(
                    LapseTimer.version_id == version.id, LapseTimer.starting_point == sp.id,
                    LapseTimer.contact_id == contact.id, LapseTimer.correlate == correlate,
                    LapseTimer.status == "pending")):
                old.status = "cancelled"
            delay = parse_duration(sp.params.get(tt.lapse.delay_param) or _default(tt, tt.lapse.delay_param))
            session.add(LapseTimer(
                tenant_id=version.tenant_id, journey_id=version.journey_id, version_id=version.id,
                starting_point=sp.id, contact_id=contact.id, emit_event=tt.event,
                cancel_event=tt.lapse.cancel, correlate=correlate,
                props=_carried(tt, signal, now), armed_at=now, due_at=now + delay, status="pending"))
            armed += 1
    return armed


def _default(tt: TriggerType, name: str) -> Any:
    return next((p.default for p in tt.params if p.name == name), None)


def _after_live(session: Session, version: LoadedVersion, when: datetime) -> bool:
    first = session.scalar(select(func.min(JourneyVersion.published_at))
                           .where(JourneyVersion.journey_id == version.journey_id))
    if isinstance(first, str):
        first = datetime.fromisoformat(first)
    if first is not None and first.tzinfo is None:
        from datetime import UTC

        first = first.replace(tzinfo=UTC)
    return first is None or when >= first


def _carried(tt: TriggerType, signal: Signal, now: datetime) -> dict[str, Any]:
    """The properties the emitted event carries, per the canonical event of the type."""
    props = dict(signal.props)
    if tt.event in ("email_not_opened", "email_not_clicked"):
        return {"email_id": props.get("email_id") or signal.key, "message_id": props.get("message_id"),
                "sent_at": now.isoformat()}
    if tt.event == "purchase_lapsed":
        return {"last_order_id": props.get("order_id"), "last_purchase_at": now.isoformat()}
    keep = ("cart_id", "products", "categories", "total", "currency", "checkout_url")
    return {k: props[k] for k in keep if k in props}


def fire_due_lapses(runtime: Runtime, limit: int = 500) -> int:
    """Ingest the trigger event of every due lapse (up to ``limit``)."""
    now = runtime.clock.now()
    with runtime.db.unit_of_work() as session:
        stmt = (select(LapseTimer).where(LapseTimer.status == "pending", LapseTimer.due_at <= now)
                .order_by(LapseTimer.due_at, LapseTimer.id).limit(limit))
        if runtime.db.is_postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(session.scalars(stmt))
        for row in rows:
            _fire(session, row, now)
        return len(rows)


def _fire(session: Session, row: LapseTimer, now: datetime) -> None:
    journey = session.get(Journey, row.journey_id)
    version = session.get(JourneyVersion, row.version_id)
    contact = session.get(Contact, row.contact_id)
    if journey is None or journey.status != "live" or version is None or not version.active \
            or contact is None or contact.deleted:
        row.status = "cancelled"
        return
    props = {"journey": str(row.journey_id), **row.props}
    if row.emit_event == "cart_abandoned":
        props["idle_seconds"] = int((now - row.armed_at).total_seconds())
    ingest(session, row.tenant_id, IncomingEvent(
        type=row.emit_event, key=str(row.journey_id), contact=contact_ident(contact),
        properties=props, occurred_at=row.due_at, dedup_key=f"lapse:{row.id}"), now)
    row.status = "fired"


def next_due_at(session: Session) -> datetime | None:
    return session.scalar(select(func.min(LapseTimer.due_at)).where(LapseTimer.status == "pending"))
