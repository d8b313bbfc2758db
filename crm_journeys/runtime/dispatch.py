"""Reads the inbox in order and turns each event into decisions and their effects.

For one event, always in this order (the same for the worker, the events API and
``simulate``, which all go through the inbox): (1) update the contact mirror and derive
canonical signals (``runtime.mirror``), so nothing reads the record before it changed;
(2) for each signal, in order, let in-flight instances of the contact react
(react-to-event, if/then, goals, exits), (3) then let routed journeys decide whether the
contact enters; a contact entering on a signal does not react to that same signal. A batch
of events commits with its effects in one transaction (``runtime.batch``); when it fails,
each event is redone alone as a batch of one in a savepoint, so a poison event is marked
failed with its reason and the rest of the batch goes on.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crm_journeys.runtime import facts
from crm_journeys.runtime.batch import BatchCache, open_batch
from crm_journeys.runtime.consent import sync_from_host
from crm_journeys.runtime.mirror import SNAPSHOT, Signal, apply_event
from crm_journeys.runtime.normalise import NEW_CONTACT_KEYS
from crm_journeys.runtime.starting_points import observe
from crm_journeys.runtime.transitions import Applier
from crm_journeys.runtime.versions import LoadedVersion
from crm_journeys.storage.models import Contact, InboxEvent, Instance

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime

log = logging.getLogger(__name__)
CONTACT_KEYS = NEW_CONTACT_KEYS


class HandOff(Protocol):
    """The worker's delivery pool (``runtime.delivery``): it leases the outbox rows a
    batch queued inside the batch's transaction, and gets them once it committed."""

    def claim_for_dispatch(self, session: Session) -> list[Any]: ...

    def hand(self, rows: list[Any]) -> None: ...


