"""Test mode: run a draft in a throw-away world, never touching the tenant's CRM or data.

``simulate`` walks one made-up contact through a draft; ``backtest`` replays the tenant's
recorded inbox events of the last N days against a draft. Both build a fresh SQLite
database in a temporary folder, publish the draft there, drive the real runtime on a
virtual clock, and read back what would have happened (branches, leads, tasks, emails).
Actions land in a dry-run copy of the sandbox CRM, so even a HubSpot tenant sends nothing.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, not_, or_, select
from sqlalchemy.orm import Session

from crm_journeys.definition.durations import parse_duration
from crm_journeys.definition.triggers import CATALOG
from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.runtime.simulate import World, throwaway_world
from crm_journeys.runtime.worker import advance_to
from crm_journeys.services.entry_explain import why_not_entered
from crm_journeys.services.queries import timeline_entries
from crm_journeys.storage.models import (
    Contact,
    InboxEvent,
    Instance,
    OutboxMessage,
    SandboxContact,
    SandboxRecord,
    StepLog,
)


def _start_event(document: dict[str, Any], starting_point: str | None, journey_id: int) -> tuple[str, str, dict[str, Any]]:
    """The event that fires a starting point, with the parameters it routes and filters on."""
    points = document.get("starting_points") or []
    chosen = next((p for p in points if p.get("id") == starting_point), points[0] if points else None)
    if chosen is None:
        raise ValueError("the journey has no starting point")
    kind = CATALOG[chosen["type"]]
    params = chosen.get("params") or {}
    key = kind.routing_key(params, str(journey_id))
    props = {kind.key_param: params[kind.key_param]} if kind.key_param and params.get(kind.key_param) else {}
    if kind.keyed_by_journey:
        props["journey"] = str(journey_id)
    return kind.event, "" if key == "*" else key, props


def simulate(document: dict[str, Any], contact: dict[str, Any], *, start: datetime, horizon: str = "P30D",
             starting_point: str | None = None, events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One contact through a draft: its timeline, the actions queued and the CRM records."""
    with throwaway_world(document, start) as w:
        email = contact["email"].lower()
        snapshot = {"email": email, "first_name": contact.get("first_name") or None,
                    "last_name": contact.get("last_name") or None, "tags": contact.get("tags", []),
                    "groups": contact.get("groups", []), "fields": contact.get("fields_", {}), "version": "1"}
        with w.db.unit_of_work() as s:
            ingest(s, w.tenant_id, IncomingEvent("contact_upserted", {"email": email}, properties=snapshot,
                                                 dedup_key="sim:contact"), start)
            type_, key, props = _start_event(document, starting_point, w.journey_id)
            ingest(s, w.tenant_id, IncomingEvent(type_, {"email": email}, key=key, properties=props,
                                                 dedup_key="sim:start"), start)
        w.worker.drain()
        for n, ev in enumerate(sorted(events or [], key=lambda e: parse_duration(e["after"]))):
            at = start + parse_duration(ev["after"])
            advance_to(w.worker, w.clock, max(at, w.clock.now()))
            with w.db.unit_of_work() as s:
                ingest(s, w.tenant_id, IncomingEvent(ev["type"], {"email": email}, key=ev.get("key", ""),
                                                     properties=ev.get("properties", {}), dedup_key=f"sim:{n}"),
                       w.clock.now())
            w.worker.drain()
        advance_to(w.worker, w.clock, max(start + parse_duration(horizon), w.clock.now()))
        result = _read_back(w)
    if result["status"] == "not_entered":
        result["outcome"] = why_not_entered(document, contact, starting_point, start)
    return result


def _read_back(w: World) -> dict[str, Any]:
    with w.db.unit_of_work() as s:
        inst = s.scalar(select(Instance).where(Instance.tenant_id == w.tenant_id).order_by(Instance.id))
        logs = timeline_entries(s.scalars(select(StepLog).order_by(StepLog.at, StepLog.id)))
        actions = [{"step": o.step, "action": o.action, "status": o.status, "at": o.created_at,
                    "summary": str((o.result or {}).get("summary") or o.last_error or "")}
                   for o in s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]
        records = [{"id": r.id, "kind": r.kind, "contact_email": email, "data": r.data, "created_at": r.created_at}
                   for r, email in s.execute(select(SandboxRecord, SandboxContact.email)
                                             .join(SandboxContact, SandboxContact.id == SandboxRecord.contact_id)
                                             .order_by(SandboxRecord.id))]
    return {"status": inst.status if inst else "not_entered", "step": inst.step if inst else None,
            "outcome": inst.outcome if inst else "the contact did not enter (check the starting point and filters)",
            "timeline": logs, "actions": actions, "records": records}


