"""Runs a journey on recorded or scripted events with a virtual clock, in a throw-away
database, through the very same engine, and reports what would happen.

The report (documented in docs/simulate.md) lists per contact the steps passed with their
times, the branches taken and the actions that would run, and per step the counts.
"""

from __future__ import annotations

import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.clock import VirtualClock
from crm_journeys.connectors.sandbox import SandboxConnector
from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.runtime.normalise import event_time, normalise
from crm_journeys.runtime.services import Runtime
from crm_journeys.runtime.tenants import create_tenant
from crm_journeys.runtime.versions import create_journey, publish
from crm_journeys.runtime.worker import Worker, advance_to
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import Contact, Instance, OutboxMessage, SandboxContact, StepLog


class DryRunConnector(SandboxConnector):
    """The sandbox CRM in the throw-away database; any contact reference is accepted, so
    a journey of a HubSpot tenant can be tried without sending anything anywhere."""

    def _find(self, s: Session, ref: str, *, create: bool) -> SandboxContact | None:
        if ref.startswith("email:") or ref.isdigit() and s.get(SandboxContact, int(ref)) is not None:
            return super()._find(s, ref, create=create)
        return super()._find(s, f"email:{ref.lower()}@dry-run.invalid", create=create)


@dataclass
class World:
    """A throw-away database with one tenant and one published journey."""

    db: Database
    clock: VirtualClock
    runtime: Runtime
    worker: Worker
    tenant_id: int
    journey_id: int


@contextmanager
def throwaway_world(document: dict[str, Any], start: datetime, name: str = "simulation",
                    seed: Callable[[Session, int], None] | None = None) -> Iterator[World]:
    """Publish ``document`` in a fresh SQLite database on a virtual clock; removed afterwards.

    ``seed(session, tenant_id)`` runs before publishing, so contacts it adds are seen by
    publish-time work (date schedules, segment entries) as in the real tenant.

    Raises:
        DefinitionError: the document cannot be published.
    """
    from crm_journeys.actions.registry import installed_actions

    with tempfile.TemporaryDirectory(prefix=f"cj-{name}-") as folder:
        db = Database(f"sqlite:///{Path(folder) / 'world.db'}")
        try:
            db.upgrade()
            clock = VirtualClock(start)
            runtime = Runtime(db=db, clock=clock, settings={"smtp_url": "", "dry_run": True})
            with db.unit_of_work() as s:
                tenant_id = create_tenant(s, name, name.title(), start).id
                if seed is not None:
                    seed(s, tenant_id)
                journey_id = create_journey(s, tenant_id, document, start).id
                publish(s, tenant_id, journey_id, start, actions=installed_actions())
            runtime.use_connector(tenant_id, DryRunConnector({}, {}, database=db, tenant_id=tenant_id, clock=clock))
            yield World(db, clock, runtime, Worker(runtime, worker_id=name), tenant_id, journey_id)
        finally:
            db.dispose()


@dataclass
class ScriptedEvent:
    """One line of an events file: ``{"at", "type", "email"|"contact_id", "key", "properties"}``."""

    at: datetime
    event: IncomingEvent

    @classmethod
    def from_json(cls, data: dict[str, Any], default_at: datetime) -> ScriptedEvent:
        """One line, read as ``POST /api/events`` reads a body (``runtime.normalise``):
        ``at`` is the event's time (``occurred_at`` too), ``contact`` or ``email`` /
        ``contact_id`` name the contact, the routing key comes from ``key`` or the properties.

        Raises:
            EventError: the line names an unknown type, no contact, or a bad time.
        """
        at = event_time(data.get("at") or data.get("occurred_at")) or default_at
        contact = {"email": data.get("email"), "id": data.get("contact_id")}
        contact.update(data.get("contact") or {})
        event = normalise(type_=data.get("type"), name=data.get("name"), contact=contact,
                          properties=data.get("properties"), key=data.get("key"), occurred_at=at,
                          event_id=data.get("id"), id_prefix="sim:")
        return cls(at, event)


