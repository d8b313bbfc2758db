"""Marketing consent per contact and channel: the one place that reads and changes it.

A channel (``email`` today; ``sms`` uses the same rows) is ``subscribed``,
``unsubscribed`` (with when and how) or ``never_asked`` (no row). Marketing messages go
to subscribed and never-asked contacts; transactional ones (order notifications) ignore
consent; nothing at all goes to an address that hard-bounced.

Journeys read the status as the contact field ``<channel>_subscription`` (for example
``email_subscription``), kept by ``runtime.mirror`` from the ``subscribed`` /
``unsubscribed`` events a change emits. Hosts report their own opt-out as the canonical
field ``email_opt_out`` (true or false) and we write it back the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.connectors.mapping import opted_out as is_opted_out
from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.storage.mail_models import Consent
from crm_journeys.storage.models import Contact, OutboxMessage, Tenant

CHANNELS = ("email", "sms")
SUBSCRIBED, UNSUBSCRIBED, NEVER_ASKED = "subscribed", "unsubscribed", "never_asked"
STATUSES = (SUBSCRIBED, UNSUBSCRIBED)
HOST_OPT_OUT = {"email": "email_opt_out"}  # canonical host field per channel, where hosts keep one
HOST = "host"
# hosts whose connector writes ``email_opt_out`` with ``update_fields``. HubSpot's
# hs_email_optout is read-only: its connector unsubscribes the address from all email
# through the communication preferences API instead, and cannot re-subscribe it (the
# contact does that on HubSpot's own preferences page). Odoo's is_blacklisted is computed:
# its connector adds the address to mail.blacklist (or archives its row) instead
WRITE_BACK_HOSTS = frozenset({"sandbox", "salesforce", "dynamics", "hubspot", "odoo"})


def fact_name(channel: str) -> str:
    """The contact field conditions read: ``email_subscription``."""
    return f"{channel}_subscription"


@dataclass(frozen=True)
class ConsentState:
    channel: str
    status: str
    changed_at: datetime | None = None
    source: str = ""
    bounced_at: datetime | None = None

    def refusal(self, *, marketing: bool) -> str | None:
        """Why a message may not go, or None: the text the timeline shows."""
        if self.bounced_at is not None:
            return f"skipped: address bounced on {self.bounced_at:%Y-%m-%d}"
        if marketing and self.status == UNSUBSCRIBED:
            when = f" on {self.changed_at:%Y-%m-%d}" if self.changed_at else ""
            return f"skipped: unsubscribed{when}"
        return None


def consent_of(session: Session, tenant_id: int, contact_id: int, channel: str = "email") -> ConsentState:
    row = _row(session, tenant_id, contact_id, channel)
    if row is None:
        return ConsentState(channel, NEVER_ASKED)
    return ConsentState(channel, row.status, row.changed_at, row.source, row.bounced_at)


def set_consent(session: Session, contact: Contact, channel: str, status: str, source: str,
                now: datetime, *, write_back: bool = True) -> bool:
    """Record a change at once (the next send sees it), emit ``subscribed`` /
    ``unsubscribed`` for journeys, and queue the host write-back. False: no change."""
    if channel not in CHANNELS or status not in STATUSES:
        raise ValueError(f"channel must be one of {CHANNELS} and status one of {STATUSES}")
    row = _row(session, contact.tenant_id, contact.id, channel)
    if row is not None and row.status == status:
        return False
    if row is None:
        row = Consent(tenant_id=contact.tenant_id, contact_id=contact.id, channel=channel, bounce_reason="")
        session.add(row)
    row.status, row.source, row.changed_at = status, source, now
    session.flush()
    stamp = f"{contact.id}:{channel}:{status}:{now.isoformat()}"
    ingest(session, contact.tenant_id, IncomingEvent(
        type=status, contact={"id": contact.external_id, "email": contact.email},
        properties={"channel": channel, "source": source}, dedup_key=f"consent:{stamp}"), now)
    if write_back and channel in HOST_OPT_OUT and source != HOST and _writes_back(session, contact.tenant_id):
        _queue_write_back(session, contact, HOST_OPT_OUT[channel], status == UNSUBSCRIBED, stamp, now)
    return True


def mark_bounced(session: Session, contact: Contact, reason: str, now: datetime) -> None:
    """A hard bounce: the address takes no more email of any kind."""
    row = _row(session, contact.tenant_id, contact.id, "email")
    if row is None:
        row = Consent(tenant_id=contact.tenant_id, contact_id=contact.id, channel="email",
                      status=SUBSCRIBED, changed_at=now, source="")
        session.add(row)
    row.bounced_at, row.bounce_reason = now, reason[:2000]


def sync_from_host(session: Session, contact: Contact, host_fields: dict[str, object], now: datetime) -> None:
    """Follow the host's own opt-out from a contact snapshot (``email_opt_out`` present and
    true: opted out; absent or false: not). An opt-out set there unsubscribes; cleared, it
    re-subscribes only what the host itself unsubscribed (an unsubscribe by link stands
    until the contact changes it: the safe side of consent). The mirror's fact answers the
    common case (nothing to do) without a query."""
    for channel, name in HOST_OPT_OUT.items():
        opted_out = is_opted_out(host_fields.get(name))
        unsubscribed = (contact.fields or {}).get(fact_name(channel)) == UNSUBSCRIBED
        if opted_out == unsubscribed:
            continue
        current = consent_of(session, contact.tenant_id, contact.id, channel)
        if opted_out and current.status != UNSUBSCRIBED:
            set_consent(session, contact, channel, UNSUBSCRIBED, HOST, now)
        elif not opted_out and current.status == UNSUBSCRIBED and current.source == HOST:
            set_consent(session, contact, channel, SUBSCRIBED, HOST, now)


def _queue_write_back(session: Session, contact: Contact, field: str, value: bool, stamp: str,
                      now: datetime) -> None:
    """Through the outbox, so a CRM outage delays the write-back and never drops it."""
    session.add(OutboxMessage(tenant_id=contact.tenant_id, instance_id=None, contact_id=contact.id,
                              step="", idempotency_key=f"consent:{stamp}"[:200], action="update_field",
                              params={"field": field, "value": value}, status="pending", attempts=0,
                              next_attempt_at=now, last_error="", result={}, created_at=now))


def _writes_back(session: Session, tenant_id: int) -> bool:
    return session.scalar(select(Tenant.connector).where(Tenant.id == tenant_id)) in WRITE_BACK_HOSTS


def _row(session: Session, tenant_id: int, contact_id: int, channel: str) -> Consent | None:
    return session.scalar(select(Consent).where(Consent.tenant_id == tenant_id, Consent.contact_id == contact_id,
                                                Consent.channel == channel))
