"""The tenant's contact policy across journeys: how many marketing messages a contact
may get per period, and quiet hours in the contact's own time zone.

Set as the tenant setting ``contact_policy``::

    {"max_messages": 3, "period_days": 7,
     "quiet_hours": {"start": "21:00", "end": "08:00"}, "time_zone": "Europe/Rome"}

A marketing message in quiet hours is held until the window ends in the contact's zone
(``time_zone`` contact field, else the policy's), computed with zoneinfo so a DST change
in between moves the UTC instant, never drops the message. A message over the cap is
skipped or held until a slot frees, as its step says (``over_cap``). When the cap leaves
room for fewer messages than are due now, the journey with the higher ``priority``
(journey setting, 0-100) goes first. Transactional messages ignore the policy.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.errors import FatalConnectorError
from crm_journeys.storage.mail_models import EmailSend
from crm_journeys.storage.models import Instance, JourneyVersion, OutboxMessage
from crm_journeys.storage.sms_models import SmsMessage

MESSAGE_ACTIONS = ("send_email", "send_sms")  # what the cap counts, across channels
RECHECK = timedelta(minutes=1)  # a message that yielded to a higher-priority one looks again


@dataclass(frozen=True)
class Policy:
    max_messages: int | None = None
    period: timedelta = timedelta(days=7)
    quiet_start: time | None = None
    quiet_end: time | None = None
    time_zone: str = "UTC"

    @classmethod
    def from_settings(cls, raw: Any) -> Policy:
        """The tenant's ``contact_policy``; a bad value names its field."""
        if not raw:
            return cls()
        if not isinstance(raw, dict):
            raise FatalConnectorError("contact_policy: must be an object")
        cap = raw.get("max_messages")
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
            raise FatalConnectorError("contact_policy.max_messages: a whole number of at least 1")
        days = raw.get("period_days", 7)
        if not isinstance(days, int | float) or isinstance(days, bool) or days <= 0:
            raise FatalConnectorError("contact_policy.period_days: a positive number of days")
        quiet = raw.get("quiet_hours") or {}
        start, end = (_clock(quiet, "start"), _clock(quiet, "end")) if quiet else (None, None)
        return cls(cap, timedelta(days=days), start, end, _zone(raw.get("time_zone") or "UTC",
                                                                 "contact_policy.time_zone"))


@dataclass(frozen=True)
class Verdict:
    """``send``, ``skip`` (with the reason) or ``hold`` (until when, and why)."""

    action: str
    reason: str = ""
    until: datetime | None = None


SEND = Verdict("send")


def judge(session: Session, policy: Policy, *, tenant_id: int, contact_id: int, contact_zone: str | None,
          outbox_id: int, priority: int, over_cap: str, now: datetime) -> Verdict:
    held = quiet_until(policy, contact_zone, now)
    if held is not None:
        zone = _contact_zone(policy, contact_zone)
        local = held.astimezone(ZoneInfo(zone))
        return Verdict("hold", f"held: quiet hours in {zone} until {local:%Y-%m-%d %H:%M} ({held:%H:%M} UTC)",
                       held)
    if policy.max_messages is None:
        return SEND
    sent = _sent_in_period(session, tenant_id, contact_id, now - policy.period)
    ahead = _ahead(session, tenant_id, contact_id, outbox_id, priority, now)
    if len(sent) + ahead < policy.max_messages:
        return SEND
    days = policy.period.total_seconds() / 86400
    reason = f"contact policy: {len(sent)} marketing messages in {days:g} days (at most {policy.max_messages})"
    if ahead and len(sent) < policy.max_messages:
        reason = f"contact policy: {ahead} message(s) of higher-priority journeys go first"
    if over_cap == "skip":
        return Verdict("skip", f"skipped: {reason}")
    free_at = sent[0] + policy.period if len(sent) >= policy.max_messages else now + RECHECK
    free_at = max(free_at, now + timedelta(seconds=1))  # a hold always moves the row forward
    return Verdict("hold", f"held: {reason}, until {free_at:%Y-%m-%d %H:%M} UTC", free_at)


