"""The inbound integrations' per-tenant settings and secrets (Eventbrite, LiveChat,
Zapier, and the custom-trigger webhook), for the admin page and the REST API.

They live where ``web.hooks.integrations`` reads them: the tenant's encrypted credentials,
``{"integrations": {"<service>": {...}}}``. A generated secret is returned once, to the
caller who rotated it; nothing here logs a value or hands a stored secret back (reads
say only whether one is set). When a service last accepted a delivery is kept, to the
minute, in the tenant's settings (``integrations_last_used``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import url_for
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.errors import DefinitionError, NotFound
from crm_journeys.secrets import decrypt_json, encrypt_json
from crm_journeys.storage.models import Tenant

LAST_USED = "integrations_last_used"
LAST_USED_GRAIN = timedelta(minutes=1)  # at most one tenant-row write per service a minute


@dataclass(frozen=True)
class Setting:
    name: str
    label: str
    secret: bool = True
    generated: bool = False  # we make it (rotate); otherwise the service gives it
    help: str = ""


@dataclass(frozen=True)
class Service:
    name: str
    label: str
    settings: tuple[Setting, ...]
    where: str  # where the URL (and secret) go in the service
    events: str  # what it starts

    def setting(self, name: str) -> Setting:
        found = next((s for s in self.settings if s.name == name), None)
        if found is None:
            raise DefinitionError({name: [f"{self.label} has no setting “{name}”; it has: "
                                         + ", ".join(s.name for s in self.settings)]})
        return found


SERVICES: dict[str, Service] = {s.name: s for s in (
    Service("eventbrite", "Eventbrite", (
        Setting("token", "Private token", help="Eventbrite signs nothing, so each order is fetched back from "
                "Eventbrite's API with this token (Account settings → Developer links → API keys)."),
        Setting("webhook_ids", "Webhook ids (optional)", secret=False,
                help="Comma separated. When set, only deliveries of these webhooks are accepted.")),
        where="Eventbrite → Account settings → Webhooks → Add webhook: paste the URL and choose the "
              "actions order.placed and attendee.updated.",
        events="registered for an event, bought a ticket"),
    Service("livechat", "LiveChat", (
        Setting("secret_key", "Secret key", generated=True,
                help="LiveChat puts it in every delivery; it must match."),
        Setting("token", "Access token (optional)", help="A personal access token, to fetch the chat when a "
                "delivery carries no customer email.")),
        where="LiveChat Developer Console → your app → Chat webhooks: paste the URL and the secret key, "
              "and choose the chat_deactivated action.",
        events="chat closed"),
    Service("zapier", "Zapier", (
        Setting("secret", "Secret", generated=True, help="Sent by the Zap in the X-Zapier-Secret header."),),
        where="In the Zap, add the action Webhooks by Zapier → POST: paste the URL, send the data with an "
              "email field (and zap, id), and add the header X-Zapier-Secret with the secret.",
        events="Zapier custom event"),
    Service("custom", "Custom triggers", (
        Setting("secret", "Webhook secret", generated=True,
                help="Sent in the X-Webhook-Secret header. Until you rotate it, the secret made at install "
                     "applies."),),
        where="Your systems POST {\"trigger\", \"contact\", \"attributes\"} to the URL with the header "
              "X-Webhook-Secret (see Custom triggers for examples).",
        events="your declared custom triggers"),
    Service("twilio", "Twilio SMS", (
        Setting("account_sid", "Account SID", secret=False, help="Twilio Console → Account info (AC…)."),
        Setting("auth_token", "Auth token", help="Twilio signs its webhooks with it; it also sends texts "
                "unless an API key is set."),
        Setting("api_key_sid", "API key SID (optional)", secret=False, help="SK…: send with an API key "
                "instead of the auth token."),
        Setting("api_key_secret", "API key secret (optional)"),
        Setting("messaging_service_sid", "Messaging Service SID", secret=False,
                help="MG…: Twilio picks the sender from the service. Or set a From number."),
        Setting("from_number", "From number", secret=False, help="In E.164 (+14155550100), when no "
                "Messaging Service is set."),
        Setting("public_url", "This service's public address", secret=False,
                help="https://… as Twilio reaches it: status callbacks go to <address>/hooks/<tenant>/twilio/status."),
        Setting("default_region", "Default country (optional)", secret=False,
                help="Two letters (DE, US): reads national numbers of contacts with no country."),
        Setting("api_url", "API address (optional)", secret=False,
                help="Default https://api.twilio.com; a regional edge if your account uses one.")),
        where="Twilio Console → Phone Numbers (or your Messaging Service) → Messaging → "
              "“A message comes in”: paste the URL (HTTP POST).",
        events="SMS replied, delivered, not delivered; STOP/START update SMS consent"),
)}


def service(name: str) -> Service:
    if name not in SERVICES:
        raise NotFound(f"no integration {name!r}; there are: {', '.join(SERVICES)}")
    return SERVICES[name]


def hook_url(tenant_slug: str, service_name: str) -> str:
    """The address to paste into the service (``POST /hooks/<tenant>/<service>``)."""
    return url_for("crm_journeys_integrations.receive", tenant_slug=tenant_slug, service=service_name,
                   _external=True)


def status(s: Session, tenant_id: int) -> list[dict[str, Any]]:
    """Per service: which settings are set (values of non-secret ones only) and when it
    last accepted a delivery."""
    tenant = _tenant(s, tenant_id)
    stored = _integrations(tenant)
    used = (tenant.settings or {}).get(LAST_USED) or {}
    out = []
    for svc in SERVICES.values():
        mine = stored.get(svc.name) or {}
        settings = []
        for st in svc.settings:
            is_set = bool(mine.get(st.name)) or (svc.name == "custom" and bool(tenant.webhook_secret))
            value = None if st.secret else _shown(mine.get(st.name))
            settings.append({"name": st.name, "label": st.label, "secret": st.secret, "generated": st.generated,
                             "help": st.help, "is_set": is_set if st.secret else bool(mine.get(st.name)),
                             "value": value})
        out.append({"service": svc.name, "label": svc.label, "where": svc.where, "events": svc.events,
                    "hook_url": hook_url(tenant.slug, svc.name), "settings": settings,
                    "last_used_at": _when(used.get(svc.name))})
    return out


def rotate(s: Session, tenant_id: int, service_name: str, setting: str | None = None) -> tuple[str, str]:
    """Make and store a new secret; returns (setting name, the secret), the only time it is readable."""
    svc = service(service_name)
    st = svc.setting(setting) if setting else next((x for x in svc.settings if x.generated), None)
    if st is None or not st.generated:
        raise DefinitionError({"setting": [f"{svc.label} gives this value itself: paste it instead."]})
    value = secrets.token_urlsafe(32)
    _write(s, tenant_id, svc.name, {st.name: value})
    return st.name, value


def update(s: Session, tenant_id: int, service_name: str, values: dict[str, str | None]) -> None:
    """Set values the service gives (a token, webhook ids) or one chosen by the admin; an
    empty value removes the setting."""
    svc = service(service_name)
    changes: dict[str, Any] = {}
    for name, raw in values.items():
        st = svc.setting(name)
        text = (raw or "").strip()
        if st.name == "webhook_ids":
            changes[name] = [w.strip() for w in text.split(",") if w.strip()] or None
        else:
            changes[name] = text or None
    _write(s, tenant_id, svc.name, changes)


def record_use(tenant: Tenant, service_name: str, now: datetime) -> None:
    """Note that ``service_name`` delivered something the tenant accepted (to the minute)."""
    settings = dict(tenant.settings or {})
    used = dict(settings.get(LAST_USED) or {})
    before = _when(used.get(service_name))
    if before is not None and now - before < LAST_USED_GRAIN:
        return
    used[service_name] = now.isoformat()
    tenant.settings = {**settings, LAST_USED: used}


def tenant_slug(s: Session, tenant_id: int) -> str:
    return _tenant(s, tenant_id).slug


def _tenant(s: Session, tenant_id: int, *, lock: bool = False) -> Tenant:
    query = select(Tenant).where(Tenant.id == tenant_id)
    tenant = s.scalar(query.with_for_update() if lock else query)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    return tenant


def _integrations(tenant: Tenant) -> dict[str, Any]:
    creds = decrypt_json(tenant.credentials) if tenant.credentials else {}
    return dict(creds.get("integrations") or {})


def _write(s: Session, tenant_id: int, service_name: str, changes: dict[str, Any]) -> None:
    """Merge into the tenant's encrypted credentials under the row lock (a connector
    refreshing its OAuth token writes the same column)."""
    tenant = _tenant(s, tenant_id, lock=True)
    creds = decrypt_json(tenant.credentials) if tenant.credentials else {}
    integrations = dict(creds.get("integrations") or {})
    mine = {k: v for k, v in {**(integrations.get(service_name) or {}), **changes}.items() if v is not None}
    integrations[service_name] = mine
    tenant.credentials = encrypt_json({**creds, "integrations": integrations})


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _when(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None
