"""Rows behind starting points the runtime computes: date schedules, lapses, saved
segments and custom trigger declarations.

Same declarative base and ``cj_`` prefix as ``storage.models``; every row carries
``tenant_id``. Date schedules and lapses are due-time indexes (like ``cj_wakeup``): the
worker reads the few rows that are due, never every contact.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crm_journeys.storage.models import Base, IdType


class DateSchedule(Base):
    """The next due instant of one date starting point for one contact.

    ``pending`` goes false once a ``once`` schedule fired or the date disappeared; yearly
    schedules are moved to next year's instant when they fire.
    """

    __tablename__ = "cj_date_schedule"
    __table_args__ = (
        UniqueConstraint("version_id", "starting_point", "contact_id"),
        Index("ix_cj_date_schedule_due", "pending", "due_at"),
        Index("ix_cj_date_schedule_contact", "tenant_id", "contact_id"),
    )
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("cj_tenant.id", ondelete="CASCADE"))
    journey_id: Mapped[int] = mapped_column(ForeignKey("cj_journey.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(ForeignKey("cj_journey_version.id", ondelete="CASCADE"))
    starting_point: Mapped[str] = mapped_column(String(80))
    contact_id: Mapped[int] = mapped_column(ForeignKey("cj_contact.id", ondelete="CASCADE"))
    field: Mapped[str] = mapped_column(String(120), default="")
    date: Mapped[str] = mapped_column(String(10), default="")  # the local date due (after offset)
    due_at: Mapped[datetime]
    pending: Mapped[bool] = mapped_column(Boolean, default=True)
    fired_count: Mapped[int] = mapped_column(Integer, default=0)
    last_fired_at: Mapped[datetime | None] = mapped_column(default=None)


class LapseTimer(Base):
    """"Nothing happened within N": armed by a source event, cancelled by a cancel event
    with the same correlate value, otherwise fires the trigger's own event when due."""

    __tablename__ = "cj_lapse"
    __table_args__ = (
        Index("ix_cj_lapse_due", "status", "due_at"),
        Index("ix_cj_lapse_cancel", "tenant_id", "contact_id", "cancel_event", "status"),
    )
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("cj_tenant.id", ondelete="CASCADE"))
    journey_id: Mapped[int] = mapped_column(ForeignKey("cj_journey.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(ForeignKey("cj_journey_version.id", ondelete="CASCADE"))
    starting_point: Mapped[str] = mapped_column(String(80))
    contact_id: Mapped[int] = mapped_column(ForeignKey("cj_contact.id", ondelete="CASCADE"))
    emit_event: Mapped[str] = mapped_column(String(60))
    cancel_event: Mapped[str] = mapped_column(String(60))
    correlate: Mapped[str] = mapped_column(String(200), default="")
    props: Mapped[dict[str, Any]] = mapped_column(default=dict)
    armed_at: Mapped[datetime]
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending|fired|cancelled


class Segment(Base):
    """A saved, named, reusable filter; members are listed in ``Contact.segments``."""

    __tablename__ = "cj_segment"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("cj_tenant.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    condition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CustomTrigger(Base):
    """An admin-defined business event: its name and the attributes it must carry.

    ``attributes`` maps attribute name -> {"type": text|number|boolean|date|list,
    "required": bool}; events are validated against it on arrival.
    """

    __tablename__ = "cj_custom_trigger"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("cj_tenant.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
