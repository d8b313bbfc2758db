"""The database side of an email send and of what comes back from it.

Before a send: is the contact's consent for it there (``prepare``)? If not, the skip and
its reason go to the journey's timeline and the journey goes on. Each send gets a
``cj_email_send`` row with a random public id, the one thing its signed links carry.
Afterwards: opens, clicks and unsubscribes arrive by those links (``web/mail_links``),
and become ``email_opened`` / ``email_clicked`` / ``unsubscribed`` events for the right
contact, email and journey instance.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crm_journeys.runtime.consent import UNSUBSCRIBED, consent_of, mark_bounced, set_consent
from crm_journeys.runtime.contact_policy import Policy, judge, version_setting
from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.storage.mail_models import EmailSend
from crm_journeys.storage.models import Contact, StepLog

# Opens by mail proxies and security scanners that fetch images before (or without) a
# person: Apple Mail Privacy Protection (a bare "Mozilla/5.0"), Google's and Yahoo's image
# proxies, link scanners. An open this soon after the send is a machine's too.
MACHINE_AGENTS = ("googleimageproxy", "yahoomailproxy", "barracuda", "mimecast", "proofpoint",
                  "symantec", "microsoft office protection")
MACHINE_WINDOW = timedelta(seconds=10)


@dataclass(frozen=True)
class Prepared:
    """What the email action needs: the public id to sign, or why the send is skipped, or
    until when it is held."""

    public_id: str
    skip_reason: str | None
    tracked: bool
    hold_until: datetime | None = None
    hold_reason: str = ""
    earlier: EmailSend | None = None  # this send's row from an earlier attempt


@dataclass(frozen=True)
class Origin:
    """The journey step whose outbox row sends: what its claim read (``Claimed``), so
    preparing a send reads none of it again."""

    outbox_id: int
    instance_id: int | None = None
    step: str = ""
    journey_id: int | None = None
    version_id: int | None = None


def prepare(session: Session, *, tenant_id: int, contact_id: int, origin: Origin, key: str, email_id: str,
            marketing: bool, tracked: bool, now: datetime, links: list[str] | None = None,
            policy: Policy | None = None,
            contact_zone: str | None = None, over_cap: str = "skip") -> Prepared:
    """Consent, then the contact policy, then the send's row, made once per idempotency key
    (a re-run reuses it and its links)."""
    existing = session.scalar(select(EmailSend).where(EmailSend.tenant_id == tenant_id,
                                                      EmailSend.idempotency_key == key))
    if existing is not None:
        skip = "skipped earlier" if existing.status == "skipped" else None
        return Prepared(existing.public_id, skip, existing.tracked, earlier=existing)
    reason = consent_of(session, tenant_id, contact_id).refusal(marketing=marketing)
    if reason is None and marketing and policy is not None:
        verdict = judge(session, policy, tenant_id=tenant_id, contact_id=contact_id, contact_zone=contact_zone,
                        outbox_id=origin.outbox_id,
                        priority=int(version_setting(session, origin.version_id, "priority", 50)),
                        over_cap=over_cap, now=now)
        if verdict.action == "hold":
            _note(session, tenant_id, origin, "held", verdict.reason, now)
            return Prepared("", None, False, verdict.until, verdict.reason)
        reason = verdict.reason or None
    tracked = tracked and reason is None and bool(version_setting(session, origin.version_id, "email_tracking", True))
    row = EmailSend(tenant_id=tenant_id, public_id=secrets.token_urlsafe(18), idempotency_key=key,
                    contact_id=contact_id, instance_id=origin.instance_id, journey_id=origin.journey_id,
                    email_id=email_id, marketing=marketing, tracked=tracked,
                    links=list(links or []) if tracked else [],
                    status="skipped" if reason else "sending", created_at=now)
    session.add(row)
    if reason:
        _note(session, tenant_id, origin, "skipped", f"{reason} (send_email {email_id or origin.step!r} not sent)", now)
    return Prepared(row.public_id, reason, row.tracked)


def _note(session: Session, tenant_id: int, origin: Origin, kind: str, why: str, now: datetime) -> None:
    """A timeline entry on the journey's instance; a hold that says the same as the last
    one for its step is not repeated."""
    if origin.instance_id is None or origin.journey_id is None:
        return
    last = session.scalar(select(StepLog.detail).where(StepLog.instance_id == origin.instance_id,
                                                       StepLog.step == origin.step, StepLog.kind == kind)
                          .order_by(StepLog.id.desc()).limit(1))
    if kind == "held" and last and last.get("why") == why:
        return
    session.add(StepLog(tenant_id=tenant_id, journey_id=origin.journey_id, instance_id=origin.instance_id, at=now,
                        step=origin.step, kind=kind, branch="", detail={"why": why}))


def mark_status(session: Session, tenant_id: int, public_id: str, status: str) -> None:
    """``queued`` (an attempt failed before the server took the message: a retry may
    send), ``uncertain`` (an attempt stopped mid-send: it may have gone out), ``sending``."""
    session.execute(update(EmailSend).where(EmailSend.tenant_id == tenant_id, EmailSend.public_id == public_id)
                    .values(status=status))


def mark_sent(session: Session, tenant_id: int, public_id: str, now: datetime) -> None:
    """The links were kept when the row was made, before the send: a click works even if
    the worker died between the send and this update."""
    session.execute(update(EmailSend).where(EmailSend.tenant_id == tenant_id, EmailSend.public_id == public_id)
                    .values(status="sent", sent_at=now))


def mark_hard_bounce(session: Session, tenant_id: int, public_id: str, contact_id: int, reason: str,
                     now: datetime) -> None:
    """An SMTP 5xx for the recipient at send time: the address is suppressed and journeys
    hear ``email_not_delivered``."""
    send = _send(session, tenant_id, public_id)
    contact = session.get(Contact, contact_id)
    if send is None or contact is None or contact.tenant_id != tenant_id:
        return
    send.status = "bounced"
    mark_bounced(session, contact, reason, now)
    ingest(session, tenant_id, _event(send, contact, "email_not_delivered", {"reason": reason[:500]},
                                      f"bounce:{public_id}"), now)


@dataclass(frozen=True)
class Resolved:
    tenant_id: int
    url: str | None = None


def record_open(session: Session, tenant_id: int, public_id: str, user_agent: str, now: datetime) -> Resolved | None:
    """One ``email_opened`` per send for a person and one for machines (``machine``: true);
    repeats are the same event and are dropped by the inbox. None: no such send."""
    hit = _hit(session, tenant_id, public_id)
    if hit is None:
        return None
    machine = _machine(user_agent, hit.sent_at, now)
    ingest(session, tenant_id, _hit_event(hit, "email_opened", {"machine": machine},
                                          f"open:{public_id}:{'machine' if machine else 'person'}"), now)
    return Resolved(tenant_id)


def record_click(session: Session, tenant_id: int, public_id: str, link: int, now: datetime) -> Resolved | None:
    """The URL that was in the email at ``link``, and one ``email_clicked`` per link."""
    hit = _hit(session, tenant_id, public_id)
    if hit is None or not 0 <= link < len(hit.links or []):
        return None
    url = str(hit.links[link])
    ingest(session, tenant_id, _hit_event(hit, "email_clicked", {"url": url}, f"click:{public_id}:{link}"), now)
    return Resolved(tenant_id, url)


_HIT = (select(EmailSend.email_id, EmailSend.journey_id, EmailSend.instance_id, EmailSend.links,
               EmailSend.sent_at, Contact.external_id)
        .join(Contact, Contact.id == EmailSend.contact_id))


def _hit(session: Session, tenant_id: int, public_id: str) -> Any:
    """What an open or a click needs, in one query (the hot path of a mailing's peak)."""
    return session.execute(_HIT.where(EmailSend.tenant_id == tenant_id, EmailSend.public_id == public_id)).first()


def _hit_event(hit: Any, type_: str, props: dict[str, Any], dedup: str) -> IncomingEvent:
    return IncomingEvent(type=type_, key=hit.email_id, contact={"id": hit.external_id},
                         properties={"email_id": hit.email_id, "journey_id": hit.journey_id,
                                     "instance_id": hit.instance_id, **props}, dedup_key=dedup)


def send_contact(session: Session, tenant_id: int, public_id: str) -> Contact | None:
    send = _send(session, tenant_id, public_id)
    return session.get(Contact, send.contact_id) if send is not None else None


def change_subscription(session: Session, tenant_id: int, public_id: str, status: str, source: str, now: datetime) -> bool | None:
    """Unsubscribe (or subscribe again) the contact the email went to. None: no such send;
    False: nothing changed (a repeated one-click POST)."""
    contact = send_contact(session, tenant_id, public_id)
    if contact is None:
        return None
    return set_consent(session, contact, "email", status, source, now)


def is_unsubscribed(session: Session, contact: Contact) -> bool:
    return consent_of(session, contact.tenant_id, contact.id).status == UNSUBSCRIBED


def _send(session: Session, tenant_id: int, public_id: str) -> EmailSend | None:
    return session.scalar(select(EmailSend).where(EmailSend.tenant_id == tenant_id, EmailSend.public_id == public_id))


def _machine(user_agent: str, sent_at: datetime | None, now: datetime) -> bool:
    agent = (user_agent or "").strip().lower()
    if agent in ("", "mozilla/5.0") or any(m in agent for m in MACHINE_AGENTS):
        return True
    return sent_at is not None and now - sent_at < MACHINE_WINDOW


def _event(send: EmailSend, contact: Contact, type_: str, props: dict[str, Any], dedup: str) -> IncomingEvent:
    return IncomingEvent(type=type_, key=send.email_id, contact={"id": contact.external_id},
                         properties={"email_id": send.email_id, "journey_id": send.journey_id,
                                     "instance_id": send.instance_id, **props}, dedup_key=dedup)
