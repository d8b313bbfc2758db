"""Keeps the contact mirror current and derives the canonical events a change implies.

A record update from a host says "this is the contact now"; journeys want "tag VIP was
added" or "country changed to DE". Diffing against the mirror, in event order, is what
turns the first into the second, and what makes a repeated save of an unchanged record
trigger nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crm_journeys.runtime.consent import CHANNELS, fact_name
from crm_journeys.storage.models import Contact

SNAPSHOT = "contact_upserted"
DELETED = "contact_deleted"
ACTIVITY_EVENTS = {"email_sent": "sent", "email_opened": "opened", "email_clicked": "clicked"}
CONSENT_FACTS = frozenset(fact_name(c) for c in CHANNELS)
SNAPSHOT_KEYS = ("email", "first_name", "last_name", "phone", "owner", "time_zone",
                 "language", "birthday", "created_at")


@dataclass
class Signal:
    """One canonical event for routing: type, routing key, properties."""

    type: str
    key: str = ""
    props: dict[str, Any] = field(default_factory=dict)


@dataclass
class Change:
    signals: list[Signal]
    updated: bool  # facts changed: in-flight if/then steps and goals re-check


def apply_event(contact: Contact, event_type: str, key: str, props: dict[str, Any],
                now: datetime, *, created: bool) -> Change:
    """Update ``contact`` in place for one event and list the signals it implies."""
    if event_type == SNAPSHOT:
        return _apply_snapshot(contact, props, now, created=created)
    if event_type == DELETED:
        contact.deleted = True
        contact.updated_at = now
        return Change([Signal("record_changed", "contact", {"op": "deleted"})], True)
    if event_type == "fields_updated":
        return _apply_fields(contact, props.get("fields") or {}, now)
    signals = [Signal(event_type, key, props)]
    updated = False
    if event_type in ACTIVITY_EVENTS:
        _stamp_activity(contact, ACTIVITY_EVENTS[event_type], key, now)
        updated = True
    elif event_type in ("tag_added", "tag_removed"):
        updated = _set_member(contact, "tags", key, event_type == "tag_added")
        if not updated:
            signals = []  # adding a tag the contact has is not "tag added"
    elif event_type in ("subscribed", "unsubscribed") and props.get("channel") in CHANNELS:
        return _apply_consent(contact, event_type, props["channel"], now, created=created)
    elif event_type in ("group_joined", "group_left", "subscribed", "unsubscribed"):
        joined = event_type in ("group_joined", "subscribed")
        updated = _set_member(contact, "groups", key or "audience", joined)
        if event_type == "subscribed" and not updated and key:
            signals = []
    if created:
        signals.insert(0, Signal("record_changed", "contact", {"op": "created"}))
    if updated:
        contact.updated_at = now
    return Change(signals, updated)


def _apply_snapshot(contact: Contact, snap: dict[str, Any], now: datetime, *, created: bool) -> Change:
    if snap.get("version") and snap.get("version") == contact.version and not created:
        return Change([], False)  # same record version seen before: nothing new
    signals: list[Signal] = []
    new_fields = {k: snap[k] for k in SNAPSHOT_KEYS if snap.get(k) is not None}
    new_fields.update(snap.get("fields") or {})
    old_fields = dict(contact.fields or {})
    new_fields.update({k: v for k, v in old_fields.items() if k in CONSENT_FACTS})  # ours, not the host's
    for name in sorted(set(old_fields) | set(new_fields)):
        before, after = old_fields.get(name), new_fields.get(name)
        if before != after:
            signals.append(Signal("field_changed", name, {"field": name, "before": before, "after": after}))
    signals += _membership_signals(contact.tags or [], snap.get("tags") or [], "tag_added", "tag_removed")
    signals += _membership_signals(contact.groups or [], snap.get("groups") or [],
                                   "group_joined", "group_left")
    contact.fields = new_fields
    contact.tags = list(snap.get("tags") or [])
    contact.groups = list(snap.get("groups") or [])
    contact.email = snap.get("email") or contact.email
    contact.version = snap.get("version")
    contact.deleted = bool(snap.get("deleted", False))
    contact.updated_at = now
    if created:
        return Change([Signal("record_changed", "contact", {"op": "created"}),
                       Signal("contact_created", "", {})] + signals, True)
    if snap.get("echo"):
        return Change([], False)  # our own change coming back: facts kept, nothing triggers
    if signals:
        signals.insert(0, Signal("record_changed", "contact", {"op": "updated"}))
    return Change(signals, bool(signals))


def _apply_consent(contact: Contact, status: str, channel: str, now: datetime, *, created: bool) -> Change:
    """A consent change (``runtime.consent``): the ``<channel>_subscription`` fact journeys
    read, with the ``field_changed`` a starting point on that field waits for."""
    name = fact_name(channel)
    change = _apply_fields(contact, {name: status}, now)
    signals = [Signal(status, "", {"channel": channel}), *change.signals]
    if created:
        signals.insert(0, Signal("record_changed", "contact", {"op": "created"}))
    return Change(signals, change.updated)


def _apply_fields(contact: Contact, values: dict[str, Any], now: datetime) -> Change:
    """A partial update (our own write-back, or a host's field webhook)."""
    old = dict(contact.fields or {})
    signals = [Signal("field_changed", name, {"field": name, "before": old.get(name), "after": value})
               for name, value in sorted(values.items()) if old.get(name) != value]
    if not signals:
        return Change([], False)
    contact.fields = {**old, **values}
    contact.updated_at = now
    return Change([Signal("record_changed", "contact", {"op": "updated"}), *signals], True)


def _membership_signals(before: list[str], after: list[str], added: str, removed: str) -> list[Signal]:
    old, new = set(before), set(after)
    return ([Signal(added, t, {}) for t in sorted(new - old)]
            + [Signal(removed, t, {}) for t in sorted(old - new)])


def _set_member(contact: Contact, attr: str, item: str, present: bool) -> bool:
    items = list(getattr(contact, attr) or [])
    if (item in items) == present:
        return False
    items = items + [item] if present else [i for i in items if i != item]
    setattr(contact, attr, items)
    return True


def _stamp_activity(contact: Contact, kind: str, email_id: str, now: datetime) -> None:
    activity = {k: dict(v) for k, v in (contact.activity or {}).items()}
    activity.setdefault(kind, {})[email_id or "*"] = now.timestamp()
    contact.activity = activity
