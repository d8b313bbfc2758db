"""Installing the add-on into a CRM account, and removing it: one tenant per account.

OAuth hosts (HubSpot, Salesforce, Dynamics 365) go through the authorization-code flow:
``begin_oauth`` returns the host's authorize URL and what the browser session must keep
(``state``, the PKCE verifier); ``finish_oauth`` checks the state, exchanges the code and
installs. API-key hosts (Odoo, BottleCRM) call ``install_tenant`` with what the admin
typed. Either way the settings are validated against the manifest's settings schema,
credentials are stored encrypted, the connector prepares the host (``ensure_schema``) and
reads one page to prove the credentials work; a failed check leaves no tenant behind.
``uninstall`` deletes every ``cj_`` row of the tenant.

A HubSpot tenant records its account (``portal_id``): the app's one webhook URL routes
each event to the tenant of its ``portalId`` (``hubspot_tenants``), so an account is
installed at most once. The column ``Tenant.portal_id`` is what routes and what the
unique index guards; ``settings["portal_id"]`` keeps the same value for the connector.
Tenants installed before the column existed get it from ``backfill_portals``, which asks
HubSpot's token metadata.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from crm_journeys.connectors.hubspot import token_metadata
from crm_journeys.connectors.oauth import OAuthClient, hubspot_app, keeper_for, new_state, pkce_pair
from crm_journeys.errors import (
    ConnectorError,
    CrmJourneysError,
    FatalConnectorError,
    PluginNotFound,
    RetriableConnectorError,
)
from crm_journeys.hosts import HostProfile, profile_for
from crm_journeys.install_explain import explain
from crm_journeys.manifest import schema_errors
from crm_journeys.runtime.tenants import RESERVED_SLUGS, SLUG, create_tenant
from crm_journeys.secrets import decrypt_json, encrypt_json
from crm_journeys.storage.models import Base, Tenant

if TYPE_CHECKING:
    from crm_journeys.runtime.services import Runtime
    from crm_journeys.storage.db import Database

_SF_IDENTITY = re.compile(r"/id/(?P<org>[A-Za-z0-9]{15,18})/(?P<user>[A-Za-z0-9]{15,18})$")


class InstallError(CrmJourneysError):
    """The install cannot go on; ``errors`` maps a field (``settings.url``) to a message."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclass(frozen=True)
class OAuthClientConfig:
    """The plug-in's registered app at one host (from configuration, never from a tenant)."""

    client_id: str
    client_secret: str | None = None
    app_id: str | None = None  # HubSpot: our changes carry it (echo suppression)
    webhook_url: str | None = None  # HubSpot: the app's target URL, when a proxy rewrites ours


def client_config(host: str, config: dict[str, Any] | None = None) -> OAuthClientConfig:
    """From ``CRM_JOURNEYS_OAUTH_CLIENTS[host]`` or ``CRM_JOURNEYS_<HOST>_CLIENT_ID``,
    ``_CLIENT_SECRET``, ``_APP_ID`` and ``_WEBHOOK_URL``."""
    given = dict((config or {}).get(host) or {})
    env = f"CRM_JOURNEYS_{host.upper()}_"
    client_id = given.get("client_id") or os.environ.get(env + "CLIENT_ID")
    if not client_id:
        raise InstallError({"host": f"{host}: no OAuth client configured "
                                    f"(set {env}CLIENT_ID and {env}CLIENT_SECRET)"})
    return OAuthClientConfig(client_id, given.get("client_secret")
                             or os.environ.get(env + "CLIENT_SECRET"),
                             given.get("app_id") or os.environ.get(env + "APP_ID"),
                             given.get("webhook_url") or os.environ.get(env + "WEBHOOK_URL"))


def host_profile(host: str) -> HostProfile:
    try:
        profile = profile_for(host)
    except PluginNotFound as exc:
        raise InstallError({"host": str(exc)}) from None
    if profile.auth == "none":
        raise InstallError({"host": f"{host} is built in and needs no install"})
    return profile


