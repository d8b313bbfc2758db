"""Rows behind SMS as a journey channel: one row per text a journey sends (or skips).

Same declarative base and ``cj_`` prefix as ``storage.models``; every row carries
``tenant_id``. The row is written *before* Twilio is asked, so an attempt whose answer
was lost (timeout, crash) is known to have maybe reached Twilio and is looked up there
before any resend; once Twilio's ``sid`` is known, a retry never texts again. Status
callbacks and replies find their contact through it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_journeys.storage.models import Base, IdType


class SmsMessage(Base):
    """One outbound text, keyed by the outbox row's idempotency key.

    ``status``: ``sending`` (asked Twilio, answer not seen: may have reached it),
    ``not_sent`` (Twilio refused before creating it, e.g. 429: safe to send again),
    then Twilio's own (``queued``, ``sent``, ``delivered``, ``undelivered``, ``failed``),
    or ``skipped`` (opted out). ``body_sha256`` matches a lost attempt on Twilio without
    keeping the text.
    """

    __tablename__ = "cj_sms_message"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key"),
                      Index("ix_cj_sms_message_sid", "tenant_id", "sid"),
                      Index("ix_cj_sms_message_to", "tenant_id", "to_number", "id"),
                      Index("ix_cj_sms_message_updated", "tenant_id", "updated_at"))
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("cj_tenant.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    contact_id: Mapped[int] = mapped_column(ForeignKey("cj_contact.id", ondelete="CASCADE"))
    journey_id: Mapped[int | None] = mapped_column(IdType, default=None)
    sms_id: Mapped[str] = mapped_column(String(80), default="")
    to_number: Mapped[str] = mapped_column(String(20))
    sid: Mapped[str | None] = mapped_column(String(40), default=None)
    status: Mapped[str] = mapped_column(String(16), default="sending")
    segments: Mapped[int] = mapped_column(Integer, default=0)
    marketing: Mapped[bool] = mapped_column(Boolean, default=True)  # counts against the contact policy
    body_sha256: Mapped[str] = mapped_column(String(64), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    attempted_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime]
