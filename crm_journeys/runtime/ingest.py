"""The inbox's front door: every event, from any source, lands here first and only once.

Webhooks, the events API, syncs and actions all call ``ingest``. The sender's id is the
de-duplication key, so a webhook delivered twice or a sync page read twice is one event.
Nothing is decided here; the dispatcher reads the inbox in order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from crm_journeys.storage import bulk
from crm_journeys.storage.db import ANNOUNCE
from crm_journeys.storage.models import InboxEvent

CHANNEL = "crm_journeys_work"  # PostgreSQL NOTIFY channel: new inbox events

DEDUP = ("tenant_id", "dedup_key")  # an event's identity, and the inbox's unique key


@dataclass
class IncomingEvent:
    """A canonical event. ``contact`` identifies the contact by ``id`` (the host's id)
    and/or ``email``; ``properties`` carry the event's data (for ``contact_upserted``, the
    canonical contact itself)."""

    type: str
    contact: dict[str, Any]
    key: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None
    dedup_key: str | None = None

    def contact_ref(self) -> str:
        ident = self.contact.get("id") or self.contact.get("external_id")
        return f"id:{ident}" if ident else f"email:{(self.contact.get('email') or '').lower()}"

    def derived_dedup_key(self) -> str:
        """Without a sender id, the content is the identity (same content, same event)."""
        if self.dedup_key:
            return self.dedup_key[:200]
        body = json.dumps([self.type, self.key, self.contact_ref(), self.properties,
                           self.occurred_at.isoformat() if self.occurred_at else None],
                          sort_keys=True, default=str)
        return "h:" + hashlib.sha256(body.encode()).hexdigest()


def ingest(session: Session, tenant_id: int, event: IncomingEvent, now: datetime) -> bool:
    """Store one event; False when it was a duplicate."""
    return ingest_many(session, tenant_id, [event], now) == 1


def ingest_many(session: Session, tenant_id: int, events: list[IncomingEvent], now: datetime) -> int:
    """Store events in one statement; returns how many were new."""
    if not events:
        return 0
    rows = [_row(tenant_id, e, now) for e in events]
    session.flush()  # pending ORM rows (a new tenant, say) first, as callers expect
    new = len(bulk.insert_ignoring_returning(session, InboxEvent.__table__, rows, DEDUP, DEDUP))
    if new:
        announce_work(session)
        session.info[ANNOUNCE] = True  # Database.unit_of_work wakes this process's worker
    return new


def announce_work(target: Session | Connection) -> None:
    """Tell workers in other processes that events are waiting: PostgreSQL delivers the
    NOTIFY when (and only if) the transaction commits (``runtime.listen`` hears it)."""
    bind = target.get_bind() if isinstance(target, Session) else target
    if bind.dialect.name == "postgresql":
        target.execute(text(f"NOTIFY {CHANNEL}"))


def ingest_each(conn: Connection, events: list[tuple[int, IncomingEvent, datetime]]) -> list[bool]:
    """Store (tenant id, event, received at) triples of any tenants in one statement, inside
    the caller's transaction; for each, whether it was new. A repeat within ``events`` is a
    duplicate of its first occurrence, as if they had been stored one after the other.

    Core, not a Session: the events API stores the events of several requests at once
    (``web/api/intake.py``) and pays for no identity map or flush.
    """
    if not events:
        return []
    rows = [_row(tenant_id, e, now) for tenant_id, e, now in events]
    inserted = set(bulk.insert_ignoring_returning(conn, InboxEvent.__table__, rows, DEDUP, DEDUP))
    if inserted:
        announce_work(conn)  # the caller announces in-process after its commit
    new = []
    for row in rows:
        ident = (row["tenant_id"], row["dedup_key"])
        new.append(ident in inserted)
        inserted.discard(ident)  # a later repeat in this batch is the duplicate
    return new


def _row(tenant_id: int, event: IncomingEvent, now: datetime) -> dict[str, Any]:
    contact = {k: v for k, v in event.contact.items() if v not in (None, "")}
    return {
        "tenant_id": tenant_id, "dedup_key": event.derived_dedup_key(), "type": event.type,
        "key": str(event.key or ""), "contact_ref": event.contact_ref(),
        "payload": {"contact": contact, "properties": event.properties},
        "status": "pending", "attempts": 0, "error": "",
        "occurred_at": event.occurred_at or now, "received_at": now,
    }
