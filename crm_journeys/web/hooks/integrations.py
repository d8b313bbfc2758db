"""Inbound integration webhooks: ``POST /hooks/<tenant_slug>/<service>``.

Looks the tenant up, hands the delivery to the service's adapter
(``crm_journeys.integrations``) with the tenant's settings for it (secrets come from the
tenant's encrypted credentials, ``{"integrations": {"<service>": {...}}}``; custom
triggers use the one set there, else the tenant's webhook secret), stores the resulting events in the inbox and
answers 202 at once: journeys run in the worker. An accepted delivery is noted (to the
minute) as the service's "last used" time.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from crm_journeys.errors import NotFound
from crm_journeys.integrations import Delivery, HookRejected, adapters
from crm_journeys.runtime.ingest import ingest_many
from crm_journeys.runtime.tenants import tenant_by_slug
from crm_journeys.secrets import decrypt_json
from crm_journeys.services.integration_secrets import record_use
from crm_journeys.web.state import state

hooks = Blueprint("crm_journeys_integrations", __name__)


def service_config(tenant: Any, service: str) -> dict[str, Any]:
    creds = decrypt_json(tenant.credentials) if tenant.credentials else {}
    config = dict((creds.get("integrations") or {}).get(service) or {})
    if service == "custom":
        config.setdefault("secret", tenant.webhook_secret)
    return config


def rejected(status: int, message: str) -> Any:
    """The API's one error body; ``error`` repeats the message for senders that read it."""
    return jsonify({"code": "hook_rejected", "status": status, "message": message, "errors": {},
                    "error": message}), status


@hooks.post("/hooks/<tenant_slug>/<service>")
def receive(tenant_slug: str, service: str):
    parse = adapters().get(service)
    if parse is None:
        return rejected(404, f"unknown service {service!r}; known: {', '.join(sorted(adapters()))}")
    st = state()
    with st.db.unit_of_work() as session:
        try:
            tenant = tenant_by_slug(session, tenant_slug)
        except NotFound:
            return rejected(404, "unknown tenant")
        config = service_config(tenant, service)
        if service == "custom":
            config.update(session=session, tenant_id=tenant.id)
        delivery = Delivery(body=request.get_json(silent=True), headers=dict(request.headers),
                            args=dict(request.args), config=config,
                            fetch=st.runtime.settings.get("integration_fetch"))
        try:
            events = parse(delivery)
        except HookRejected as exc:
            return rejected(exc.status, exc.message)
        now = st.runtime.clock.now()
        record_use(tenant, service, now)  # "last used" on the admin's integrations page
        stored = ingest_many(session, tenant.id, events, now)
    return jsonify({"accepted": len(events), "new": stored}), 202
