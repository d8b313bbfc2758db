"""What one dispatch batch reads and writes, gathered so the batch costs a few queries.

The batch's contacts, their instances, journey statuses, routes, segments and outbox keys
are read once inside the batch's own transaction (so they are exactly as fresh as
per-event queries would be); new rows, step logs and wake-up cancels are written once at
the end. It is the only way dispatch and wake-ups write: when a batch fails, each event
(or wake-up) is redone as a batch of one in a savepoint, through the same code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from crm_journeys.runtime.ids import IdSource
from crm_journeys.runtime.rows import RowWriter
from crm_journeys.storage import bulk
from crm_journeys.storage.models import (
    Contact,
    InboxEvent,
    Instance,
    Journey,
    JourneyVersion,
    OutboxMessage,
    Route,
    StepLog,
    Wakeup,
)


@contextmanager
def open_batch(session: Session, events: list[Any], *, expected_rows: int = 0) -> Iterator[BatchCache]:
    """A batch over ``events`` (plain inbox rows; none for wake-ups): what it queued is
    written when the block ends normally, and it is closed either way."""
    batch = BatchCache(session, events, expected_rows=expected_rows)
    try:
        yield batch
        batch.finish()
    finally:
        batch.close()


class BatchCache:
    """What one batch of events reads, loaded in a few queries inside the batch's own
    transaction (so it is exactly as fresh as per-event queries would be): the contacts
    the events name, all their instances (for in-flight reactions, entry history and
    rotations), the live/paused status of those instances' journeys, and each tenant's
    routes. Contacts and instances created during the batch are added as they appear."""

    def __init__(self, session: Session, events: list[Any], *, expected_rows: int = 0):
        self.session = session
        self._by_ext: dict[tuple[int, str], Contact] = {}
        self._by_email: dict[tuple[int, str], Contact] = {}
        self._asked_ext: set[tuple[int, str]] = set()
        self._asked_email: set[tuple[int, str]] = set()
        self._instances: dict[int, list[Instance]] = {}
        self._journey_live: dict[int, bool] = {}
        self._routes: dict[int, dict[tuple[str, str], set[int]]] = {}
        self._by_event: dict[int, dict[str, dict[str, set[int]]]] = {}  # the routes by event, then key
        self._prefixed: dict[tuple[int, str], list[str]] = {}  # route events with a prefix
        self._segments: dict[int, list[Any]] = {}
        self._logs: list[dict[str, Any]] = []
        self._cancels: set[int] = set()  # instances whose older wake-ups close at the end
        self._new_wakeups: dict[int, list[Any]] = {}  # this batch's wake-ups, by instance
        self._done: list[dict[str, Any]] = []
        self._keys: dict[int, tuple[str, str | None]] = {}
        self._identity_moved = False
        self._outbox: list[dict[str, Any]] = []
        self._outbox_keys: set[tuple[int, str]] = set()
        self._outbox_logs: list[tuple[tuple[int, str], dict[str, Any]]] = []
        self.rows = RowWriter(session)  # new rows, and rows read as plain rows (``RowWriter.load``)
        self.ids = IdSource(session, block=max(len(events), expected_rows, 50))
        self._fired: list[dict[str, Any]] = []
        self._listening = False
        wanted: dict[int, tuple[set[str], set[str]]] = {}
        for event in events:
            ident = event.payload.get("contact") or {}
            exts, emails = wanted.setdefault(event.tenant_id, (set(), set()))
            ext = str(ident.get("id") or ident.get("external_id") or "")
            email = (ident.get("email") or "").lower()
            if ext:
                exts.add(ext)
            if email:
                emails.add(email)
        for tenant_id, (exts, emails) in wanted.items():
            self._asked_ext.update((tenant_id, e) for e in exts)
            self._asked_email.update((tenant_id, e) for e in emails)
            found: list[Contact] = []
            for column, values in ((Contact.external_id, exts), (Contact.email, emails)):
                for chunk in _chunks(sorted(values)):
                    found.extend(session.scalars(select(Contact).where(Contact.tenant_id == tenant_id,
                                                                       column.in_(chunk))))
            for contact in sorted(found, key=lambda c: c.id, reverse=True):  # lowest id wins an email
                self._index(contact)
        known = {c.id: c.tenant_id for c in (*self._by_ext.values(), *self._by_email.values())}
        ids = sorted(known)
        for tenant_id in sorted(set(known.values())):
            mine = [i for i in ids if known[i] == tenant_id]
            for chunk in _chunks(mine):
                for inst in session.scalars(select(Instance).where(Instance.tenant_id == tenant_id,
                                                                   Instance.contact_id.in_(chunk))
                                            .order_by(Instance.id)):
                    self._instances.setdefault(inst.contact_id, []).append(inst)
        journeys = sorted({i.journey_id for lst in self._instances.values() for i in lst})
        for chunk in _chunks(journeys):
            for jid, status in session.execute(select(Journey.id, Journey.status).where(Journey.id.in_(chunk))):
                self._journey_live[jid] = status == "live"
        for contact_id in ids:
            self._instances.setdefault(contact_id, [])
        sa_event.listen(session, "before_flush", self._before_flush)  # last: a failed read leaves none
        self._listening = True

    # --- writes -------------------------------------------------------------------------
    def new_row(self, model: Any, values: dict[str, Any]) -> Any:
        """A new contact, instance or wake-up as a plain row the batch inserts itself
        (``rows.RowWriter``), its id handed out without a flush (``ids.IdSource``)."""
        row = self.rows.create(model, self.ids.next(model), values)
        if model is Wakeup:
            self._new_wakeups.setdefault(row.instance_id, []).append(row)
        return row

    def fired(self, wakeup: Any, now: datetime) -> None:
        """A wake-up fired (with its lateness): one UPDATE for the batch's wake-ups."""
        late = max(0, int((now - wakeup.due_at).total_seconds() * 1000))
        self._fired.append({"wid": wakeup.id, "now": now, "late": late})

    def _before_flush(self, session: Session, context: Any, instances: Any) -> None:
        """Rows flushed now (a query's autoflush) may refer to the batch's new rows."""
        if self.rows.pending:
            self.rows.insert_new()

    def queue_outbox(self, row: dict[str, Any], detail: dict[str, Any]) -> None:
        """Queue one outbox row for the batch's single ``INSERT .. ON CONFLICT DO NOTHING
        RETURNING``; ``detail["queued"]`` (its step log's) says whether it was new once
        that insert ran. A key already queued in this batch is not new."""
        key = (row["tenant_id"], row["idempotency_key"])
        if key in self._outbox_keys:
            detail["queued"] = False
            return
        self._outbox_keys.add(key)
        self._outbox.append(row)
        self._outbox_logs.append((key, detail))

    def cancel_wakeups(self, instance_id: int) -> None:
        """Close the instance's pending wake-ups as of now: the ones this batch made so far
        at once (they are plain rows), the older ones with one UPDATE at the end of the
        batch. That UPDATE stops below the batch's first new wake-up id: every older row's
        id is lower (SQLite's single writer counts up; a PostgreSQL sequence only grows, and
        the older rows were committed before this batch locked the contact), so holds made
        later in the batch stay pending."""
        for row in self._new_wakeups.get(instance_id, ()):
            row.pending = False
        self._cancels.add(instance_id)

    def queue_log(self, row: dict[str, Any]) -> None:
        self._logs.append(row)

    def mark_done(self, event: Any, now: datetime) -> None:
        """The event is processed: one UPDATE for the batch's events at the end."""
        self._done.append({"eid": event.id, "now": now})

    def finish(self) -> None:
        """Write what was queued: the instances first (outbox rows and logs refer to them)."""
        self.rows.write()
        if self._fired:
            bulk.execute_many(self.session, _MARK_FIRED, self._fired)
            self._fired = []
        self.session.flush()
        self._stop_listening()
        if self._outbox:
            new = set(bulk.insert_ignoring_returning(self.session, OutboxMessage.__table__, self._outbox,
                                                     _OUTBOX_KEY, _OUTBOX_KEY))
            for key, detail in self._outbox_logs:
                detail["queued"] = key in new
            self._outbox, self._outbox_logs = [], []
        if self._logs:
            bulk.execute_many(self.session, _INSERT_LOG, self._logs)
            self._logs = []
        if self._done:
            bulk.execute_many(self.session, _MARK_DONE, self._done)
            self._done = []
        if self._cancels:
            below = self.ids.first(Wakeup) or _NO_BOUND
            bulk.execute_many(self.session, _CANCEL_WAKEUPS,
                              [{"iid": iid, "below": below} for iid in sorted(self._cancels)])
            self._cancels = set()

    def close(self) -> None:
        """End the batch, finished or not: stop watching the session's flushes, and expire
        the session's ORM objects. The batch wrote rows past the ORM (and a failed one was
        rolled back), so an object loaded meanwhile may hold values the database no longer
        has; whatever runs next in this transaction, such as the next batch of one, reads
        them again."""
        self._stop_listening()
        self.session.expire_all()

    def _stop_listening(self) -> None:
        # The listener ties the session and this cache in a cycle: untie it, so the batch's
        # objects are freed by reference counting instead of by the cyclic collector; and a
        # failed batch's rows must not be inserted by a later flush.
        if self._listening:
            sa_event.remove(self.session, "before_flush", self._before_flush)
            self._listening = False

    def note(self, contact: Contact) -> None:
        """After an event changed ``contact``: keep the lookups right if its identity moved."""
        if self._keys.get(contact.id) != (contact.external_id, contact.email):
            self._identity_moved = True
            self._index(contact)

    def _index(self, contact: Contact) -> None:
        self._keys[contact.id] = (contact.external_id, contact.email)
        self._by_ext[(contact.tenant_id, contact.external_id)] = contact
        if contact.email:
            self._by_email[(contact.tenant_id, contact.email)] = contact

    # --- contacts -----------------------------------------------------------------------
    def contact(self, tenant_id: int, external_id: str, email: str | None) -> Contact | None:
        """The contact the per-event lookup would find (by id first, then by email)."""
        if external_id:
            hit = self._by_ext.get((tenant_id, external_id))
            if hit is not None and hit.external_id == external_id:
                return hit
        if email:
            hit = self._by_email.get((tenant_id, email))
            if hit is not None and hit.email == email:
                return hit
        return None

    def complete(self, tenant_id: int, external_id: str, email: str | None) -> bool:
        """True when a miss is certain: both keys were looked up for this batch and no
        contact seen since has changed identity (else ask the database)."""
        return ((not external_id or (tenant_id, external_id) in self._asked_ext)
                and (not email or (tenant_id, email) in self._asked_email)
                and not self._identity_changed())

    def _identity_changed(self) -> bool:
        return self._identity_moved

    def add_contact(self, contact: Contact, *, new: bool) -> None:
        """A contact created in this batch (no instances yet) or found by a query."""
        self._index(contact)
        if new:
            self._instances.setdefault(contact.id, [])
        elif contact.id not in self._instances:
            self._instances[contact.id] = list(self.session.scalars(
                select(Instance).where(Instance.tenant_id == contact.tenant_id, Instance.contact_id == contact.id)
                .order_by(Instance.id)))

    # --- instances ----------------------------------------------------------------------
    def instances_of(self, contact_id: int) -> list[Instance]:
        return self._instances.setdefault(contact_id, [])

    def _live(self, journey_id: int) -> bool:
        live = self._journey_live.get(journey_id)
        if live is None:
            live = self.session.scalar(select(Journey.status).where(Journey.id == journey_id)) == "live"
            self._journey_live[journey_id] = live
        return live

    def in_flight(self, contact_id: int) -> list[Instance]:
        return [i for i in self.instances_of(contact_id) if i.status == "active" and self._live(i.journey_id)]

    def history(self, journey_id: int, contact_id: int, entry_key: str, now: datetime) -> dict[str, Any]:
        """As ``transitions.history``, from the batch's instances."""
        mine = [i for i in self.instances_of(contact_id) if i.journey_id == journey_id and i.entry_key == entry_key]
        last = max((i.entered_at for i in mine), default=None)
        since = (now - last).total_seconds() if last else 0
        return {"entries": len(mine), "active": sum(1 for i in mine if i.status == "active"),
                "since_entry": since}

    # --- routes -------------------------------------------------------------------------
    def aux_versions(self, tenant_id: int, events: list[str] | None, key: str | None,
                     prefix: str) -> set[int]:
        """Version ids holding one of the aux routes ``events`` (all with ``prefix`` when None).

        Looked up by event, then key: called for every event of a batch, so a scan of all
        the tenant's routes made the rate fall with the number of published journeys
        (bench P2)."""
        by_event = self._routes_by_event(tenant_id)
        if events is None:
            events = self._prefixed.get((tenant_id, prefix))
            if events is None:
                events = self._prefixed[(tenant_id, prefix)] = [ev for ev in by_event if ev.startswith(prefix)]
        found: set[int] = set()
        for ev in events:
            keys = by_event.get(ev)
            if not keys:
                continue
            if key is None:
                for vids in keys.values():
                    found |= vids
            else:
                found |= keys.get(key, _NONE) | keys.get("*", _NONE)
        return found

    def _routes_by_event(self, tenant_id: int) -> dict[str, dict[str, set[int]]]:
        by_event = self._by_event.get(tenant_id)
        if by_event is None:
            self.routed(tenant_id, "", "")
            by_event = self._by_event[tenant_id] = {}
            for (ev, k), vids in self._routes[tenant_id].items():
                by_event.setdefault(ev, {})[k] = vids
        return by_event

    def segments(self, tenant_id: int) -> list[Any]:
        """The tenant's saved segments, read once per batch."""
        if tenant_id not in self._segments:
            from crm_journeys.storage.journey_models import Segment

            self._segments[tenant_id] = list(self.session.scalars(
                select(Segment).where(Segment.tenant_id == tenant_id).order_by(Segment.id)))
        return self._segments[tenant_id]

    def routed(self, tenant_id: int, event: str, key: str) -> set[int]:
        routes = self._routes.get(tenant_id)
        if routes is None:
            routes = {}
            for ev, k, vid in self.session.execute(
                    select(Route.event, Route.key, Route.version_id)
                    .join(JourneyVersion, JourneyVersion.id == Route.version_id)
                    .where(Route.tenant_id == tenant_id, JourneyVersion.active.is_(True))):
                routes.setdefault((ev, k), set()).add(vid)
            self._routes[tenant_id] = routes
        return routes.get((event, key), set()) | routes.get((event, "*"), set())


_CANCEL_WAKEUPS = (update(Wakeup).where(Wakeup.instance_id == bindparam("iid"), Wakeup.pending.is_(True),
                                       Wakeup.id < bindparam("below")).values(pending=False))
_INSERT_LOG = insert(StepLog)
_OUTBOX_KEY = ("tenant_id", "idempotency_key")
_NONE: frozenset[int] = frozenset()
_NO_BOUND = 2 ** 62  # no new wake-up in the batch: every pending one is older
_MARK_DONE = (update(InboxEvent).where(InboxEvent.id == bindparam("eid"))
              .values(status="done", processed_at=bindparam("now"), attempts=InboxEvent.attempts + 1))
_MARK_FIRED = (update(Wakeup).where(Wakeup.id == bindparam("wid"))
               .values(pending=False, fired_at=bindparam("now"), lateness_ms=bindparam("late")))


def _chunks(values: list[Any], size: int = 500) -> list[list[Any]]:
    return [values[i:i + size] for i in range(0, len(values), size)]