def quiet_until(policy: Policy, contact_zone: str | None, now: datetime) -> datetime | None:
    """The UTC instant the contact's quiet hours end, or None when they are not on now."""
    if policy.quiet_start is None or policy.quiet_end is None:
        return None
    zone = ZoneInfo(_contact_zone(policy, contact_zone))
    local = now.astimezone(zone)
    start, end, t = policy.quiet_start, policy.quiet_end, local.time()
    overnight = start > end
    inside = (t >= start or t < end) if overnight else (start <= t < end)
    if not inside:
        return None
    day: date = local.date() + timedelta(days=1) if overnight and t >= start else local.date()
    # wall-clock end of the window in the contact's zone; zoneinfo gives its offset that day
    return datetime.combine(day, end, tzinfo=zone).astimezone(UTC)



# a version's journey settings, by database (its engine) and version id
_SETTINGS: weakref.WeakKeyDictionary[Any, dict[int, dict[str, Any]]] = weakref.WeakKeyDictionary()
_SETTINGS_KEPT = 4096  # versions remembered per database (then the memory starts over)


def version_setting(session: Session, version_id: int | None, name: str, default: Any) -> Any:
    """One setting of a journey version (the one an outbox row's instance runs, which its
    claim read). Versions never change once published, so their settings are read once
    per process: reading the whole journey document for every email or text cost more
    than the rest of preparing it."""
    if version_id is None:
        return default
    known = _SETTINGS.setdefault(session.get_bind(), {})
    settings = known.get(version_id)
    if settings is None:
        doc = session.scalar(select(JourneyVersion.document).where(JourneyVersion.id == version_id))
        if len(known) >= _SETTINGS_KEPT:
            known.clear()
        settings = known[version_id] = dict((doc or {}).get("settings") or {})
    return settings.get(name, default)


def _sent_in_period(session: Session, tenant_id: int, contact_id: int, since: datetime) -> list[datetime]:
    """When each marketing message (email or text) of the period went out, oldest first."""
    emails = session.scalars(select(EmailSend.sent_at).where(
        EmailSend.tenant_id == tenant_id, EmailSend.contact_id == contact_id, EmailSend.marketing.is_(True),
        EmailSend.status == "sent", EmailSend.sent_at > since))
    texts = session.scalars(select(SmsMessage.attempted_at).where(
        SmsMessage.tenant_id == tenant_id, SmsMessage.contact_id == contact_id, SmsMessage.marketing.is_(True),
        SmsMessage.sid.is_not(None), SmsMessage.attempted_at > since))
    return sorted(r for r in [*emails, *texts] if r is not None)


def _ahead(session: Session, tenant_id: int, contact_id: int, outbox_id: int, priority: int,
           now: datetime) -> int:
    """Marketing messages of higher-priority journeys (or equal and queued first) due now."""
    rows = session.execute(select(OutboxMessage.id, OutboxMessage.instance_id, OutboxMessage.params).where(
        OutboxMessage.tenant_id == tenant_id, OutboxMessage.contact_id == contact_id,
        OutboxMessage.action.in_(MESSAGE_ACTIONS), OutboxMessage.status == "pending",
        OutboxMessage.id != outbox_id, OutboxMessage.next_attempt_at <= now)).all()
    rows = [r for r in rows if (r.params or {}).get("kind", "marketing") == "marketing"]
    if not rows:
        return 0
    ranks = _priorities(session, [r.instance_id for r in rows if r.instance_id is not None])
    return sum(1 for r in rows if (ranks.get(r.instance_id, 50), -r.id) > (priority, -outbox_id))


def _priorities(session: Session, instance_ids: list[int]) -> dict[int, int]:
    rows = session.execute(select(Instance.id, JourneyVersion.document)
                           .join(JourneyVersion, Instance.version_id == JourneyVersion.id)
                           .where(Instance.id.in_(instance_ids))).all()
    return {r.id: int(((r.document or {}).get("settings") or {}).get("priority", 50)) for r in rows}


def _contact_zone(policy: Policy, contact_zone: str | None) -> str:
    if contact_zone:
        try:
            ZoneInfo(contact_zone)
            return contact_zone
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a host's free-text zone we cannot read: the policy's
    return policy.time_zone


def _clock(quiet: dict[str, Any], key: str) -> time:
    try:
        return time.fromisoformat(str(quiet[key]))
    except (KeyError, ValueError):
        raise FatalConnectorError(f"contact_policy.quiet_hours.{key}: a time of day such as 21:00") from None


def _zone(name: str, where: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise FatalConnectorError(f"{where}: unknown time zone {name!r}") from None
    return name