def check_request(session: Any, host: str, slug: str, settings: dict[str, Any],
                  credentials: dict[str, Any] | None = None) -> HostProfile:
    """Validate what an install was asked with; raises ``InstallError`` listing it all."""
    profile = host_profile(host)
    errors: dict[str, str] = {}
    if not SLUG.match(slug or ""):
        errors["tenant"] = "use lowercase letters, digits and '-' (up to 80)"
    elif slug in RESERVED_SLUGS:
        errors["tenant"] = f"{slug!r} is reserved (an integration's name); choose another"
    elif session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        errors["tenant"] = f"{slug!r} is taken"
    errors.update({f"settings.{k.removeprefix('$')}".rstrip("."): v
                   for k, v in schema_errors(settings, profile.settings_schema()).items()})
    if credentials is not None:
        errors.update({f"credentials.{k}": v for k, v in
                       schema_errors(credentials, profile.credentials_schema()).items()})
    portal = str(settings.get("portal_id") or "") if host == "hubspot" else ""
    taken = hubspot_tenants(session, [portal]).get(portal) if portal else None
    if taken:  # the app's webhooks could not tell the two tenants apart
        errors["settings.portal_id"] = (f"HubSpot account {portal} is already installed as "
                                        f"tenant {taken[0].slug!r}")
    if errors:
        raise InstallError(errors)
    return profile


# --- OAuth hosts ---------------------------------------------------------------------------
def begin_oauth(runtime: Runtime, host: str, slug: str, name: str, settings: dict[str, Any],
                redirect_uri: str, client: OAuthClientConfig) -> tuple[str, dict[str, Any]]:
    """The authorize URL to send the admin to, and what the session keeps until the callback."""
    with runtime.db.unit_of_work() as s:
        profile = check_request(s, host, slug, settings)
    app = profile.oauth_app(settings)
    if app is None:
        raise InstallError({"host": f"{host} does not install through OAuth"})
    oauth = OAuthClient(app, client.client_id, client.client_secret, clock=runtime.clock)
    state = new_state()
    verifier, challenge = pkce_pair() if app.pkce else (None, None)
    pending = {"host": host, "slug": slug, "name": name or slug, "settings": settings,
               "state": state, "verifier": verifier, "redirect_uri": redirect_uri}
    return oauth.authorization_url(redirect_uri, state, challenge), pending


def finish_oauth(runtime: Runtime, pending: dict[str, Any] | None, state: str | None,
                 code: str | None, client: OAuthClientConfig) -> int:
    """Check the callback belongs to the session's flow, exchange the code, install."""
    if not pending or not state or not secrets.compare_digest(str(pending["state"]), state):
        raise InstallError({"state": "this sign-in did not start here, or it expired; "
                                     "start the install again"})
    if not code:
        raise InstallError({"code": "the CRM did not grant access"})
    host, settings = pending["host"], dict(pending["settings"])
    app = host_profile(host).oauth_app(settings)
    assert app is not None  # begin_oauth checked it
    oauth = OAuthClient(app, client.client_id, client.client_secret, clock=runtime.clock)
    try:
        tokens = oauth.exchange_code(code, pending["redirect_uri"], pending.get("verifier"))
    except ConnectorError as exc:
        raise InstallError({"code": refused_by_host(host, exc, "the token exchange failed")}) from None
    credentials = {**tokens.as_credentials(), "client_id": client.client_id}
    if client.client_secret:
        credentials["client_secret"] = client.client_secret
    settings.update(_settings_from_tokens(runtime, host, settings, credentials, client))
    if host == "dynamics":
        credentials["webhook_secret"] = secrets.token_urlsafe(24)
    return install_tenant(runtime, host, pending["slug"], pending["name"], settings, credentials)


