"""Tenants: one per installed CRM account. Every other row hangs off one of these."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.errors import NotFound
from crm_journeys.secrets import encrypt_json
from crm_journeys.storage.models import Tenant

SLUG = re.compile(r"^[a-z0-9][a-z0-9\-]{0,79}$")
# ``/hooks/crm/<service>`` is the integration hook of a tenant slugged "crm", so no tenant
# may be named after an integration service (its CRM hook would be that same URL).
RESERVED_SLUGS = frozenset({"eventbrite", "livechat", "zapier", "custom"})


def create_tenant(session: Session, slug: str, name: str, now: datetime, *, connector: str = "sandbox",
                  settings: dict[str, Any] | None = None, credentials: dict[str, Any] | None = None) -> Tenant:
    if not SLUG.match(slug):
        raise ValueError(f"tenant slug {slug!r}: use lowercase letters, digits and '-'")
    if slug in RESERVED_SLUGS:
        raise ValueError(f"tenant slug {slug!r} is reserved (an integration's name)")
    tenant = Tenant(slug=slug, name=name, connector=connector, settings=settings or {},
                    credentials=encrypt_json(credentials or {}), webhook_secret=secrets.token_urlsafe(32),
                    created_at=now)
    session.add(tenant)
    session.flush()
    return tenant


def tenant_by_slug(session: Session, slug: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}")
    return tenant


def ensure_tenant(session: Session, slug: str, now: datetime, **kwargs: Any) -> Tenant:
    found = session.scalar(select(Tenant).where(Tenant.slug == slug))
    return found or create_tenant(session, slug, kwargs.pop("name", slug), now, **kwargs)
