"""Builds a tenant's connector from the registry, its settings and decrypted credentials."""

from __future__ import annotations

from typing import Any

from crm_journeys.connectors.base import Connector
from crm_journeys.storage.models import Tenant


def build_connector(tenant: Tenant, runtime: Any, **options: Any) -> Connector:
    """Renewed OAuth tokens go back into the tenant's encrypted credentials
    (``on_credentials_update``); ``runtime.settings["connector_context"]`` adds HTTP
    options (tests inject ``limits``, ``sleep``), and ``options`` the caller's own
    (the delivery pool's retry policy); the context wins where both say."""
    from crm_journeys.connectors.registry import load_connector
    from crm_journeys.secrets import decrypt_json

    cls = load_connector(tenant.connector)
    tenant_id = tenant.id

    def store(credentials: dict[str, Any]) -> None:
        from crm_journeys.install import update_credentials

        update_credentials(runtime.db, tenant_id, credentials)

    extra = {**options, **dict(runtime.settings.get("connector_context") or {})}
    return cls(dict(tenant.settings or {}), decrypt_json(tenant.credentials),
               database=runtime.db, tenant_id=tenant_id, clock=runtime.clock,
               on_credentials_update=store, **extra)