@dataclass
class Simulation:
    document: dict[str, Any]
    start: datetime
    until: datetime
    contacts: list[dict[str, Any]] = field(default_factory=list)
    events: list[ScriptedEvent] = field(default_factory=list)

    def run(self) -> dict[str, Any]:
        with throwaway_world(self.document, self.start) as w:
            with w.db.unit_of_work() as s:
                for contact in self.contacts:
                    ingest(s, w.tenant_id, _contact_snapshot(contact), w.clock.now())
            w.worker.drain()
            for scripted in sorted(self.events, key=lambda e: e.at):
                if scripted.at > w.clock.now():
                    advance_to(w.worker, w.clock, scripted.at)
                with w.db.unit_of_work() as s:
                    ingest(s, w.tenant_id, scripted.event, w.clock.now())
                w.worker.drain()
            advance_to(w.worker, w.clock, max(self.until, w.clock.now()))
            return report(w.db, w.tenant_id, self.start, w.clock.now())


def _contact_snapshot(contact: dict[str, Any]) -> IncomingEvent:
    ident = str(contact.get("id") or contact.get("email"))
    props: dict[str, Any] = {"external_id": ident, "email": contact.get("email"), "tags": contact.get("tags", []),
             "groups": contact.get("groups", []), "fields": contact.get("fields", {}),
             **{k: contact[k] for k in ("first_name", "last_name", "language", "time_zone", "birthday")
                if k in contact}}
    return IncomingEvent(type="contact_upserted", contact={"id": ident, "email": contact.get("email")},
                         properties=props, dedup_key=f"sim-contact:{ident}")


def report(db: Database, tenant_id: int, start: datetime, end: datetime) -> dict[str, Any]:
    """The simulate report: per contact timelines, per step counts, actions that would run."""
    with db.unit_of_work() as s:
        contacts = {c.id: c for c in s.scalars(select(Contact).where(Contact.tenant_id == tenant_id))}
        instances = {i.id: i for i in s.scalars(select(Instance).where(Instance.tenant_id == tenant_id))}
        logs = list(s.scalars(select(StepLog).where(StepLog.tenant_id == tenant_id).order_by(StepLog.id)))
        actions = list(s.scalars(select(OutboxMessage).where(OutboxMessage.tenant_id == tenant_id)
                                 .order_by(OutboxMessage.id)))
    per_contact: dict[str, dict[str, Any]] = defaultdict(lambda: {"timeline": [], "actions": [], "instances": []})
    steps: dict[str, Counter[str]] = defaultdict(Counter)
    for log in logs:
        inst = instances[log.instance_id]
        who = contacts[inst.contact_id].email or contacts[inst.contact_id].external_id
        per_contact[who]["timeline"].append({"at": log.at.isoformat(), "step": log.step, "kind": log.kind,
                                             "branch": log.branch, "why": log.detail.get("why", "")})
        if log.step:
            steps[log.step][log.kind if not log.branch or log.kind != "branch" else f"branch:{log.branch}"] += 1
    for row in actions:
        who = contacts[row.contact_id].email or contacts[row.contact_id].external_id
        per_contact[who]["actions"].append({"step": row.step, "action": row.action, "status": row.status,
                                            "at": row.created_at.isoformat(), "result": row.result.get("summary")})
    for inst in instances.values():
        who = contacts[inst.contact_id].email or contacts[inst.contact_id].external_id
        per_contact[who]["instances"].append({"status": inst.status, "step": inst.step, "outcome": inst.outcome})
    return {"start": start.isoformat(), "end": end.isoformat(),
            "contacts": dict(sorted(per_contact.items())),
            "steps": {k: dict(v) for k, v in sorted(steps.items())},
            "totals": {"contacts": len(per_contact), "entered": sum(1 for _ in instances),
                       "actions": Counter(r.action for r in actions)}}
