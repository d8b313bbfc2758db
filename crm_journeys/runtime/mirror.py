"""Keeps the contact mirror current and derives the canonical events a change implies.

A record update from a host says "this is the contact now"; journeys want "tag VIP was
added" or "country changed to DE". Diffing against the mirror, in event order, is what
turns the first into the second, and what makes a repeated save of an unchanged record
trigger nothing.

One rule for every event that carries record data (``contact_upserted``,
``fields_updated``, ``field_changed``, ``record_changed``, ``contact_deleted``): the
mirror is updated first, and the signals journeys see describe the difference from what
the mirror held, so ``field_changed.before`` is always the value journeys last read. The
dispatcher then lets in-flight instances react and only after that routes starting
points, in the order of the signals (docs/journey-format.md, "Events").

Record changes of other tables (orders, leads, custom ones) are kept per table as the
contact's related record, in the reserved field ``record`` (``{table: {field: value}}``),
read in conditions as ``record.<table>.<field>``. A field, not a column of its own: the
wake-up path reads every waiting contact's row, and a contact without related records
pays nothing. A ``subscribed`` event stamps the signup date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_journeys.runtime.consent import CHANNELS, fact_name
from crm_journeys.storage.models import Contact

SNAPSHOT = "contact_upserted"
DELETED = "contact_deleted"
ACTIVITY_EVENTS = {"email_sent": "sent", "email_opened": "opened", "email_clicked": "clicked"}
CONSENT_FACTS = frozenset(fact_name(c) for c in CHANNELS)
SNAPSHOT_KEYS = ("email", "first_name", "last_name", "phone", "owner", "time_zone",
                 "language", "birthday", "created_at", "signup_date")
CONTACT_TABLE = "contact"
RECORDS_FIELD = "record"  # reserved field: {table: the last record of that table}
RECORD_PREFIX = RECORDS_FIELD + "."  # conditions read a related record's field as record.<table>.<field>
SIGNUP_FIELD = "signup_date"  # first subscription to any list; signup_date.<list> per list


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
                now: datetime, *, created: bool, at: datetime | None = None) -> Change:
    """Update ``contact`` in place for one event and list the signals it implies.

    ``at`` is when the event happened (the signup date of a ``subscribed``), ``now`` when
    it is processed."""
    if event_type == SNAPSHOT:
        return _apply_snapshot(contact, props, now, created=created)
    if event_type == DELETED:
        contact.deleted = True
        contact.updated_at = now
        return Change([_contact_record("deleted", contact)], True)
    if event_type == "fields_updated":
        return _created(_apply_fields(contact, props.get("fields") or {}, now), created)
    if event_type == "field_changed":
        name = str(props.get("field") or key)
        return _created(_apply_fields(contact, {name: props.get("after")} if name else {}, now), created)
    if event_type == "record_changed":
        return _created(_apply_record(contact, str(key or props.get("table") or ""), props, now), created)
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
        if event_type == "subscribed":
            stamped = _stamp_signup(contact, key, at or now)
            signals += stamped
            updated = updated or bool(stamped)
    change = _created(Change(signals, updated), created)
    if updated:
        contact.updated_at = now
    return change


def _created(change: Change, created: bool) -> Change:
    """A contact first seen with this event: ``record_changed`` (created) comes first."""
    if created:
        change.signals = [s for s in change.signals if s.type != "record_changed" or s.key != CONTACT_TABLE]
        change.signals.insert(0, Signal("record_changed", CONTACT_TABLE,
                                        {"table": CONTACT_TABLE, "change": "created", "op": "created"}))
    return change


def _contact_record(change: str, contact: Contact, changed: list[str] | None = None) -> Signal:
    """``record_changed`` for the contact table, with the catalogue's properties (``op``
    is the older name of ``change``, kept for journeys reading it)."""
    props: dict[str, Any] = {"table": CONTACT_TABLE, "change": change, "op": change,
                             "record_id": contact.external_id}
    if changed is not None:
        props["changed_fields"] = changed
    return Signal("record_changed", CONTACT_TABLE, props)


def _apply_snapshot(contact: Contact, snap: dict[str, Any], now: datetime, *, created: bool) -> Change:
    if snap.get("version") and snap.get("version") == contact.version and not created:
        return Change([], False)  # same record version seen before: nothing new
    signals: list[Signal] = []
    new_fields = {k: snap[k] for k in SNAPSHOT_KEYS if snap.get(k) is not None}
    new_fields.update(snap.get("fields") or {})
    old_fields = dict(contact.fields or {})
    new_fields.update({k: v for k, v in old_fields.items() if k in CONSENT_FACTS})  # ours, not the host's
    for name, value in old_fields.items():  # what we keep (signup stamps, related records)
        if (_is_signup(name) or name == RECORDS_FIELD) and new_fields.get(name) is None:
            new_fields[name] = value
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
        return Change([_contact_record("created", contact),
                       Signal("contact_created", "", {})] + signals, True)
    if snap.get("echo"):
        return Change([], False)  # our own change coming back: facts kept, nothing triggers
    if signals:
        changed = [sig.key for sig in signals if sig.type == "field_changed"]
        signals.insert(0, _contact_record("updated", contact, changed))
    return Change(signals, bool(signals))


def _apply_consent(contact: Contact, status: str, channel: str, now: datetime, *, created: bool) -> Change:
    """A consent change (``runtime.consent``): the ``<channel>_subscription`` fact journeys
    read, with the ``field_changed`` a starting point on that field waits for."""
    name = fact_name(channel)
    change = _apply_fields(contact, {name: status}, now)
    signals = [Signal(status, "", {"channel": channel}), *change.signals]
    if created:
        signals.insert(0, _contact_record("created", contact))
    return Change(signals, change.updated)


def _apply_fields(contact: Contact, values: dict[str, Any], now: datetime) -> Change:
    """A partial update (our own write-back, a host's field webhook, ``field_changed``)."""
    old = dict(contact.fields or {})
    signals = [Signal("field_changed", name, {"field": name, "before": old.get(name), "after": value})
               for name, value in sorted(values.items()) if old.get(name) != value]
    if not signals:
        return Change([], False)
    contact.fields = {**old, **values}
    if "email" in values and values["email"]:
        contact.email = str(values["email"]).lower()
    contact.updated_at = now
    return Change([_contact_record("updated", contact, [sig.key for sig in signals]), *signals], True)


def _apply_record(contact: Contact, table: str, props: dict[str, Any], now: datetime) -> Change:
    """``record_changed``: the contact's own record updates the mirror's fields; another
    table's record becomes the contact's related record of that table."""
    change = str(props.get("change") or "updated")
    given = props.get("record")
    record: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
    if table == CONTACT_TABLE:
        if change == "deleted":
            contact.deleted = True
            contact.updated_at = now
            return Change([_contact_record("deleted", contact)], True)
        if not record:  # no values to apply: passed on as sent
            return Change([Signal("record_changed", table, {**props, "table": table, "change": change})], False)
        return _apply_fields(contact, record, now)
    if not table:
        return Change([], False)
    fields = dict(contact.fields or {})
    kept = fields.get(RECORDS_FIELD)
    records = {k: dict(v) for k, v in kept.items() if isinstance(v, dict)} if isinstance(kept, dict) else {}
    before = records.get(table) or {}
    same = str(before.get("record_id", "")) == str(props.get("record_id", ""))
    if change == "deleted":
        if same:
            records.pop(table, None)
        changed: list[str] = list(props.get("changed_fields") or [])
    else:
        after = {**(before if same else {}), **record, "record_id": props.get("record_id")}
        changed = list(props.get("changed_fields") or
                       sorted(k for k in set(after) | set(before) if after.get(k) != before.get(k)
                              and k != "record_id"))
        records[table] = after
    if records:
        fields[RECORDS_FIELD] = records
    else:
        fields.pop(RECORDS_FIELD, None)
    contact.fields = fields
    contact.updated_at = now
    signal = Signal("record_changed", table, {**props, "table": table, "change": change,
                                              "changed_fields": changed, "record": record})
    return Change([signal], True)


def _is_signup(name: str) -> bool:
    return name == SIGNUP_FIELD or name.startswith(SIGNUP_FIELD + ".")


def _stamp_signup(contact: Contact, list_id: str, at: datetime) -> list[Signal]:
    """The first subscription's date, as ``signup_date`` (any list) and
    ``signup_date.<list>``, on the contact's own calendar (its time zone, else UTC). A
    date already there (stamped before, or mapped from the host) is kept."""
    day = at.astimezone(_zone(contact.fields or {})).date().isoformat()
    names = [SIGNUP_FIELD] + ([f"{SIGNUP_FIELD}.{list_id}"] if list_id else [])
    fields = contact.fields or {}
    missing = {name: day for name in names if fields.get(name) in (None, "")}
    return _apply_fields(contact, missing, contact.updated_at).signals[1:] if missing else []


def _zone(fields: dict[str, Any]) -> Any:
    try:
        return ZoneInfo(str(fields.get("time_zone") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


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


def readable_fields(contact: Contact) -> dict[str, Any]:
    """The fields conditions read: the contact's own, and each related record's also as the
    flat name ``record.<table>.<field>`` (as the rules engine's messages carry fields)."""
    fields = contact.fields or {}
    records = fields.get(RECORDS_FIELD)
    if not records or not isinstance(records, dict):
        return fields
    merged = dict(fields)
    for table, record in records.items():
        for name, value in (record if isinstance(record, dict) else {}).items():
            merged[f"{RECORD_PREFIX}{table}.{name}"] = value
    return merged
