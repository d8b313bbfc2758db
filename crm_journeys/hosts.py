"""What installing into each host takes: auth, scopes, webhooks, settings, UI extension points.

Declarative data, one ``HostProfile`` per connector, read by the manifest generator
(``crm_journeys.manifest``) and the install flow (``crm_journeys.install``). A third-party
connector supplies its own as the class attribute ``install_profile``; the built-in ones
live here so the adapters stay about talking to their host. OAuth scopes come from
``connectors.oauth`` (what the flow really asks for), never restated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from crm_journeys.connectors.oauth import (
    OAuthApp,
    dynamics_app,
    hubspot_app,
    salesforce_app,
)

AuthKind = Literal["oauth2", "api_key", "none"]
WEBHOOK_PATH = "/hooks/crm/{tenant_slug}"
HUBSPOT_WEBHOOK_PATH = "/hooks/hubspot"  # one target URL per HubSpot app, routed by portalId

# What the plug-in does in a CRM, and which actions need it.
CAPABILITIES = {
    "read_contacts": "Read contacts and their changes (initial and incremental sync)",
    "write_contacts": "Update contact fields and tags",
    "create_lead": "Create leads linked to the contact",
    "create_activity": "Create tasks, phone calls and appointments for salespeople",
    "log_email": "Record sent emails on the contact's timeline",
    "receive_webhooks": "Receive change notifications",
    "manage_schema": "Create the plug-in's own fields or properties",
    "offline_access": "Stay connected without the admin (refresh tokens)",
}
ACTION_NEEDS = {
    "add_tag": "write_contacts", "remove_tag": "write_contacts",
    "update_field": "write_contacts", "assign_score": "write_contacts",
    "create_lead": "create_lead", "create_task": "create_activity",
    "create_phone_call": "create_activity", "create_appointment": "create_activity",
    "send_email": "log_email",
}


def _s(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **extra}


URL = {"type": "string", "format": "uri", "pattern": "^https?://"}
COMMON_SETTINGS: dict[str, Any] = {
    "sync_interval_seconds": _s("integer", "Seconds between incremental syncs run by the "
                                "worker; 0 turns polling off", minimum=0),
    "custom_fields": _s("array", "Host fields mirrored as custom contact fields",
                        items={"type": "string", "minLength": 1}),
    "requests_per_second": _s("number", "Request rate toward the host (token bucket)",
                              exclusiveMinimum=0),
    "mail_from": _s("string", "Sender address for emails sent through SMTP"),
    "smtp_url": _s("string", "SMTP server for send_email (smtp://user:pass@host:port)"),
    "allow_private_webhooks": _s("boolean", "Let call_webhook reach private addresses"),
    "time_zone": _s("string", "The account's time zone (IANA name)"),
}


@dataclass(frozen=True)
class HostProfile:
    """How one host is installed into and what the plug-in asks of it."""

    connector: str
    auth: AuthKind
    label: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # JSON Schema properties
    required_settings: tuple[str, ...] = ()
    credentials: dict[str, Any] = field(default_factory=dict)
    required_credentials: tuple[str, ...] = ()
    scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # capability -> scopes
    permissions: tuple[str, ...] = ()  # host-side rights the integration user needs
    webhooks: tuple[dict[str, Any], ...] = ()
    ui: tuple[dict[str, Any], ...] = ()
    min_host_version: str = ""
    default_sync_interval: int = 300
    notes: str = ""

    def oauth_app(self, settings: dict[str, Any]) -> OAuthApp | None:
        """The OAuth app for a tenant's settings (URL overrides point it at a test host)."""
        if self.connector == "hubspot":
            api = settings.get("oauth_api_url") or settings.get("base_url") or "https://api.hubapi.com"
            return hubspot_app(api, settings.get("oauth_app_url", "https://app.hubspot.com"))
        if self.connector == "salesforce":
            return salesforce_app(settings.get("login_url", "https://login.salesforce.com"))
        if self.connector == "dynamics":
            return dynamics_app(settings["environment_url"],
                                settings.get("entra_tenant", "organizations"),
                                settings.get("login_url", "https://login.microsoftonline.com"))
        return None

    def settings_schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False,
                "required": list(self.required_settings),
                "properties": {**COMMON_SETTINGS, **self.settings}}

    def credentials_schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": True,
                "required": list(self.required_credentials), "properties": dict(self.credentials)}

    def all_scopes(self) -> list[str]:
        seen: dict[str, None] = {}
        for scopes in self.scopes.values():
            seen.update(dict.fromkeys(scopes))
        return list(seen)


_OAUTH_CREDS = {
    "access_token": _s("string", "Obtained by the install flow", writeOnly=True),
    "refresh_token": _s("string", "Obtained by the install flow; renewed tokens are stored back",
                        writeOnly=True),
    "client_id": _s("string", "The plug-in's OAuth client id (from the app configuration)"),
    "client_secret": _s("string", "The plug-in's OAuth client secret", writeOnly=True),
    "expires_at": _s("string", "When the access token expires", format="date-time"),
}
_CARD = "/crm/contact?tenant={tenant_slug}&external_id={contact_id}"

