"""Shared workload for the benchmarks and the scale-out tests: a tenant with journeys,
a deterministic stream of events over many contacts, and an id-free summary of the
outcome so that two runs on two databases can be compared."""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from crm_journeys.runtime.ingest import IncomingEvent, ingest_many
from crm_journeys.runtime.tenants import create_tenant
from crm_journeys.runtime.versions import create_journey, publish
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import Contact, InboxEvent, Instance, Journey, OutboxMessage

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def welcome() -> dict[str, Any]:
    return json.loads((EXAMPLES / "welcome_promo.json").read_text())


def unrelated_journey(i: int) -> dict[str, Any]:
    """The welcome journey started by a list nobody in the workload subscribes to."""
    doc = welcome()
    doc["name"] = f"Unrelated {i}"
    doc["starting_points"][0]["params"]["list"] = f"other-list-{i}"
    return doc


def setup_tenant(db: Database, now: datetime, documents: list[dict[str, Any]],
                 settings: dict[str, Any] | None = None) -> int:
    """A new tenant with ``settings`` (before publishing: a loopback webhook needs
    ``allow_private_webhooks``) and ``documents`` published."""
    from crm_journeys.actions.registry import installed_actions

    actions = installed_actions()
    with db.unit_of_work() as s:
        tenant = create_tenant(s, f"bench-{uuid.uuid4().hex[:8]}", "Bench tenant", now)
        if settings:
            tenant.settings = {**(tenant.settings or {}), **settings}
        tenant_id = tenant.id
    for start in range(0, len(documents), 100):
        with db.unit_of_work() as s:
            for doc in documents[start:start + 100]:
                journey = create_journey(s, tenant_id, copy.deepcopy(doc), now)
                publish(s, tenant_id, journey.id, now, actions=actions)
    return tenant_id


def contact(k: int) -> dict[str, Any]:
    return {"id": f"c{k}", "email": f"c{k}@example.com"}


def entry_events(n: int, offset: int = 0) -> list[IncomingEvent]:
    """n contacts each subscribing once: every event enters the welcome journey, queues
    the welcome email (an outbox row) and schedules the 3-day check (a wake-up)."""
    return [IncomingEvent(type="subscribed", key="newsletter", contact=contact(offset + i),
                          properties={"list": "newsletter"}, dedup_key=f"sub:{offset + i}")
            for i in range(n)]


def mixed_events(n_events: int, n_contacts: int, seed: int = 7) -> list[IncomingEvent]:
    """An order-sensitive stream: subscribe / unsubscribe / purchase / tag changes in a
    random interleaving, so handling a contact's events out of order changes the result
    (enter once then exit vs. exit then enter; the last tag change wins)."""
    rng = random.Random(seed)
    kinds = [("subscribed", "newsletter"), ("subscribed", "newsletter"), ("unsubscribed", "newsletter"),
             ("purchase", ""), ("tag_added", "vip"), ("tag_removed", "vip"), ("tag_added", "b"),
             ("tag_removed", "b")]
    out = []
    for i in range(n_events):
        k = rng.randrange(n_contacts)
        type_, key = rng.choice(kinds)
        props = {"list": key} if type_ in ("subscribed", "unsubscribed") else {}
        out.append(IncomingEvent(type=type_, key=key, contact=contact(k), properties=props,
                                 dedup_key=f"ev:{i}"))
    return out


def ingest_all(db: Database, tenant_id: int, events: list[IncomingEvent], now: datetime,
               chunk: int = 1000) -> None:
    for start in range(0, len(events), chunk):
        with db.unit_of_work() as s:
            ingest_many(s, tenant_id, events[start:start + chunk], now)


def pending(db: Database, tenant_id: int) -> int:
    from sqlalchemy import func

    with db.unit_of_work() as s:
        return s.scalar(select(func.count(InboxEvent.id)).where(InboxEvent.tenant_id == tenant_id,
                                                                InboxEvent.status == "pending")) or 0


def outcome(db: Database, tenant_id: int) -> dict[str, Any]:
    """Everything a run decided, keyed by external ids and journey names (no row ids)."""
    with db.unit_of_work() as s:
        ext = dict(s.execute(select(Contact.id, Contact.external_id)
                             .where(Contact.tenant_id == tenant_id)).all())
        names = dict(s.execute(select(Journey.id, Journey.name)
                               .where(Journey.tenant_id == tenant_id)).all())
        contacts = sorted((c.external_id, tuple(sorted(c.tags or [])), json.dumps(c.fields, sort_keys=True))
                          for c in s.scalars(select(Contact).where(Contact.tenant_id == tenant_id)))
        instances = sorted((ext[i.contact_id], names[i.journey_id], i.entry_key, i.rotation, i.status,
                            i.step or "", i.outcome)
                           for i in s.scalars(select(Instance).where(Instance.tenant_id == tenant_id)))
        outbox = [(ext[o.contact_id], o.step, o.action, o.idempotency_key.split(":", 2)[-1])
                  for o in s.scalars(select(OutboxMessage).where(OutboxMessage.tenant_id == tenant_id))]
        events = Counter(s.scalars(select(InboxEvent.status).where(InboxEvent.tenant_id == tenant_id)))
    dupes = sorted(k for k, n in Counter(outbox).items() if n > 1)
    return {"contacts": contacts, "instances": instances, "outbox": sorted(outbox), "duplicates": dupes,
            "events": dict(events)}