# --- backtest ---------------------------------------------------------------------------

@dataclass
class BacktestJob:
    id: str
    tenant_id: int
    journey_id: int
    status: str = "running"
    processed: int = 0
    total: int = 0
    error: str = ""
    result: dict[str, Any] | None = None

    @property
    def progress(self) -> float:
        if self.status == "done":
            return 1.0
        return round(self.processed / self.total, 3) if self.total else 0.0


@dataclass
class BacktestJobs:
    """Backtests running in background threads, by id (per process; results are kept briefly)."""

    jobs: dict[str, BacktestJob] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    keep: int = 50

    def get(self, tenant_id: int, job_id: str) -> BacktestJob | None:
        job = self.jobs.get(job_id)
        return job if job is not None and job.tenant_id == tenant_id else None

    def start(self, tenant_id: int, journey_id: int, run: Callable[[BacktestJob], dict[str, Any]]) -> BacktestJob:
        job = BacktestJob(uuid.uuid4().hex, tenant_id, journey_id)
        with self.lock:
            self.jobs[job.id] = job
            for old in list(self.jobs)[:-self.keep]:
                self.jobs.pop(old, None)

        def target() -> None:
            try:
                job.result = run(job)
                job.status = "done"
            except Exception as exc:  # reported to the user on the progress page
                job.error, job.status = str(exc), "failed"

        threading.Thread(target=target, name=f"backtest-{job.id[:8]}", daemon=True).start()
        return job


# Dedup-key prefixes of the events journeys' own actions feed back into the inbox
# (actions/email.py, tags.py, fields.py, journeys.py). Replaying them would count the live
# journeys' effects as if the draft had caused them; the draft makes its own in the world.
OWN_ACTION_PREFIXES = ("sent:", "tag_added:", "tag_removed:", "fields:", "add:")
CONTACT_COLUMNS = ("external_id", "email", "fields", "tags", "groups", "segments", "activity", "version")


def recorded_events(s: Session, tenant_id: int, since: datetime, *, include_own: bool = False) -> list[dict[str, Any]]:
    """The tenant's inbox since ``since``, oldest first, as plain data (copied out of the
    session); without the events the journeys' own actions produced unless ``include_own``."""
    query = select(InboxEvent).where(InboxEvent.tenant_id == tenant_id, InboxEvent.occurred_at >= since)
    if not include_own:
        query = query.where(not_(or_(*[InboxEvent.dedup_key.startswith(prefix, autoescape=True)
                                       for prefix in OWN_ACTION_PREFIXES])))
    rows = s.scalars(query.order_by(InboxEvent.occurred_at, InboxEvent.id))
    return [{"type": r.type, "key": r.key, "payload": r.payload, "occurred_at": r.occurred_at,
             "dedup_key": r.dedup_key} for r in rows]


def is_own(event: dict[str, Any]) -> bool:
    return str(event.get("dedup_key") or "").startswith(OWN_ACTION_PREFIXES)


_MEMBERSHIP = {"tag_added": ("tags", False), "tag_removed": ("tags", True), "group_joined": ("groups", False),
               "subscribed": ("groups", False), "group_left": ("groups", True), "unsubscribed": ("groups", True)}