def _settings_from_tokens(runtime: Runtime, host: str, settings: dict[str, Any],
                          credentials: dict[str, Any],
                          client: OAuthClientConfig) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if host == "hubspot":
        found.update(_hubspot_account(runtime, settings, credentials, client))
    if host == "salesforce":
        match = _SF_IDENTITY.search(str(credentials.get("id") or ""))
        if match:  # the identity URL names the org and the integration user
            found.update(org_id=match["org"], integration_user_id=match["user"])
    return found


def _hubspot_account(runtime: Runtime, settings: dict[str, Any], credentials: dict[str, Any],
                     client: OAuthClientConfig) -> dict[str, str]:
    """The account (``portal_id``) and app the token was issued for. Newer token answers
    carry ``hub_id``; otherwise, and for the app id when none is configured, the token's
    metadata (``GET /oauth/v1/access-tokens/{token}``) says."""
    hub = credentials.get("hub_id") or credentials.get("hubId")
    app = client.app_id
    if not hub or not app:
        api = settings.get("oauth_api_url") or settings.get("base_url") or "https://api.hubapi.com"
        try:
            meta = token_metadata(api, credentials["access_token"], clock=runtime.clock)
        except ConnectorError as exc:
            raise InstallError({"code": refused_by_host("hubspot", exc,
                                                        "HubSpot did not say which account was installed")}) from None
        hub, app = hub or meta.get("hub_id"), app or meta.get("app_id")
    if not hub:
        raise InstallError({"code": "HubSpot did not say which account was installed"})
    return {"portal_id": str(hub), **({"app_id": str(app)} if app else {})}


def hubspot_tenants(session: Any, portal_ids: Iterable[str]) -> dict[str, list[Tenant]]:
    """The HubSpot tenants installed on these accounts, by portal id (one each: the unique
    index on ``(connector, portal_id)`` allows no second)."""
    wanted = sorted({str(p) for p in portal_ids if p})
    if not wanted:
        return {}
    found: dict[str, list[Tenant]] = {}
    for tenant in session.scalars(select(Tenant).where(Tenant.connector == "hubspot",
                                                       Tenant.portal_id.in_(wanted))
                                  .order_by(Tenant.id)):
        found.setdefault(str(tenant.portal_id), []).append(tenant)
    return found


def record_portal(tenant: Tenant, portal: str, app_id: str | None = None) -> None:
    """Write the account to the column (routing, uniqueness) and to the settings the
    connector reads; the caller's flush raises ``IntegrityError`` if another tenant has it."""
    tenant.portal_id = portal
    extra = {"app_id": app_id} if app_id and not (tenant.settings or {}).get("app_id") else {}
    tenant.settings = {**(tenant.settings or {}), "portal_id": portal, **extra}


@dataclass(frozen=True)
class PortalBackfill:
    """What ``backfill_portals`` found for one tenant. ``outcome``: ``recorded``,
    ``already`` (nothing to do), ``conflict`` (another tenant has the account), ``failed``
    (HubSpot could not say, or no such HubSpot tenant; ``retry``: trying later may help)."""

    slug: str
    outcome: str
    portal_id: str | None
    message: str
    retry: bool = False


def backfill_portals(runtime: Runtime, slugs: Iterable[str] = ()) -> list[PortalBackfill]:
    """For installed HubSpot tenants without a portal id, ask HubSpot's token metadata
    which account their token belongs to and record it; one result per tenant."""
    wanted = sorted(set(slugs))
    with runtime.db.unit_of_work() as s:
        query = select(Tenant.id, Tenant.slug).where(Tenant.connector == "hubspot",
                                                     Tenant.portal_id.is_(None))
        if wanted:
            query = query.where(Tenant.slug.in_(wanted))
        missing = s.execute(query.order_by(Tenant.id)).all()
        named = {slug for _, slug in missing}
        skipped = [_not_missing(s, slug) for slug in wanted if slug not in named]
    return skipped + [_backfill_one(runtime, tenant_id, slug) for tenant_id, slug in missing]