HUBSPOT = HostProfile(
    connector="hubspot", auth="oauth2", label="HubSpot",
    settings={
        "base_url": {**URL, "description": "HubSpot API (default https://api.hubapi.com)"},
        "oauth_api_url": {**URL, "description": "Token endpoint host (default: base_url)"},
        "oauth_app_url": {**URL, "description": "Authorize host (default https://app.hubspot.com)"},
        "app_id": _s("string", "The plug-in's HubSpot app id: its own changes are echoes"),
        "portal_id": _s("string", "The HubSpot account (hub) id; set from the token at "
                        "OAuth install, and routes the app's webhooks here"),
        "tags_property": _s("string", "Contact property holding ';'-separated tags"),
        "webhook_url": {**URL, "description": "Public URL HubSpot posts to, when behind a proxy"},
    },
    credentials=_OAUTH_CREDS, required_credentials=("access_token", "client_secret"),
    scopes={
        "read_contacts": ("oauth", "crm.objects.contacts.read"),
        "write_contacts": ("crm.objects.contacts.write",),
        "create_activity": ("crm.objects.contacts.write",),
        "log_email": ("crm.objects.contacts.write",),
        "create_lead": ("crm.objects.leads.read", "crm.objects.leads.write"),
        "manage_schema": ("crm.schemas.contacts.write",),
        "list_owners": ("crm.objects.owners.read",),  # GET /crm/v3/owners
        "write_consent": ("communication_preferences.read_write",),  # unsubscribe-all (optional scope)
        "receive_webhooks": (),
    },
    webhooks=tuple({"subscription": s, "target": HUBSPOT_WEBHOOK_PATH,
                    "signature": "X-HubSpot-Signature-v3"}
                   for s in ("contact.creation", "contact.propertyChange", "contact.deletion")),
    ui=({"type": "crm_card", "location": "crm.record.sidebar", "object": "contacts",
         "title": "Customer journeys", "url": _CARD},
        {"type": "settings_page", "location": "app.settings", "title": "Customer journeys",
         "url": "/journeys"}),
    min_host_version="CRM API v3 (webhooks v3, associations v4)",
    default_sync_interval=3600,
    notes="Webhook subscriptions are per app: one target URL (/hooks/hubspot) for every "
          "installed account, routed to the tenant by portalId. A private app (token "
          "install) posts to /hooks/crm/{tenant_slug} instead.",
)

SALESFORCE = HostProfile(
    connector="salesforce", auth="oauth2", label="Salesforce",
    settings={
        "login_url": {**URL, "description": "https://login.salesforce.com or test.salesforce.com"},
        "instance_url": {**URL, "description": "The org's instance (set by the OAuth answer)"},
        "integration_user_id": _s("string", "User id of the integration user: its changes are echoes"),
        "org_id": _s("string", "The org id"),
        "tags_field": _s("string", "Contact field holding ';'-separated tags"),
        "lead_contact_field": _s("string", "Lead lookup field to the contact"),
        "lead_company": _s("string", "Company written on leads (Salesforce requires one)"),
        "budget_cooloff_minutes": _s("integer", "Circuit time after REQUEST_LIMIT_EXCEEDED",
                                     minimum=1),
    },
    credentials={**_OAUTH_CREDS, "instance_url": {**URL, "description": "From the token answer"}},
    required_credentials=("access_token",),
    scopes={"read_contacts": ("api",), "write_contacts": ("api",), "create_lead": ("api",),
            "create_activity": ("api",), "log_email": ("api",), "manage_schema": (),
            "receive_webhooks": (), "offline_access": ("refresh_token",)},
    permissions=("API Enabled", "Read/Edit Contact", "Create/Edit Lead", "Edit Tasks",
                 "Edit Events", "View All Data on Contact (for queryAll deletions)",
                 "Package fields CRM_Journeys_Key__c (External ID), CRM_Journeys_Tags__c, "
                 "CRM_Journeys_Contact__c"),
    ui=({"type": "lightning_tab", "location": "app.navigation", "title": "Customer journeys",
         "url": "/journeys"},
        {"type": "record_action", "location": "Contact.record", "title": "Journeys of this contact",
         "url": _CARD}),
    min_host_version="REST API v60.0 (Spring '24)",
)