def rewind(contacts: list[dict[str, Any]], events: list[dict[str, Any]], start: datetime) -> list[dict[str, Any]]:
    """Today's contacts as they were at ``start``, as far as the window's events tell.

    Without this, replaying "subscribed" or "tag added" on contacts who already have the
    group or tag is no change at all and starts nobody. Tags and groups the window's
    events (the journeys' own included) added or removed are undone, newest first, and
    email activity stamped since ``start`` is dropped; field values stay as they are now.
    """
    by_ref: dict[str, dict[str, Any]] = {}
    out = []
    for c in contacts:
        copy = {**c, "tags": list(c.get("tags") or []), "groups": list(c.get("groups") or []),
                "activity": {kind: {k: t for k, t in (stamps or {}).items() if not _since(t, start)}
                             for kind, stamps in (c.get("activity") or {}).items()}}
        out.append(copy)
        by_ref[f"id:{c['external_id']}"] = copy
        if c.get("email"):
            by_ref.setdefault(f"email:{str(c['email']).lower()}", copy)
    for ev in reversed(events):
        attr_present = _MEMBERSHIP.get(ev["type"])
        who = (ev.get("payload") or {}).get("contact") or {}
        contact = by_ref.get(f"id:{who.get('id')}") or by_ref.get(f"email:{str(who.get('email') or '').lower()}")
        if attr_present is None or contact is None:
            continue
        attr, was_present = attr_present
        item = ev["key"] or ("audience" if attr == "groups" else "")
        items = contact[attr]
        if was_present and item not in items:
            items.append(item)
        elif not was_present and item in items:
            items.remove(item)
    return out


def _since(stamp: Any, start: datetime) -> bool:
    try:
        return float(stamp) >= start.timestamp()
    except (TypeError, ValueError):
        return False


def current_contacts(s: Session, tenant_id: int) -> list[dict[str, Any]]:
    """The tenant's contact mirror as it is now (plain data for the backtest's thread).

    A backtest starts N days ago with today's data: the closest record we keep, and far
    better for entry filters and splits than contacts that know nothing but an email.
    """
    rows = s.execute(select(*[getattr(Contact, c) for c in CONTACT_COLUMNS])
                     .where(Contact.tenant_id == tenant_id, Contact.deleted.is_(False)).order_by(Contact.id))
    return [dict(zip(CONTACT_COLUMNS, row, strict=True)) for row in rows]


def seed_contacts(contacts: list[dict[str, Any]], at: datetime) -> Callable[[Session, int], None]:
    """A ``throwaway_world`` seed that copies ``contacts`` into the world's mirror."""
    def seed(s: Session, tenant_id: int) -> None:
        if contacts:
            s.execute(insert(Contact), [{**c, "tenant_id": tenant_id, "deleted": False, "updated_at": at}
                                        for c in contacts])
    return seed


def backtest(document: dict[str, Any], events: list[dict[str, Any]], *, start: datetime, end: datetime,
             job: BacktestJob | None = None, contacts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Replay events on a virtual clock against the draft, over a copy of ``contacts``;
    count entries, branches and records."""
    if job is not None:
        job.total = len(events)
    with throwaway_world(document, start, name="backtest", seed=seed_contacts(contacts or [], start)) as w:
        for ev in events:
            at = max(ev["occurred_at"], w.clock.now())
            advance_to(w.worker, w.clock, at)
            payload = ev["payload"] or {}
            with w.db.unit_of_work() as s:
                ingest(s, w.tenant_id, IncomingEvent(ev["type"], payload.get("contact") or {}, key=ev["key"],
                                                     properties=payload.get("properties") or {},
                                                     occurred_at=ev["occurred_at"], dedup_key=ev["dedup_key"]), at)
            w.worker.drain()
            if job is not None:
                job.processed += 1
        advance_to(w.worker, w.clock, max(end, w.clock.now()))
        return _summary(w)


def _summary(w: World) -> dict[str, Any]:
    with w.db.unit_of_work() as s:
        statuses = Counter(s.scalars(select(Instance.status)))
        branches: dict[str, Counter[str]] = {}
        for step, branch in s.execute(select(StepLog.step, StepLog.branch).where(StepLog.kind == "branch")):
            branches.setdefault(step, Counter())[branch] += 1
        records = Counter(s.scalars(select(SandboxRecord.kind)))
        samples = [{"kind": r.kind, "data": r.data} for r in s.scalars(select(SandboxRecord).order_by(SandboxRecord.id).limit(20))]
    return {"entered": sum(statuses.values()), "waiting": statuses.get("active", 0),
            "completed": statuses.get("completed", 0), "exited": statuses.get("exited", 0),
            "branches": {k: dict(v) for k, v in branches.items()}, "records": dict(records), "samples": samples}


def window(now: datetime, days: int) -> tuple[datetime, datetime]:
    return now - timedelta(days=days), now
