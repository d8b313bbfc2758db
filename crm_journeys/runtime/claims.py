"""How a worker takes work: inbox events, due wake-ups and outbox rows, in batches.

On SQLite one process writes at a time (BEGIN IMMEDIATE), so a plain ordered select is
already exclusive.

On PostgreSQL any number of workers share one database:

* Rows are locked with ``FOR UPDATE SKIP LOCKED``, so workers never wait on each other's
  batches.
* A contact belongs to one worker at a time: for every contact in its batch the worker
  takes ``pg_try_advisory_xact_lock(key(tenant, contact))``. A contact whose lock is held
  elsewhere is skipped this round. Having the lock, the worker re-reads the contact's
  pending events (a fresh snapshot: the previous holder committed before its lock went)
  and keeps only the ones older than any pending event it did not lock, so each
  contact's events are handled in id order, never two at once. Due wake-ups take the
  same per-contact lock.
* Inbox events and wake-ups are processed in the transaction that claimed them: a worker
  that dies (even SIGKILL) loses its connection, PostgreSQL rolls the transaction back
  and the rows and advisory locks are free at once. ``claimed_by``/``lease_until`` are
  still written for visibility, and a row whose lease has not run out is not taken.
* Outbox rows are claimed in a short transaction of their own (the action runs outside
  any transaction), so their lease is what hands a dead worker's rows to another one
  once it expires; idempotency keys make a re-run harmless. The lease is short
  (``OUTBOX_LEASE``) and renewed while the row is delivered (``renew``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Exists, Integer, Select, bindparam, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT
from sqlalchemy.orm import Session, aliased

from crm_journeys.runtime.lanes import parked_lanes
from crm_journeys.storage.models import Contact, InboxEvent, Instance, OutboxMessage, Wakeup

LEASE = timedelta(minutes=5)
# An outbox row's lease is renewed while it is delivered (``renew``), so it can be short:
# a worker killed with -9 leaves rows that another worker takes within this long.
OUTBOX_LEASE = timedelta(seconds=15)


def contact_lock_key(tenant_id: int, contact_ref: str) -> int:
    """A signed 64-bit advisory-lock key for one contact of one tenant."""
    digest = hashlib.blake2b(f"{tenant_id}:{contact_ref}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def canonical_ref(external_id: str) -> str:
    """The inbox's ``contact_ref`` of a mirrored contact (see ``IncomingEvent.contact_ref``)."""
    return external_id if external_id.startswith("email:") else f"id:{external_id}"


_TRY_LOCKS = text("SELECT k, pg_try_advisory_xact_lock(k) FROM unnest(:keys) AS k").bindparams(
    bindparam("keys", type_=ARRAY(BIGINT)))