def _not_missing(session: Any, slug: str) -> PortalBackfill:
    """Why a tenant named on the command line needs nothing (or cannot be helped)."""
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        return PortalBackfill(slug, "failed", None, "no such tenant")
    if tenant.connector != "hubspot":
        return PortalBackfill(slug, "failed", None, f"a {tenant.connector} tenant, not HubSpot")
    return PortalBackfill(slug, "already", tenant.portal_id,
                          f"HubSpot account {tenant.portal_id} already recorded")


def _backfill_one(runtime: Runtime, tenant_id: int, slug: str) -> PortalBackfill:
    try:
        hub, app = _ask_token_metadata(runtime, tenant_id)
    except (ConnectorError, InstallError) as exc:
        return PortalBackfill(slug, "failed", None, str(exc),
                              retry=isinstance(exc, RetriableConnectorError))
    portal = str(hub)
    try:
        with runtime.db.unit_of_work() as s:
            tenant = s.get(Tenant, tenant_id)
            if tenant is None:
                return PortalBackfill(slug, "failed", portal, "uninstalled meanwhile")
            owner = hubspot_tenants(s, [portal]).get(portal)
            if owner:
                return PortalBackfill(slug, "conflict", portal, f"HubSpot account {portal} "
                                      f"is already tenant {owner[0].slug!r}; uninstall one")
            record_portal(tenant, portal, app)
    except IntegrityError:  # recorded for another tenant between our check and commit
        return PortalBackfill(slug, "conflict", portal,
                              f"HubSpot account {portal} was just recorded for another tenant")
    runtime.forget_connector(tenant_id)  # the next connector reads the new settings
    return PortalBackfill(slug, "recorded", portal, f"HubSpot account {portal}")


def _ask_token_metadata(runtime: Runtime, tenant_id: int) -> tuple[Any, str | None]:
    """``(hub_id, app_id)`` from ``GET /oauth/v1/access-tokens/{token}``. An expired or
    unknown token is renewed once with the refresh token (and stored) and asked again."""
    with runtime.db.unit_of_work() as s:
        tenant = s.get(Tenant, tenant_id)
        assert tenant is not None
        settings, credentials = dict(tenant.settings or {}), decrypt_json(tenant.credentials)
    token = credentials.get("access_token")
    if not token:
        raise InstallError({"credentials": "no access token stored; reinstall"})
    api = settings.get("oauth_api_url") or settings.get("base_url") or "https://api.hubapi.com"
    context = {**dict(runtime.settings.get("connector_context") or {}), "clock": runtime.clock,
               "on_credentials_update": lambda c: update_credentials(runtime.db, tenant_id, c)}
    try:
        meta = token_metadata(api, token, **context)
    except FatalConnectorError as exc:
        keeper = keeper_for(hubspot_app(api), credentials, context)
        if keeper is None:  # a private-app token: the metadata endpoint knows OAuth tokens
            raise InstallError({"credentials": f"HubSpot does not describe this token and "
                                               f"it cannot be renewed: {exc}"}) from None
        meta = token_metadata(api, keeper(), **context)
    if not meta.get("hub_id"):
        raise InstallError({"credentials": "HubSpot's token metadata names no account"})
    return meta["hub_id"], str(meta["app_id"]) if meta.get("app_id") else None


# --- every host ----------------------------------------------------------------------------
def typed_settings(values: dict[str, str], props: dict[str, Any]) -> dict[str, Any]:
    """Text (a form, a command line) to the types the host's settings schema asks for; a
    string setting stays a string even when it looks like a number (``portal_id=62515``).
    Values that do not convert stay strings: the schema check then names them."""
    out: dict[str, Any] = {}
    for name, raw in values.items():
        kind = (props.get(name) or {}).get("type")
        try:
            if kind == "integer":
                out[name] = int(raw)
            elif kind == "number":
                out[name] = float(raw)
            elif kind == "boolean":
                out[name] = raw.lower() in ("1", "true", "yes", "on")
            elif kind == "array":
                out[name] = [p.strip() for p in raw.split(",") if p.strip()]
            else:
                out[name] = raw
        except ValueError:
            out[name] = raw
    return out


