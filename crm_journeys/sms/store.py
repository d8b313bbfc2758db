"""The local record of texts (``cj_sms_message``): what the action, the status callbacks
and the inbound webhook read and write. Every query is scoped to its tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.storage.models import Contact, OutboxMessage, StepLog
from crm_journeys.storage.sms_models import SmsMessage

ATTEMPT_UNKNOWN = "sending"  # asked Twilio, answer not seen
NOT_SENT = "not_sent"
SKIPPED = "skipped"
FINAL = ("delivered", "undelivered", "failed")


def by_key(s: Session, tenant_id: int, key: str) -> SmsMessage | None:
    return s.scalar(select(SmsMessage).where(SmsMessage.tenant_id == tenant_id,
                                             SmsMessage.idempotency_key == key))


def by_sid(s: Session, tenant_id: int, sid: str) -> SmsMessage | None:
    return s.scalar(select(SmsMessage).where(SmsMessage.tenant_id == tenant_id, SmsMessage.sid == sid))


def last_to(s: Session, tenant_id: int, number: str) -> SmsMessage | None:
    """The latest text sent to ``number``: a reply from it answers that one."""
    return s.scalar(select(SmsMessage).where(SmsMessage.tenant_id == tenant_id, SmsMessage.to_number == number,
                                             SmsMessage.sid.is_not(None))
                    .order_by(SmsMessage.id.desc()).limit(1))


def contact_ref(s: Session, tenant_id: int, contact_id: int) -> str:
    """The host's id of the contact (what events name a contact by)."""
    return s.scalar(select(Contact.external_id).where(Contact.tenant_id == tenant_id, Contact.id == contact_id)) or ""


def begin(s: Session, tenant_id: int, key: str, now: datetime, **values: Any) -> SmsMessage:
    """The row for ``key``, made on first use; marks a new attempt as of ``now``."""
    row = by_key(s, tenant_id, key)
    if row is None:
        row = SmsMessage(tenant_id=tenant_id, idempotency_key=key, created_at=now, updated_at=now, **values)
        s.add(row)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    row.status, row.attempted_at, row.updated_at = ATTEMPT_UNKNOWN, now, now
    s.flush()
    return row


def settle(s: Session, tenant_id: int, key: str, now: datetime, *, status: str, sid: str | None = None,
           segments: int | None = None, error: str = "") -> None:
    row = by_key(s, tenant_id, key)
    if row is None:
        return
    row.status, row.updated_at, row.error = status, now, error[:2000]
    if sid:
        row.sid = sid
    if segments is not None:
        row.segments = segments


def log_step(s: Session, tenant_id: int, outbox_id: int, journey_id: int | None, kind: str, why: str,
             now: datetime) -> None:
    """A skipped or held text in the contact's timeline (kinds ``skipped`` and ``held``, as
    for email), so the author sees why nothing went out while the journey went on. A hold
    that says what the step's last one said is not repeated."""
    outbox = s.get(OutboxMessage, outbox_id)
    if outbox is None or outbox.tenant_id != tenant_id or outbox.instance_id is None or journey_id is None:
        return
    last = s.scalar(select(StepLog.detail).where(StepLog.tenant_id == tenant_id,
                                                 StepLog.instance_id == outbox.instance_id,
                                                 StepLog.step == outbox.step, StepLog.kind == kind)
                    .order_by(StepLog.id.desc()).limit(1))
    if kind == "held" and last and last.get("why") == why:
        return
    s.add(StepLog(tenant_id=tenant_id, journey_id=journey_id, instance_id=outbox.instance_id, at=now,
                  step=outbox.step, kind=kind, branch="", detail={"why": why}))