class Dispatcher:
    def __init__(self, runtime: Runtime):
        self.rt = runtime

    def run_once(self, limit: int = 200, worker_id: str = "local", hand_off: HandOff | None = None) -> int:
        """Process up to ``limit`` pending events; returns how many were handled.

        The whole batch runs in one transaction without savepoints. If any event fails,
        that transaction is rolled back and the batch is redone event by event, each a
        batch of one in its own savepoint (the same code), so a poison event is marked
        failed alone and the rest go on.
        """
        try:
            with self.rt.db.unit_of_work() as session:
                events = self.rt.claims.inbox(session, limit, worker_id, self.rt.clock.now())
                self._run(session, events)
                claimed = hand_off.claim_for_dispatch(session) if hand_off is not None and events else []
            if claimed:
                hand_off.hand(claimed)  # type: ignore[union-attr]  # committed: theirs now
            return len(events)
        except Exception:
            log.info("a batch failed; redoing it event by event", exc_info=True)
        with self.rt.db.unit_of_work() as session:
            events = self.rt.claims.inbox(session, limit, worker_id, self.rt.clock.now())
            for event in events:
                self._run_alone(session, event)
            return len(events)

    def _run(self, session: Session, events: list[Any]) -> None:
        with open_batch(session, events) as batch:
            now = self.rt.clock.now()
            for event in events:
                self.process(session, event, now, batch)

    def _run_alone(self, session: Session, event: Any) -> None:
        try:
            with session.begin_nested():
                self._run(session, [event])
        except Exception as exc:  # a poison event must not block the inbox
            log.exception("event %s failed", event.id, extra={"tenant_id": event.tenant_id})
            session.execute(update(InboxEvent).where(InboxEvent.id == event.id).values(
                attempts=InboxEvent.attempts + 1, status="failed",
                error=f"{type(exc).__name__}: {exc}"[:2000], processed_at=self.rt.clock.now()))

    def process(self, session: Session, event: Any, now: datetime, batch: BatchCache) -> None:
        """One inbox event (a plain row) through the mirror, reactions and entries; its
        writes and its "processed" mark are queued on ``batch``."""
        contact, created = self._contact(session, event, now, batch)
        props = event.payload.get("properties") or {}
        change = apply_event(contact, event.type, event.key, props, now, created=created, at=event.occurred_at)
        if event.type == SNAPSHOT:
            sync_from_host(session, contact, props.get("fields") or {}, now)
        batch.note(contact)
        observe(self.rt, session, contact, event, change, now, batch)  # segments, date index, lapses
        in_flight = batch.in_flight(contact.id)
        for signal in change.signals:
            for inst in in_flight:
                self._react(session, inst, contact, signal, now, batch)
            self._enter(session, contact, signal, now, batch)
        if change.updated:
            for inst in in_flight:
                self._update(session, inst, contact, now, batch)
        batch.mark_done(event, now)

    # --- contacts ---------------------------------------------------------------------
    def _contact(self, session: Session, event: Any, now: datetime, batch: BatchCache) -> tuple[Contact, bool]:
        ident: dict[str, Any] = event.payload.get("contact") or {}
        external_id = str(ident.get("id") or ident.get("external_id") or "")
        email = (ident.get("email") or "").lower() or None
        hit = batch.contact(event.tenant_id, external_id, email)
        if hit is not None:
            return hit, False
        if not batch.complete(event.tenant_id, external_id, email):
            found = self._find_contact(session, event.tenant_id, external_id, email)
            if found is not None:
                known = batch.rows.get(Contact, found.id)  # made in this batch and flushed since
                if known is not None:
                    return known, False
                batch.add_contact(found, new=False)
                return found, False
        values = dict(tenant_id=event.tenant_id, external_id=external_id or f"email:{email}", email=email,
                      fields={k: ident[k] for k in CONTACT_KEYS if ident.get(k)}, tags=[], groups=[],
                      segments=[], activity={}, updated_at=now)
        contact = batch.new_row(Contact, values)
        batch.add_contact(contact, new=True)
        return contact, True

    @staticmethod
    def _find_contact(session: Session, tenant_id: int, external_id: str, email: str | None) -> Contact | None:
        """By id first, then by email: the batch's lookups cannot be sure of a miss."""
        query = select(Contact).where(Contact.tenant_id == tenant_id)
        found = None
        if external_id:
            found = session.scalar(query.where(Contact.external_id == external_id))
        if found is None and email:
            found = session.scalar(query.where(Contact.email == email).limit(1))
        return found

    # --- decisions --------------------------------------------------------------------
    def _react(self, session: Session, inst: Instance, contact: Contact, signal: Signal, now: datetime,
               batch: BatchCache) -> None:
        if inst.status != "active":
            return
        version = self.rt.versions.get(session, inst.version_id)
        listens = version.compiled.listens
        if signal.type not in listens and "*" not in listens:
            return
        self._decide(session, version, contact, inst, "event", signal, now, batch=batch)

    def _update(self, session: Session, inst: Instance, contact: Contact, now: datetime,
                batch: BatchCache) -> None:
        if inst.status != "active":
            return
        version = self.rt.versions.get(session, inst.version_id)
        if "*" in version.compiled.listens:
            self._decide(session, version, contact, inst, "update", Signal("contact_updated"), now, batch=batch)

    def _enter(self, session: Session, contact: Contact, signal: Signal, now: datetime,
               batch: BatchCache) -> None:
        routed = batch.routed(contact.tenant_id, signal.type, signal.key)
        for version in [self.rt.versions.get(session, vid) for vid in sorted(routed)]:
            for route in version.compiled.entry_routes:
                if route["event"] == signal.type and route["key"] in ("*", signal.key):
                    entry_key = str(signal.props.get(route["entry_key"], "")) if route["entry_key"] else ""
                    break
            else:
                continue
            hist = batch.history(version.journey_id, contact.id, entry_key, now)
            self._decide(session, version, contact, None, "trigger", signal, now, hist=hist,
                         entry_key=entry_key, batch=batch)

    def _decide(self, session: Session, version: LoadedVersion, contact: Contact, inst: Instance | None,
                kind: str, signal: Signal, now: datetime, *, hist: dict[str, Any] | None = None,
                entry_key: str = "", batch: BatchCache) -> None:
        msg = facts.message(kind, contact=contact, needs=version.compiled.needs, now=now,
                            event_type=signal.type, key=signal.key, props=signal.props,
                            instance=inst, hist=hist, journey_id=version.journey_id)
        firings = self.rt.engine.decide(version.compiled, msg)
        if firings:
            Applier(session, version, contact, now, batch, known=batch.instances_of(contact.id)).apply(
                firings, inst, entry_key)


def decide_timer(runtime: Runtime, session: Session, inst: Instance, now: datetime, batch: BatchCache) -> None:
    """A due wake-up: the instance's step decides what the timeout means."""
    version = runtime.versions.get(session, inst.version_id)
    contact = batch.rows.get(Contact, inst.contact_id)
    if contact is None:
        contact = session.get(Contact, inst.contact_id)
    assert contact is not None
    msg = facts.message("timer", contact=contact, needs=version.compiled.needs, now=now,
                        event_type="timer", key=inst.step or "", instance=inst,
                        journey_id=version.journey_id)
    firings = runtime.engine.decide(version.compiled, msg)
    Applier(session, version, contact, now, batch).apply(firings, inst)
