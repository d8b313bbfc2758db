"""Builds a tenant's connector from the registry, its settings and decrypted credentials."""

from __future__ import annotations

from typing import Any

from crm_journeys.connectors.base import Connector
from crm_journeys.storage.models import Tenant


def build_connector(tenant: Tenant, runtime: Any) -> Connector:
    from crm_journeys.connectors.registry import load_connector
    from crm_journeys.secrets import decrypt_json

    cls = load_connector(tenant.connector)
    return cls(dict(tenant.settings or {}), decrypt_json(tenant.credentials),
               database=runtime.db, tenant_id=tenant.id, clock=runtime.clock)
