"""Tenant-scoped reads for the API and the UI: lists, live counts, analytics, timelines.

Every function takes the caller's ``tenant_id`` and filters by it; nothing here writes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_journeys.errors import NotFound
from crm_journeys.runtime.retention import VISIT_KINDS, rollup_counts
from crm_journeys.services.funnel import funnel
from crm_journeys.storage.models import (
    Contact,
    Instance,
    Journey,
    JourneyVersion,
    SandboxContact,
    SandboxRecord,
    StepLog,
    Wakeup,
)

EMPTY_COUNTS = {"entered": 0, "waiting": 0, "completed": 0, "exited": 0, "goal_reached": 0}


def journeys(s: Session, tenant_id: int, *, limit: int | None = None, offset: int = 0,
             name: str | None = None, status: str | None = None) -> list[Journey]:
    query = _journey_filter(select(Journey), tenant_id, name, status).order_by(Journey.id).offset(offset)
    return list(s.scalars(query.limit(limit) if limit is not None else query))


def _journey_filter(query: Any, tenant_id: int, name: str | None, status: str | None) -> Any:
    """The journey list's search: name contains ``name`` (any case), status is ``status``."""
    query = query.where(Journey.tenant_id == tenant_id)
    if name:
        query = query.where(func.lower(Journey.name).contains(name.lower(), autoescape=True))
    if status:
        query = query.where(Journey.status == status)
    return query


def total(s: Session, query: Any) -> int:
    """How many rows a list query matches in all pages (its LIMIT/OFFSET/ORDER BY dropped)."""
    inner = query.limit(None).offset(None).order_by(None).subquery()
    return int(s.scalar(select(func.count()).select_from(inner)) or 0)


def count_journeys(s: Session, tenant_id: int, *, name: str | None = None, status: str | None = None) -> int:
    return total(s, _journey_filter(select(Journey.id), tenant_id, name, status))


def journey(s: Session, tenant_id: int, journey_id: int) -> Journey:
    row = s.scalar(select(Journey).where(Journey.tenant_id == tenant_id, Journey.id == journey_id))
    if row is None:
        raise NotFound(f"no journey {journey_id}")
    return row


def version_numbers(s: Session, tenant_id: int) -> dict[int, int]:
    """version row id -> version number, for the tenant."""
    rows = s.execute(select(JourneyVersion.id, JourneyVersion.version).where(JourneyVersion.tenant_id == tenant_id))
    return {r.id: r.version for r in rows}


def counts(s: Session, tenant_id: int, journey_ids: list[int] | None = None) -> dict[int, dict[str, int]]:
    """Per journey: entered (instances), waiting (active), completed, exited, goal reached."""
    out: dict[int, dict[str, int]] = defaultdict(lambda: dict(EMPTY_COUNTS))
    query = (select(Instance.journey_id, Instance.status, func.count()).where(Instance.tenant_id == tenant_id)
             .group_by(Instance.journey_id, Instance.status))
    if journey_ids is not None:
        query = query.where(Instance.journey_id.in_(journey_ids))
    for jid, status, n in s.execute(query):
        c = out[jid]
        c["entered"] += n
        c[{"active": "waiting", "completed": "completed", "exited": "exited"}.get(status, "exited")] += n
    goals = (select(StepLog.journey_id, func.count(func.distinct(StepLog.instance_id)))
             .where(StepLog.tenant_id == tenant_id, StepLog.kind == "goal").group_by(StepLog.journey_id))
    for jid, n in s.execute(goals):
        out[jid]["goal_reached"] = n
    ids = journey_ids if journey_ids is not None else list(out)
    for jid, rolled in rollup_counts(s, tenant_id, ids).items():  # step logs pruned by retention
        if rolled.goal_reached:
            out[jid]["goal_reached"] += rolled.goal_reached
    return out


