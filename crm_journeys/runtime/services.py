"""The runtime's parts wired together once per process: database, clock, engine, plug-ins."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from crm_journeys.clock import Clock
from crm_journeys.connectors.base import Connector
from crm_journeys.rules.engine import RulesEngine
from crm_journeys.runtime.claims import Claims
from crm_journeys.runtime.versions import VersionCache
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import Tenant


@dataclass
class Runtime:
    db: Database
    clock: Clock = field(default_factory=Clock)
    engine: RulesEngine = field(default_factory=RulesEngine)
    versions: VersionCache = field(default_factory=VersionCache)
    settings: dict[str, Any] = field(default_factory=dict)
    _connectors: dict[int, tuple[Any, Connector]] = field(default_factory=dict)
    _delivery_connectors: dict[int, tuple[Any, Connector]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.claims = Claims(postgres=self.db.is_postgres)
        self.settings.setdefault("smtp_url", os.environ.get("CRM_JOURNEYS_SMTP_URL", ""))
        self.settings.setdefault("public_url", os.environ.get("CRM_JOURNEYS_PUBLIC_URL", ""))

    def connector_for(self, tenant_id: int, *, delivery: bool = False) -> Connector:
        """The tenant's connector, built once per installation with its settings and
        decrypted credentials. Cached by installation, not by id alone: SQLite hands a
        deleted tenant's id to the next one, and a connector built for the old install
        would read one account's CRM into another tenant. The check is one primary-key
        read; another process's uninstall or reinstall is noticed the same way.

        ``delivery``: the one the worker's delivery pool uses, whose HTTP client never waits
        for a host (no Retry-After sleeps, one quick retry at most): a host that asks for
        time parks the row's lane instead (``runtime.lanes``), so a pool thread is never
        held by a host that said it is not ready."""
        from crm_journeys.connectors.factory import build_connector
        from crm_journeys.connectors.http import RetryPolicy

        connectors = self._delivery_connectors if delivery else self._connectors
        with self.db.reading() as s:
            tenant = s.get(Tenant, tenant_id)
            assert tenant is not None, f"no tenant {tenant_id}"
            installation = _installation(tenant)
            cached = connectors.get(tenant_id)
            if cached is None or cached[0] != installation:
                extra = {"retry": RetryPolicy(max_attempts=2, base_delay=0.1, max_wait=0.0)} if delivery else {}
                connectors[tenant_id] = (installation, build_connector(tenant, self, **extra))
        return connectors[tenant_id][1]

    def use_connector(self, tenant_id: int, connector: Connector) -> None:
        """Put a specific connector in place (test mode's dry-run CRM, a bench fake)."""
        with self.db.reading() as s:
            tenant = s.get(Tenant, tenant_id)
            installation = _installation(tenant) if tenant is not None else None
        self._connectors[tenant_id] = (installation, connector)
        self._delivery_connectors[tenant_id] = (installation, connector)

    def forget_connector(self, tenant_id: int) -> None:
        self._connectors.pop(tenant_id, None)
        self._delivery_connectors.pop(tenant_id, None)

    def action_settings(self, tenant_id: int) -> dict[str, Any]:
        with self.db.reading() as s:
            tenant = s.get(Tenant, tenant_id)
            assert tenant is not None
            settings = dict(tenant.settings or {})
            secret = tenant.webhook_secret
            sms = _sms_settings(tenant)
        return {"sms": sms, "dry_run": bool(self.settings.get("dry_run")), "smtp_url": settings.get("smtp_url") or self.settings.get("smtp_url"),
                "mail_from": settings.get("mail_from", "journeys@localhost"),
                "allow_private_webhooks": bool(settings.get("allow_private_webhooks")),
                "webhook_secret": secret,
                "public_url": (settings.get("public_url") or self.settings.get("public_url") or "").rstrip("/"),
                "email_tracking": settings.get("email_tracking", True) is not False,
                "smtp_allow_plaintext_auth": bool(settings.get("smtp_allow_plaintext_auth")),
                "contact_policy": settings.get("contact_policy") or {},
                "smtp_ca_file": settings.get("smtp_ca_file") or os.environ.get("CRM_JOURNEYS_SMTP_CA_FILE", "")}


def _installation(tenant: Tenant) -> tuple[Any, ...]:
    """What tells one installation from the next that may reuse its id (and a settings
    change made by another process from the settings this connector was built with)."""
    return (tenant.slug, tenant.connector, tenant.created_at,
            json.dumps(tenant.settings or {}, sort_keys=True, default=str))


def _sms_settings(tenant: Tenant) -> dict[str, Any]:
    """The tenant's Twilio settings (sealed in its credentials, set on the Integrations
    page) and its slug, which the status-callback URL names."""
    from crm_journeys.secrets import decrypt_json

    creds = decrypt_json(tenant.credentials) if tenant.credentials else {}
    twilio = dict((creds.get("integrations") or {}).get("twilio") or {})
    return {**twilio, "tenant_slug": tenant.slug} if twilio else {}