class Claims:
    def __init__(self, postgres: bool, lease: timedelta = LEASE, outbox_lease: timedelta = OUTBOX_LEASE):
        self.postgres = postgres
        self.lease = lease
        self.outbox_lease = outbox_lease

    def _locked(self, stmt: Select[Any]) -> Select[Any]:
        return stmt.with_for_update(skip_locked=True) if self.postgres else stmt

    def _try_locks(self, session: Session, keys: list[int]) -> set[int]:
        if not keys:
            return set()
        return {k for k, ok in session.execute(_TRY_LOCKS, {"keys": keys}) if ok}

    # --- inbox --------------------------------------------------------------------------
    def inbox(self, session: Session, limit: int, worker: str, now: datetime) -> list[Any]:
        """Pending events in id order, as read-only rows (a batch marks them done or failed
        with plain UPDATEs; rows cost far less to load than ORM objects)."""
        stmt = (select(InboxEvent.__table__).where(InboxEvent.status == "pending")
                .order_by(InboxEvent.id).limit(limit))
        if not self.postgres:
            return _fetch(session, stmt)
        stmt = stmt.where(or_(InboxEvent.lease_until.is_(None), InboxEvent.lease_until < now))
        rows = _fetch(session, self._locked(stmt))
        if not rows:
            return []
        by_contact: OrderedDict[tuple[int, str], list[Any]] = OrderedDict()
        for row in rows:
            by_contact.setdefault((row.tenant_id, row.contact_ref), []).append(row)
        keys = {c: contact_lock_key(*c) for c in by_contact}
        held = self._try_locks(session, list(keys.values()))
        mine = {c: evs for c, evs in by_contact.items() if keys[c] in held}
        if not mine:
            return []
        # Pending events of those contacts that this batch did not lock: nothing after the
        # first of them may be handled now, or the contact's order would break.
        mine_ids = [e.id for evs in mine.values() for e in evs]
        cutoff: dict[tuple[int, str], int] = {}
        others = session.execute(
            select(InboxEvent.id, InboxEvent.tenant_id, InboxEvent.contact_ref)
            .where(InboxEvent.status == "pending", InboxEvent.id < max(mine_ids),
                   tuple_(InboxEvent.tenant_id, InboxEvent.contact_ref).in_(list(mine)),
                   InboxEvent.id.not_in(mine_ids)))
        for oid, tenant_id, ref in others:
            c = (tenant_id, ref)
            cutoff[c] = min(cutoff.get(c, oid), oid)
        taken: list[Any] = []
        for c, evs in mine.items():
            limit_id = cutoff.get(c)
            taken.extend(e for e in evs if limit_id is None or e.id < limit_id)
        taken.sort(key=lambda e: e.id)
        session.execute(update(InboxEvent).where(InboxEvent.id.in_([e.id for e in taken]))
                        .values(claimed_by=worker, lease_until=now + self.lease))
        return taken

    # --- wake-ups -----------------------------------------------------------------------
    def wakeups(self, session: Session, now: datetime, limit: int) -> list[Any]:
        """Due wake-ups as read-only rows (a batch closes them with one UPDATE and never
        changes them; rows cost far less to load than ORM objects)."""
        stmt = (select(Wakeup.__table__)
                .where(Wakeup.pending.is_(True), Wakeup.due_at <= now,
                       Wakeup.instance_id.not_in(paused_instances()))
                .order_by(Wakeup.due_at, Wakeup.id).limit(limit))
        rows = _fetch(session, self._locked(stmt))
        if not self.postgres or not rows:
            return rows
        refs = dict(session.execute(
            select(Instance.id, Contact.external_id).join(Contact, Contact.id == Instance.contact_id)
            .where(Instance.id.in_({w.instance_id for w in rows}))).all())
        keys = {w.id: contact_lock_key(w.tenant_id, canonical_ref(refs.get(w.instance_id, "")))
                for w in rows}
        held = self._try_locks(session, sorted(set(keys.values())))
        return [w for w in rows if keys[w.id] in held]

    # --- outbox -------------------------------------------------------------------------
    def outbox(self, session: Session, now: datetime, limit: int, worker: str, *,
               skip_lanes: Collection[str] = (),
               choose: Callable[[Session, list[OutboxMessage]], list[OutboxMessage]] | None = None,
               ) -> list[OutboxMessage]:
        """Due rows outside parked lanes (``runtime.lanes``) and ``skip_lanes`` (lanes this
        worker holds enough of), whose contact has no row in flight, leased to ``worker``.
        ``choose`` keeps a fair subset of the rows read (the delivery pool); the others
        stay untouched for the next claim."""
        rows = list(session.scalars(_due_outbox(self.postgres),
                                    {"now": now, "limit": limit, "skip": sorted(skip_lanes)}))
        if choose is not None:
            rows = choose(session, rows)
        lease = now + self.outbox_lease
        for row in rows:
            row.claimed_by = worker
            row.lease_until = lease
        return rows

    def renew(self, session: Session, now: datetime, ids: Collection[int], worker: str) -> int:
        """Heartbeat: extend the lease of rows this worker is still delivering, so no other
        worker takes them however long their host takes to answer."""
        if not ids:
            return 0
        result = session.execute(update(OutboxMessage)
                                 .where(OutboxMessage.id.in_(list(ids)), OutboxMessage.claimed_by == worker,
                                        OutboxMessage.status == "pending")
                                 .values(lease_until=now + self.outbox_lease))
        return int(getattr(result, "rowcount", 0) or 0)


__all__ = ["LEASE", "OUTBOX_LEASE", "Claims", "canonical_ref", "contact_lock_key"]


def _fetch(session: Session, stmt: Select[Any]) -> list[Any]:
    return list(session.execute(stmt).all())


@cache
def _due_outbox(postgres: bool) -> Select[Any]:
    """The outbox claim's select, built once (a worker claims many times a second, and
    building it cost more than running it): parameters ``now``, ``limit`` and ``skip``."""
    now = bindparam("now", type_=OutboxMessage.__table__.c.next_attempt_at.type)
    stmt = (select(OutboxMessage)
            .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now,
                   or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until < now),
                   OutboxMessage.lane.not_in(parked_lanes(now)), ~_contact_in_flight(now),
                   OutboxMessage.lane.not_in(bindparam("skip", expanding=True)))
            .order_by(OutboxMessage.id).limit(bindparam("limit", type_=Integer)))
    return stmt.with_for_update(skip_locked=True) if postgres else stmt


def _contact_in_flight(now: Any) -> Exists:
    """Another row of the same contact is being delivered (pending, its lease live), by
    this worker or any other: a contact's rows run one at a time, in order, even when
    two claims (the dispatcher's hand-off and the delivery pool's) or two workers look at
    them at once."""
    other = aliased(OutboxMessage)
    return (select(other.id).where(other.contact_id == OutboxMessage.contact_id, other.status == "pending",
                                   other.lease_until >= now, other.id != OutboxMessage.id)
            .exists())


def paused_instances() -> Select[Any]:
    """Instances of paused journeys: their wake-ups wait, untaken, until a resume."""
    from crm_journeys.storage.models import Journey

    return (select(Instance.id).join(Journey, Journey.id == Instance.journey_id)
            .where(Journey.status == "paused"))