def _percentile(values: list[int], pct: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def analytics(s: Session, tenant_id: int, journey_id: int) -> dict[str, Any]:
    """Per journey and per step: entered, waiting, branches, exits, goals, wait lateness."""
    row = journey(s, tenant_id, journey_id)
    document = row.draft
    if row.live_version_id:
        live = s.scalar(select(JourneyVersion).where(JourneyVersion.tenant_id == tenant_id,
                                                     JourneyVersion.id == row.live_version_id))
        document = live.document if live else document
    logs = s.execute(select(StepLog.step, StepLog.kind, StepLog.branch, StepLog.instance_id)
                     .where(StepLog.tenant_id == tenant_id, StepLog.journey_id == journey_id)).all()
    visited: dict[str, set[int]] = defaultdict(set)
    branches: dict[str, Counter[str]] = defaultdict(Counter)
    exits: Counter[str] = Counter()
    goals: Counter[str] = Counter()
    for log in logs:
        if log.kind in VISIT_KINDS and log.step:
            visited[log.step].add(log.instance_id)
        if log.kind == "branch":
            branches[log.step][log.branch] += 1
        elif log.kind == "exit":
            exits[log.step] += 1
        elif log.kind == "goal":
            goals[log.branch or log.step] += 1
    rolled = rollup_counts(s, tenant_id, [journey_id])[journey_id]  # what retention pruned
    for name, extra in rolled.branches.items():
        branches[name].update(extra)
    exits.update(rolled.exits)
    goals.update(rolled.goals)
    waiting = dict(s.execute(select(Instance.step, func.count()).where(
        Instance.tenant_id == tenant_id, Instance.journey_id == journey_id, Instance.status == "active")
        .group_by(Instance.step)).all())
    lateness: dict[str, list[int]] = defaultdict(list)
    for step, ms in s.execute(select(Wakeup.step, Wakeup.lateness_ms).join(Instance, Instance.id == Wakeup.instance_id)
                              .where(Wakeup.tenant_id == tenant_id, Instance.journey_id == journey_id,
                                     Wakeup.lateness_ms.is_not(None))):
        lateness[step].append(int(ms or 0))
    steps = [{"id": st.get("id", ""), "label": st.get("label") or st.get("id", ""), "type": st.get("type", ""),
              "entered": len(visited.get(st.get("id", ""), ())) + rolled.visited[st.get("id", "")],
              "waiting": int(waiting.get(st.get("id"), 0)),
              "exited": exits.get(st.get("id", ""), 0), "branches": dict(branches.get(st.get("id", ""), {})),
              "lateness_p50_ms": _percentile(lateness.get(st.get("id", ""), []), 50),
              "lateness_p99_ms": _percentile(lateness.get(st.get("id", ""), []), 99)}
             for st in document.get("steps", []) if isinstance(st, dict)]
    total = counts(s, tenant_id, [journey_id])[journey_id]
    rows = funnel(document, {st["id"]: st for st in steps}, total)
    return {"journey_id": journey_id, "counts": total, "steps": steps, "funnel": rows, "goals": dict(goals)}


def _instances_query(tenant_id: int, journey_id: int | None, contact_id: int | None, status: str | None) -> Any:
    query = select(Instance.id).where(Instance.tenant_id == tenant_id)
    if journey_id is not None:
        query = query.where(Instance.journey_id == journey_id)
    if contact_id is not None:
        query = query.where(Instance.contact_id == contact_id)
    if status:
        query = query.where(Instance.status == status)
    return query


def count_instances(s: Session, tenant_id: int, *, journey_id: int | None = None, contact_id: int | None = None,
                    status: str | None = None) -> int:
    return total(s, _instances_query(tenant_id, journey_id, contact_id, status))


def instance_rows(s: Session, tenant_id: int, *, journey_id: int | None = None, contact_id: int | None = None,
                  status: str | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    ids = _instances_query(tenant_id, journey_id, contact_id, status).subquery()
    query = (select(Instance, Contact.email, JourneyVersion.version)
             .join(ids, ids.c.id == Instance.id)
             .join(Contact, Contact.id == Instance.contact_id)
             .join(JourneyVersion, JourneyVersion.id == Instance.version_id)
             .where(Instance.tenant_id == tenant_id).order_by(Instance.id.desc()).limit(limit).offset(offset))
    return [_instance(i, email, version) for i, email, version in s.execute(query)]


def _instance(i: Instance, email: str | None, version: int) -> dict[str, Any]:
    return {"id": i.id, "journey_id": i.journey_id, "version": version, "contact_id": i.contact_id,
            "contact_email": email, "status": i.status, "step": i.step, "outcome": i.outcome,
            "entered_at": i.entered_at, "ended_at": i.ended_at}


def instance_detail(s: Session, tenant_id: int, instance_id: int) -> dict[str, Any]:
    rows = s.execute(select(Instance, Contact.email, JourneyVersion.version)
                     .join(Contact, Contact.id == Instance.contact_id)
                     .join(JourneyVersion, JourneyVersion.id == Instance.version_id)
                     .where(Instance.tenant_id == tenant_id, Instance.id == instance_id)).first()
    if rows is None:
        raise NotFound(f"no instance {instance_id}")
    return {**_instance(*rows), "timeline": timeline(s, tenant_id, [instance_id])}


def timeline(s: Session, tenant_id: int, instance_ids: list[int]) -> list[dict[str, Any]]:
    """What happened and why, oldest first: the rule that fired and the facts it saw."""
    if not instance_ids:
        return []
    logs = s.scalars(select(StepLog).where(StepLog.tenant_id == tenant_id, StepLog.instance_id.in_(instance_ids))
                     .order_by(StepLog.at, StepLog.id))
    return sorted(timeline_entries(logs) + _pruned_entries(s, tenant_id, instance_ids), key=lambda e: e["at"])


def _pruned_entries(s: Session, tenant_id: int, instance_ids: list[int]) -> list[dict[str, Any]]:
    """One entry per run whose step log retention removed, so an empty timeline says why
    instead of looking like nothing happened."""
    rows = s.execute(select(Instance.id, Instance.ended_at, Instance.history_pruned_at, Instance.status)
                     .where(Instance.tenant_id == tenant_id, Instance.id.in_(instance_ids),
                            Instance.history_pruned_at.is_not(None)))
    return [{"at": pruned_at, "step": "", "kind": "history removed", "branch": "", "instance_id": iid,
             "why": (f"retention removed this run's step log ({status} {ended_at:%Y-%m-%d}); "
                     "its steps still count in the journey's analytics"),
             "rule": "", "facts": {}}
            for iid, ended_at, pruned_at, status in rows]


def timeline_entries(logs: Iterable[StepLog]) -> list[dict[str, Any]]:
    """Log rows (ordered by time) as timeline entries. A decision stores the facts it saw
    on its first row only; its later rows (same instance, same instant) show them too."""
    out = []
    seen: dict[int, tuple[datetime, dict[str, Any]]] = {}  # instance -> (at, facts) of its last decision
    for log in logs:
        detail = log.detail or {}
        if "facts" in detail:
            seen[log.instance_id] = (log.at, detail["facts"] or {})
            facts = detail["facts"] or {}
        else:
            at, last = seen.get(log.instance_id, (None, {}))
            facts = last if at == log.at and detail.get("rule") else {}
        out.append({"at": log.at, "step": log.step, "kind": log.kind, "branch": log.branch,
                    "instance_id": log.instance_id, "why": str(detail.get("why") or detail.get("outcome") or ""),
                    "rule": str(detail.get("rule") or ""), "facts": facts})
    return out


def contacts(s: Session, tenant_id: int, *, email: str | None = None, limit: int = 100,
             offset: int = 0) -> list[Contact]:
    query = select(Contact).where(Contact.tenant_id == tenant_id).order_by(Contact.id.desc()).limit(limit).offset(offset)
    if email:
        query = query.where(Contact.email == email.lower())
    return list(s.scalars(query))


def count_contacts(s: Session, tenant_id: int, *, email: str | None = None) -> int:
    query = select(Contact.id).where(Contact.tenant_id == tenant_id)
    return total(s, query.where(Contact.email == email.lower()) if email else query)


def contact_detail(s: Session, tenant_id: int, contact_id: int) -> dict[str, Any]:
    row = s.scalar(select(Contact).where(Contact.tenant_id == tenant_id, Contact.id == contact_id))
    if row is None:
        raise NotFound(f"no contact {contact_id}")
    instances = instance_rows(s, tenant_id, contact_id=contact_id, limit=1000)
    return {"id": row.id, "external_id": row.external_id, "email": row.email, "fields": row.fields,
            "tags": row.tags, "groups": row.groups, "updated_at": row.updated_at, "instances": instances,
            "timeline": timeline(s, tenant_id, [i["id"] for i in instances])}


def count_sandbox_records(s: Session, tenant_id: int, *, kind: str | None = None) -> int:
    query = select(SandboxRecord.id).where(SandboxRecord.tenant_id == tenant_id)
    return total(s, query.where(SandboxRecord.kind == kind) if kind else query)


def sandbox_records(s: Session, tenant_id: int, *, kind: str | None = None, limit: int = 100,
                    offset: int = 0) -> list[dict[str, Any]]:
    query = (select(SandboxRecord, SandboxContact.email).join(SandboxContact, SandboxContact.id == SandboxRecord.contact_id)
             .where(SandboxRecord.tenant_id == tenant_id).order_by(SandboxRecord.id.desc()).limit(limit).offset(offset))
    if kind:
        query = query.where(SandboxRecord.kind == kind)
    return [{"id": r.id, "kind": r.kind, "contact_email": email, "data": r.data, "created_at": r.created_at}
            for r, email in s.execute(query)]


def sandbox_contacts(s: Session, tenant_id: int, limit: int = 200) -> list[SandboxContact]:
    return list(s.scalars(select(SandboxContact).where(SandboxContact.tenant_id == tenant_id)
                          .order_by(SandboxContact.id.desc()).limit(limit)))
