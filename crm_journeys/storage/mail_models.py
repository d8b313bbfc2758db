"""Rows behind email as a marketing channel: consent per contact and channel, and one
row per email sent (what its tracking and unsubscribe links resolve to).

Same declarative base and ``cj_`` prefix as ``storage.models``; every row carries
``tenant_id``. A contact with no ``Consent`` row for a channel was never asked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_journeys.storage.models import Base, IdType


class Consent(Base):
    """A contact's marketing consent on one channel (``email`` today, ``sms`` next).

    ``status`` is ``subscribed`` or ``unsubscribed``; ``changed_at`` and ``source`` say when
    and how (``one_click``, ``preferences``, ``host``, ``complaint``, ``api``...).
    ``bounced_at`` marks an address that hard-bounced: nothing at all, not even a
    transactional message, is sent to it until it changes.
    """

    __tablename__ = "cj_consent"
    __table_args__ = (UniqueConstraint("tenant_id", "contact_id", "channel"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("cj_tenant.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("cj_contact.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(10), default="email")
    status: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(40), default="")
    bounced_at: Mapped[datetime | None] = mapped_column(default=None)
    bounce_reason: Mapped[str] = mapped_column(Text, default="")


class EmailSend(Base):
    """One email the journeys sent (or skipped): what its signed links point back to.

    ``public_id`` is random and is the only identifier a link carries (signed), so a link
    names no contact; ``links`` are the URLs that were in the body, in order, and a click
    redirects only to one of them.
    """

    __tablename__ = "cj_email_send"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key"),
                      Index("ix_cj_email_send_contact", "tenant_id", "contact_id"))
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("cj_tenant.id", ondelete="CASCADE"))
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    contact_id: Mapped[int] = mapped_column(ForeignKey("cj_contact.id", ondelete="CASCADE"))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("cj_instance.id", ondelete="SET NULL"), default=None)
    journey_id: Mapped[int | None] = mapped_column(IdType, default=None)
    email_id: Mapped[str] = mapped_column(String(80), default="")
    marketing: Mapped[bool] = mapped_column(Boolean, default=True)
    tracked: Mapped[bool] = mapped_column(Boolean, default=True)
    links: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default="sending")  # sending|sent|skipped|bounced|queued|uncertain
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
