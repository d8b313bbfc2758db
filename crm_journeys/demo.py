"""Demo data for the embedded default: a sandbox CRM with contacts, and the worked journeys."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_journeys.runtime.tenants import ensure_tenant
from crm_journeys.storage.models import Journey, SandboxContact

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_JOURNEYS = ("welcome_promo.json", "post_sale_followup.json", "contoso_lead_nurture.json",
                 "multi_start_filtered.json", "birthday_greetings.json")
PEOPLE = [
    ("ada@example.com", "Ada", "Lovelace", "en", ["Kunde"]),
    ("bruno@example.it", "Bruno", "Rossi", "it", []),
    ("greta@example.de", "Greta", "Schmidt", "de", ["Kunde", "Instagram Follower"]),
    ("jonas@example.lt", "Jonas", "Kazlauskas", "lt", []),
    ("mia@example.de", "Mia", "Weber", "de", ["Instagram Follower"]),
]


def seed_demo(runtime: Runtime, tenant: str = "default", *, only_if_empty: bool = True) -> Iterator[str]:
    """Create the demo tenant, sandbox contacts, journeys and an admin login; yields progress lines."""
    from crm_journeys.actions.registry import installed_actions
    from crm_journeys.runtime.sync import sync_tenant
    from crm_journeys.runtime.versions import create_journey, publish

    now = runtime.clock.now()
    with runtime.db.unit_of_work() as s:
        t = ensure_tenant(s, tenant, now, name="Demo company")
        if only_if_empty and s.scalar(select(func.count(Journey.id)).where(Journey.tenant_id == t.id)):
            return
        tenant_id = t.id
        for email, first, last, lang, tags in PEOPLE:
            if s.scalar(select(SandboxContact.id).where(SandboxContact.tenant_id == tenant_id,
                                                        SandboxContact.email == email)) is None:
                s.add(SandboxContact(tenant_id=tenant_id, email=email, first_name=first, last_name=last,
                                     fields={"language": lang, "birthday": "1990-03-15", "owner": "sam@sales.example"},
                                     tags=tags, groups=["newsletter"], created_at=now, modified_at=now))
        for name in DEMO_JOURNEYS:
            path = EXAMPLES / name
            if path.exists():
                journey = create_journey(s, tenant_id, json.loads(path.read_text()), now)
                publish(s, tenant_id, journey.id, now, actions=installed_actions())
                yield f"published journey {journey.id}: {journey.name}"
        yield from _admin_login(s, tenant_id)
    read = sync_tenant(runtime, tenant_id)
    yield f"synced {read} sandbox contacts into tenant '{tenant}'"


def _admin_login(session: Session, tenant_id: int) -> Iterator[str]:
    from crm_journeys.auth import create_user

    password = os.environ.get("CRM_JOURNEYS_DEMO_PASSWORD", "demo-password")
    try:
        create_user(session, tenant_id, "admin@example.com", password, "admin")
    except Exception as exc:  # already there
        yield f"admin user not created: {exc}"
        return
    yield f"log in as admin@example.com / {password}"
