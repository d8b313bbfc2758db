"""How a worker takes work: inbox events, due wake-ups and outbox rows, in batches.

On PostgreSQL rows are locked with ``FOR UPDATE SKIP LOCKED`` so any number of workers
share one database; on SQLite one process writes at a time (BEGIN IMMEDIATE), so a
plain ordered select is already exclusive.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from crm_journeys.storage.models import InboxEvent, OutboxMessage, Wakeup

LEASE = timedelta(minutes=5)


class Claims:
    def __init__(self, postgres: bool):
        self.postgres = postgres

    def _locked(self, stmt: Select[Any]) -> Select[Any]:
        return stmt.with_for_update(skip_locked=True) if self.postgres else stmt

    def inbox(self, session: Session, limit: int, worker: str, now: datetime) -> list[InboxEvent]:
        stmt = (select(InboxEvent).where(InboxEvent.status == "pending")
                .order_by(InboxEvent.id).limit(limit))
        return list(session.scalars(self._locked(stmt)))

    def wakeups(self, session: Session, now: datetime, limit: int) -> list[Wakeup]:
        stmt = (select(Wakeup).where(Wakeup.pending.is_(True), Wakeup.due_at <= now)
                .order_by(Wakeup.due_at, Wakeup.id).limit(limit))
        return list(session.scalars(self._locked(stmt)))

    def outbox(self, session: Session, now: datetime, limit: int, worker: str) -> list[OutboxMessage]:
        stmt = (select(OutboxMessage)
                .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now,
                       or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until < now))
                .order_by(OutboxMessage.id).limit(limit))
        rows = list(session.scalars(self._locked(stmt)))
        for row in rows:
            row.claimed_by = worker
            row.lease_until = now + LEASE
        return rows
