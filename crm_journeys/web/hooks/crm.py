"""Inbound CRM webhooks: ``POST /hooks/crm/<tenant_slug>`` and HubSpot's app-level
``POST /hooks/hubspot``.

The tenant's own connector verifies the request (signature or shared secret, timestamp
window) and parses it into hints; each hint is stored once per host event id and the
host gets its 202 at once. Nothing is fetched here: the worker fetches each record by id
(``runtime.upkeep``), so a slow CRM never makes the host's delivery time out. A request
that does not verify is refused with 401 and leaves nothing behind.

A HubSpot public app has one target URL for every account that installed it: that
endpoint checks the signature with the app's client secret, splits the batch by
``portalId`` and stores each account's events for the tenant installed on it; events of
an account no tenant has are counted and dropped, never stored anywhere.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request

from crm_journeys.connectors.base import InboundRequest
from crm_journeys.connectors.hubspot import (
    events_by_portal,
    read_events,
    verify_signature,
    webhook_hints,
)
from crm_journeys.errors import NotFound, WebhookRejected
from crm_journeys.install import InstallError, client_config, hubspot_tenants
from crm_journeys.runtime.tenants import RESERVED_SLUGS, tenant_by_slug
from crm_journeys.runtime.upkeep import HINTS_WAITING, store_hints
from crm_journeys.web.state import state

log = logging.getLogger(__name__)
crm_hooks = Blueprint("crm_journeys_crm_hooks", __name__)


def _inbound() -> InboundRequest:
    return InboundRequest(request.method, request.url, dict(request.headers),
                          request.get_data(), state().runtime.clock.now())


@crm_hooks.post("/hooks/crm/<tenant_slug>")
def receive(tenant_slug: str):
    if tenant_slug in RESERVED_SLUGS:  # /hooks/crm/zapier: tenant "crm"'s integration hook
        from crm_journeys.web.hooks.integrations import receive as receive_integration

        return receive_integration("crm", tenant_slug)
    st = state()
    with st.db.unit_of_work() as s:
        try:
            tenant_id = tenant_by_slug(s, tenant_slug).id
        except NotFound:
            return jsonify({"error": "unknown tenant"}), 404
    connector = st.runtime.connector_for(tenant_id)
    inbound = _inbound()
    try:
        connector.verify_webhook(inbound)
    except WebhookRejected as exc:
        log.warning("webhook for %s refused: %s", tenant_slug, exc)
        return jsonify({"error": str(exc)}), 401
    try:
        hints = connector.parse_webhook(inbound)
    except (WebhookRejected, KeyError, TypeError, ValueError) as exc:
        return jsonify({"error": f"unreadable notification: {exc}"}), 400
    with st.db.unit_of_work() as s:
        new = store_hints(s, tenant_id, connector.name, hints, inbound.received_at)
    if new:
        st.runtime.settings[HINTS_WAITING] = True  # an embedded worker takes them at once
    return jsonify({"accepted": len(hints), "new": new}), 202


@crm_hooks.post("/hooks/hubspot")
def receive_hubspot():
    """HubSpot's one webhook URL per app: a signed batch of events of many accounts."""
    st = state()
    try:
        app = client_config("hubspot", current_app.config.get("CRM_JOURNEYS_OAUTH_CLIENTS"))
    except InstallError:
        app = None
    if app is None or not app.client_secret:  # 5xx: HubSpot keeps retrying until fixed
        log.error("HubSpot webhook received but no HubSpot app (client secret) is configured")
        return jsonify({"error": "no HubSpot app configured"}), 503
    inbound = _inbound()
    try:
        verify_signature(inbound, app.client_secret, inbound.received_at, app.webhook_url)
    except WebhookRejected as exc:
        log.warning("HubSpot app webhook refused: %s", exc)
        return jsonify({"error": str(exc)}), 401
    try:
        batch = events_by_portal(read_events(inbound.body))
    except WebhookRejected as exc:
        return jsonify({"error": f"unreadable notification: {exc}"}), 400
    accepted = new = ignored = 0
    with st.db.unit_of_work() as s:
        tenants = hubspot_tenants(s, batch)
        try:
            per_tenant = [(tenant.id, webhook_hints(events, tenant.settings.get("app_id")))
                          for portal, events in batch.items()
                          for tenant in tenants.get(portal, [])]
        except (KeyError, TypeError, ValueError) as exc:
            return jsonify({"error": f"unreadable notification: {exc}"}), 400
        for tenant_id, hints in per_tenant:
            accepted += len(hints)
            new += store_hints(s, tenant_id, "hubspot", hints, inbound.received_at)
        unknown = {portal: len(events) for portal, events in batch.items() if portal not in tenants}
    ignored = sum(unknown.values())
    if ignored:
        log.info("HubSpot webhook: %d event(s) of accounts no tenant is installed on "
                 "ignored: %s", ignored, ", ".join(sorted(p or "(none)" for p in unknown)))
    if new:
        st.runtime.settings[HINTS_WAITING] = True
    return jsonify({"accepted": accepted, "new": new, "ignored": ignored}), 202
