"""Small value conversions the host adapters share: host timestamps, tag lists, markers.

Pure functions, no I/O. Hosts disagree on how to write a moment in time and most have no
native contact tags, so each adapter keeps tags in one delimited text field and marks
records it creates with its idempotency key when the host has no upsert by external id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from crm_journeys.connectors.base import CanonicalContact, WriteResult

_MS_DATE = re.compile(r"/Date\((-?\d+)\)/")
CANONICAL_NAMES = ("email", "first_name", "last_name", "phone", "owner", "time_zone",
                   "language", "birthday")


def canonical(external_id: str, values: Mapping[str, Any], **rest: Any) -> CanonicalContact:
    """A ``CanonicalContact`` from canonical-name values (blank host values become ``None``)
    and any other of its fields as keywords."""
    contact = CanonicalContact(external_id=external_id, **rest)
    for name in CANONICAL_NAMES:
        value = values.get(name)
        setattr(contact, name, None if value in (None, "", False) else str(value))
    return contact


def opted_out(value: object) -> bool:
    """An opt-out flag as hosts and our write-back spell it: ``True``, ``"true"``, ``1``."""
    return value is True or str(value).lower() in ("true", "1")


def opt_out(value: object) -> dict[str, bool]:
    """The host's email opt-out as the canonical ``email_opt_out`` field (``runtime.consent``),
    present only when set: a contact who did not opt out carries no new field, so adding
    this mapping changes no existing contact's facts (and triggers nothing)."""
    return {"email_opt_out": True} if opted_out(value) else {}


def parse_time(value: object) -> datetime | None:
    """A timezone-aware UTC datetime from any host's spelling of one.

    Accepts ISO 8601 with ``Z`` or offsets (``+0000`` too), epoch milliseconds (int or
    digits), Microsoft's ``/Date(ms)/`` and Odoo's naive ``YYYY-MM-DD HH:MM:SS`` (UTC).
    """
    if value in (None, "", False):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    text = str(value).strip()
    match = _MS_DATE.fullmatch(text)
    if match or text.isdigit():
        return datetime.fromtimestamp(int(match.group(1) if match else text) / 1000, UTC)
    text = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = f"{text[:-2]}:{text[-2:]}"
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def signup_of(created: object) -> str | None:
    """The canonical ``signup_date`` (ISO 8601, UTC) from a host's created date, whatever
    its spelling: every host here keeps when the contact record was created, which is when
    the contact joined as far as the CRM knows."""
    moment = parse_time(created)
    return iso_z(moment) if moment else None


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def iso_z(moment: datetime) -> str:
    """``2026-03-02T09:00:00Z``: the form every host here accepts."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_tags(raw: object, sep: str = ";") -> list[str]:
    if not raw:
        return []
    return [t.strip() for t in str(raw).split(sep) if t.strip()]


def join_tags(tags: Iterable[str], sep: str = ";") -> str:
    return sep.join(tags)


def tags_with(raw: object, tag: str, present: bool, sep: str = ";") -> str | None:
    """The field value with ``tag`` added (``present``) or removed; ``None`` if unchanged."""
    tags = split_tags(raw, sep)
    if (tag in tags) == present:
        return None
    tags = [*tags, tag] if present else [t for t in tags if t != tag]
    return join_tags(tags, sep)


def marker(key: str) -> str:
    """The text a record carries when the host has no upsert by external id."""
    return f"[crm_journeys:{key}]"


def with_marker(text: str, key: str) -> str:
    return f"{text}\n\n{marker(key)}" if text else marker(key)


def split_name(full: str | None) -> tuple[str | None, str | None]:
    """``"Ada King Lovelace"`` -> ``("Ada King", "Lovelace")`` for hosts with one name field."""
    if not full:
        return None, None
    first, _, last = full.strip().rpartition(" ")
    return (first or None), last


class RewritesTags:
    """For hosts that keep a contact's tags in one field: adding or removing a tag is a
    read-modify-write of that field. It is idempotent by nature (the tag ends up present
    or absent whatever the retries), so the idempotency key is not needed."""

    def add_tag(self, contact_ref: str, tag: str, idempotency_key: str) -> WriteResult:
        return self._retag(contact_ref, tag, present=True)

    def remove_tag(self, contact_ref: str, tag: str, idempotency_key: str) -> WriteResult:
        return self._retag(contact_ref, tag, present=False)

    def _retag(self, contact_ref: str, tag: str, present: bool) -> WriteResult:
        new = tags_with(self._read_tags(contact_ref), tag, present)
        if new is not None:
            self._write_tags(contact_ref, new or None)
        return WriteResult(contact_ref, created=False, detail="unchanged" if new is None else "changed")

    def _read_tags(self, contact_ref: str) -> object:
        """The host's tag field of the contact, as stored."""
        raise NotImplementedError

    def _write_tags(self, contact_ref: str, value: str | None) -> None:
        raise NotImplementedError