DYNAMICS = HostProfile(
    connector="dynamics", auth="oauth2", label="Dynamics 365",
    settings={
        "environment_url": {**URL, "description": "https://<org>.crm.dynamics.com"},
        "entra_tenant": _s("string", "Entra ID tenant id or 'organizations'"),
        "login_url": {**URL, "description": "Entra ID authority (default login.microsoftonline.com)"},
        "integration_user_id": _s("string", "systemuserid of the integration user: its changes are echoes"),
        "sender_user_id": _s("string", "systemuserid emails are sent as"),
        "tags_column": _s("string", "Contact column holding ';'-separated tags"),
        "webhook_header": _s("string", "Header carrying the webhook secret"),
        "webhook_max_age_seconds": _s("integer", "Oldest webhook accepted", minimum=1),
        "circuit_after_seconds": _s("integer", "Retry-After beyond which the circuit opens",
                                    minimum=1),
    },
    required_settings=("environment_url",),
    credentials={**_OAUTH_CREDS,
                 "webhook_secret": _s("string", "Made at install; enter it on the service "
                                      "endpoint (HttpHeader auth)", writeOnly=True)},
    required_credentials=("access_token",),
    scopes={"read_contacts": ("{environment_url}/user_impersonation",),
            "write_contacts": ("{environment_url}/user_impersonation",),
            "create_lead": ("{environment_url}/user_impersonation",),
            "create_activity": ("{environment_url}/user_impersonation",),
            "log_email": ("{environment_url}/user_impersonation",),
            "manage_schema": (), "receive_webhooks": (), "offline_access": ("offline_access",)},
    permissions=("prvReadContact", "prvWriteContact", "prvCreateLead", "prvReadLead",
                 "prvCreateActivity", "prvReadActivity", "prvAppendToContact",
                 "prvSendEmail (send_email only)",
                 "Solution: alternate key crmj_journeyskey on lead, task, phonecall, "
                 "appointment, email; column crmj_tags on contact"),
    webhooks=tuple({"message": m, "entity": "contact", "stage": "PostOperation",
                    "mode": "Asynchronous", "target": WEBHOOK_PATH,
                    "auth": "HttpHeader x-crmj-secret"} for m in ("Create", "Update", "Delete")),
    ui=({"type": "sitemap_subarea", "location": "sitemap.area", "title": "Customer journeys",
         "url": "/journeys"},
        {"type": "form_tab", "location": "contact.main_form", "title": "Journeys",
         "url": _CARD}),
    min_host_version="Dataverse Web API v9.2",
    default_sync_interval=3600,
)

ODOO = HostProfile(
    connector="odoo", auth="api_key", label="Odoo",
    settings={
        "url": {**URL, "description": "https://<company>.odoo.com"},
        "database": _s("string", "Database name", minLength=1),
        "login": _s("string", "Login of the user owning the API key", minLength=1),
        "version": _s("integer", "Major Odoo version (19+: JSON-2, else JSON-RPC)",
                      minimum=14),
        "uid": _s("integer", "That user's id (asked once when absent)", minimum=1),
        "lead_type": _s("string", "crm.lead type of created leads", enum=["lead", "opportunity"]),
    },
    required_settings=("url", "database", "login"),
    credentials={"api_key": _s("string", "Preferences > Account security > New API key",
                               minLength=16, writeOnly=True)},
    required_credentials=("api_key",),
    permissions=("Contacts: create/edit (base.group_partner_manager)",
                 "Sales: User (crm.lead)", "Calendar (calendar.event)",
                 "Discuss / activities (mail.activity)"),
    ui=({"type": "menu_item", "location": "crm.menu_root", "title": "Customer journeys",
         "url": "/journeys"},),
    min_host_version="14.0 (JSON-RPC); 19.0 for the JSON-2 API",
)

BOTTLECRM = HostProfile(
    connector="bottlecrm", auth="api_key", label="BottleCRM (Django-CRM)",
    settings={
        "url": {**URL, "description": "The BottleCRM API base, e.g. https://api.bottlecrm.io"},
        "integration_user_id": _s("string", "Profile id behind the token: its changes are echoes"),
    },
    required_settings=("url",),
    credentials={"token": _s("string", "Personal access token (bcrm_pat_...)",
                             pattern="^bcrm_pat_", writeOnly=True)},
    required_credentials=("token",),
    permissions=("Organisation member with access to contacts, leads, tasks and tags",),
    ui=({"type": "link", "location": "navigation", "title": "Customer journeys",
         "url": "/journeys"},),
    min_host_version="the REST API of shared/specs/bottlecrm/openapi.yaml",
)

SANDBOX = HostProfile(connector="sandbox", auth="none", label="Sandbox CRM (built in)",
                      default_sync_interval=0,
                      ui=({"type": "page", "location": "navigation", "title": "Contacts",
                           "url": "/contacts"},))

BUILT_IN = {p.connector: p for p in (HUBSPOT, SALESFORCE, DYNAMICS, ODOO, BOTTLECRM, SANDBOX)}


def profile_for(connector_name: str) -> HostProfile:
    """The connector's install profile: its own ``install_profile``, else the built-in one,
    else a minimal one (credentials as given, no scopes)."""
    from crm_journeys.connectors.registry import load_connector

    own = getattr(load_connector(connector_name), "install_profile", None)
    if isinstance(own, HostProfile):
        return own
    return BUILT_IN.get(connector_name) or HostProfile(connector=connector_name, auth="api_key")


def sync_interval(connector_name: str, settings: dict[str, Any]) -> int:
    """Seconds between the worker's incremental syncs of a tenant (0: never)."""
    value = settings.get("sync_interval_seconds")
    if value is not None:
        return int(value)
    return BUILT_IN[connector_name].default_sync_interval if connector_name in BUILT_IN else 300
