"""The runtime's parts wired together once per process: database, clock, engine, plug-ins."""

from __future__ import annotations

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
    _connectors: dict[int, Connector] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.claims = Claims(postgres=self.db.is_postgres)
        self.settings.setdefault("smtp_url", os.environ.get("CRM_JOURNEYS_SMTP_URL", ""))
        self.settings.setdefault("public_url", os.environ.get("CRM_JOURNEYS_PUBLIC_URL", ""))

    def connector_for(self, tenant_id: int) -> Connector:
        """The tenant's connector, built once with its settings and decrypted credentials."""
        if tenant_id not in self._connectors:
            from crm_journeys.connectors.factory import build_connector

            with self.db.unit_of_work() as s:
                tenant = s.get(Tenant, tenant_id)
                assert tenant is not None
                self._connectors[tenant_id] = build_connector(tenant, self)
        return self._connectors[tenant_id]

    def use_connector(self, tenant_id: int, connector: Connector) -> None:
        """Put a specific connector in place (test mode's dry-run CRM, a bench fake)."""
        self._connectors[tenant_id] = connector

    def forget_connector(self, tenant_id: int) -> None:
        self._connectors.pop(tenant_id, None)

    def action_settings(self, tenant_id: int) -> dict[str, Any]:
        with self.db.unit_of_work() as s:
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


def _sms_settings(tenant: Tenant) -> dict[str, Any]:
    """The tenant's Twilio settings (sealed in its credentials, set on the Integrations
    page) and its slug, which the status-callback URL names."""
    from crm_journeys.secrets import decrypt_json

    creds = decrypt_json(tenant.credentials) if tenant.credentials else {}
    twilio = dict((creds.get("integrations") or {}).get("twilio") or {})
    return {**twilio, "tenant_slug": tenant.slug} if twilio else {}