def refused_by_host(host: str, exc: ConnectorError, what: str = "") -> str:
    """The host's refusal without its body: an installer learns the status, never what a
    server (perhaps not the CRM at all) answered."""
    status = getattr(exc, "status", None)
    detail = f"HTTP {status}" if status else type(exc).__name__
    return f"{what or host + ' refused the connection'} ({detail}); check the URL and credentials"


def install_tenant(runtime: Runtime, host: str, slug: str, name: str, settings: dict[str, Any],
                   credentials: dict[str, Any], *, check: bool = True) -> int:
    """Create the tenant, prepare the host and prove the credentials; returns its id."""
    portal = str(settings.get("portal_id") or "") if host == "hubspot" else ""
    try:
        with runtime.db.unit_of_work() as s:
            check_request(s, host, slug, settings, credentials)
            tenant = create_tenant(s, slug, name or slug, runtime.clock.now(), connector=host,
                                   settings=settings, credentials=credentials)
            if portal:
                record_portal(tenant, portal)
                s.flush()
            tenant_id = tenant.id
    except IntegrityError:  # a concurrent install of the same account (or slug) won
        with runtime.db.unit_of_work() as s:
            check_request(s, host, slug, settings, credentials)
        raise InstallError({"tenant": "installed concurrently; try again"}) from None
    if not check:
        return tenant_id
    try:
        _discover(runtime, tenant_id)
        connector = runtime.connector_for(tenant_id)
        connector.ensure_schema()
        connector.sync_page(None, 1)  # can read contacts: the credentials work
    except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence, none a traceback
        uninstall(runtime, tenant_id)  # a failed install leaves nothing behind
        raise InstallError({"credentials": explain(host, settings.get("url"), exc)}) from None
    return tenant_id


def _discover(runtime: Runtime, tenant_id: int) -> None:
    """Record what the host can tell about the install (its integration user), so nobody
    has to look it up by hand; the connector is rebuilt with it."""
    found = runtime.connector_for(tenant_id).discover_settings()
    if not found:
        return
    with runtime.db.unit_of_work() as s:
        tenant = s.get(Tenant, tenant_id)
        assert tenant is not None
        tenant.settings = {**(tenant.settings or {}), **found}
    runtime.forget_connector(tenant_id)


def update_credentials(db: Database, tenant_id: int, changes: dict[str, Any]) -> None:
    """Merge ``changes`` into the tenant's encrypted credentials (refreshed tokens, a
    rotated webhook secret)."""
    with db.unit_of_work() as s:
        tenant = s.get(Tenant, tenant_id)
        if tenant is None:
            return  # uninstalled meanwhile: nothing to keep
        tenant.credentials = encrypt_json({**decrypt_json(tenant.credentials), **changes})


def tenant_rows(db: Database, tenant_id: int) -> dict[str, int]:
    """How many rows each ``cj_`` table holds for the tenant (the tenant row included)."""
    counts = {}
    with db.unit_of_work() as s:
        for table in Base.metadata.sorted_tables:
            column = table.c.id if table.name == "cj_tenant" else table.c.get("tenant_id")
            if column is not None:
                counts[table.name] = s.scalar(select(func.count()).select_from(table)
                                              .where(column == tenant_id)) or 0
    return counts


def uninstall(runtime: Runtime, tenant_id: int) -> dict[str, int]:
    """Delete everything of the tenant, children first; returns rows deleted per table."""
    runtime.forget_connector(tenant_id)
    deleted = {}
    with runtime.db.unit_of_work() as s:
        for table in reversed(Base.metadata.sorted_tables):
            column = table.c.id if table.name == "cj_tenant" else table.c.get("tenant_id")
            if column is None:
                continue
            result: Any = s.execute(delete(table).where(column == tenant_id))
            count = result.rowcount
            if count:
                deleted[table.name] = count
    return deleted
