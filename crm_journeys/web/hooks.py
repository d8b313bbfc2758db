"""Inbound CRM webhooks: ``POST /hooks/crm/<tenant_slug>``.

The tenant's own connector verifies the request (signature or shared secret, timestamp
window) and parses it into hints; each hint is stored once per host event id and the
host gets its 202 at once. Nothing is fetched here: the worker fetches each record by id
(``runtime.upkeep``), so a slow CRM never makes the host's delivery time out. A request
that does not verify is refused with 401 and leaves nothing behind.
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from crm_journeys.connectors.base import InboundRequest
from crm_journeys.errors import NotFound, WebhookRejected
from crm_journeys.extension import state
from crm_journeys.runtime.tenants import tenant_by_slug
from crm_journeys.runtime.upkeep import HINTS_WAITING, store_hints

log = logging.getLogger(__name__)
crm_hooks = Blueprint("crm_journeys_crm_hooks", __name__)


@crm_hooks.post("/hooks/crm/<tenant_slug>")
def receive(tenant_slug: str):
    st = state()
    with st.db.unit_of_work() as s:
        try:
            tenant_id = tenant_by_slug(s, tenant_slug).id
        except NotFound:
            return jsonify({"error": "unknown tenant"}), 404
    connector = st.runtime.connector_for(tenant_id)
    now = st.runtime.clock.now()
    inbound = InboundRequest(request.method, request.url, dict(request.headers),
                             request.get_data(), now)
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
        new = store_hints(s, tenant_id, connector.name, hints, now)
    if new:
        st.runtime.settings[HINTS_WAITING] = True  # an embedded worker takes them at once
    return jsonify({"accepted": len(hints), "new": new}), 202
