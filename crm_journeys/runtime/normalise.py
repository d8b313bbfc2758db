"""One way to turn what a sender wrote into an inbox event: the events API and
``simulate`` both call ``normalise``, so a line of an events file and the same body posted
to ``POST /api/events`` become the very same event (type, routing key, contact reference,
time) and a journey tried in ``simulate`` behaves as it will live.

The routing key is the one the catalogue names for the type (``tag`` for ``tag_added``):
given explicitly it wins, otherwise it is read from the properties, and the property is
filled from the key when only the key was given, so ``event.tag`` reads the same either way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crm_journeys.definition.dates import parse_datetime
from crm_journeys.definition.triggers import CANONICAL_EVENTS, RECORD_EVENTS
from crm_journeys.runtime.ingest import IncomingEvent

ACCEPTED_TYPES = frozenset(CANONICAL_EVENTS) | frozenset(RECORD_EVENTS)
# what may name a new contact's first fields (the events API's schema admits email and id only)
NEW_CONTACT_KEYS = ("email", "first_name", "last_name", "phone", "language", "time_zone", "birthday")
CONTACT_KEYS = ("id", "external_id", *NEW_CONTACT_KEYS)


class EventError(ValueError):
    """An event that cannot be accepted: ``errors`` maps the field to its reasons."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()))
        self.errors = errors


def normalise(*, type_: str | None, contact: dict[str, Any], properties: dict[str, Any] | None = None,
              key: str | None = None, name: str | None = None, occurred_at: Any = None,
              event_id: str | None = None, id_prefix: str = "api:") -> IncomingEvent:
    """The inbox event for one sent event.

    ``name`` makes a custom event (type ``custom_event``, keyed by the name); otherwise
    ``type_`` must be an accepted type. ``contact`` names the contact by ``id`` (the host's)
    and/or ``email``. ``occurred_at`` is an aware datetime or ISO text (a time without a
    zone is UTC); ``None`` means "when it is received".

    Raises:
        EventError: unknown type, no contact, or a time that is not a time.
    """
    props = dict(properties or {})
    if name:
        type_, key = "custom_event", name
        props["name"] = name
    elif not type_ or type_ not in ACCEPTED_TYPES:
        raise EventError({"type": [f"unknown event type {type_!r}; see GET /api/catalog "
                                   "(events and record_events)"]})
    else:
        key = routing_key(type_, key, props)
    ident = {k: str(v).strip() for k, v in (contact or {}).items() if k in CONTACT_KEYS and v not in (None, "")}
    if "email" in ident:
        ident["email"] = ident["email"].lower()
    if not ident.get("id") and not ident.get("external_id") and not ident.get("email"):
        raise EventError({"contact": ["identify the contact by email or id"]})
    return IncomingEvent(type=type_, contact=ident, key=key or "", properties=props,
                         occurred_at=event_time(occurred_at),
                         dedup_key=f"{id_prefix}{event_id}" if event_id else None)


def routing_key(type_: str, key: str | None, props: dict[str, Any]) -> str:
    """The event's routing key; the keyed property is filled in from ``key`` when missing."""
    spec = CANONICAL_EVENTS.get(type_)
    prop = spec.key if spec is not None else None
    if key not in (None, ""):
        if prop and props.get(prop) in (None, ""):
            props[prop] = key
        return str(key)
    if prop and props.get(prop) not in (None, ""):
        return str(props[prop])
    return ""


def event_time(value: Any) -> datetime | None:
    """An aware UTC datetime from a datetime or ISO text; ``None`` stays ``None``."""
    if value in (None, ""):
        return None
    at = parse_datetime(value)
    if at is None:
        raise EventError({"occurred_at": [f"not an ISO 8601 date and time: {value!r}"]})
    return at.astimezone(UTC)
