"""Twilio's webhooks: ``POST /hooks/<tenant_slug>/twilio`` (inbound texts, the URL pasted
into the number or Messaging Service) and ``POST /hooks/<tenant_slug>/twilio/status``
(status callbacks; the send names it in ``StatusCallback``).

Each request must carry a valid ``X-Twilio-Signature`` made with the tenant's auth token
over the URL Twilio requested (the tenant's public URL when set, as a proxy may change
what we see) and the posted form; anything else is refused with 403 and leaves nothing
behind. Accepted requests store their events in the inbox and answer at once: Twilio
wants an answer within 15 seconds, and journeys run in the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.orm import Session

from crm_journeys.errors import NotFound
from crm_journeys.runtime.ingest import IncomingEvent, ingest_many
from crm_journeys.runtime.tenants import tenant_by_slug
from crm_journeys.services.integration_secrets import record_use
from crm_journeys.sms import signature, webhooks
from crm_journeys.web.hooks.integrations import service_config
from crm_journeys.web.state import state

log = logging.getLogger(__name__)
sms_hooks = Blueprint("crm_journeys_sms_hooks", __name__)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

Handler = Callable[[Session, int, Any], list[IncomingEvent]]


@sms_hooks.post("/hooks/<tenant_slug>/twilio")
def inbound(tenant_slug: str):
    def handle(s: Session, tenant_id: int, form: Any) -> list[IncomingEvent]:
        return webhooks.inbound_events(s, tenant_id, form, state().runtime.clock.now())

    answer = _receive(tenant_slug, handle)
    return answer or Response(EMPTY_TWIML, 200, content_type="text/xml")


@sms_hooks.post("/hooks/<tenant_slug>/twilio/status")
def status(tenant_slug: str):
    key = request.args.get("k", "")

    def handle(s: Session, tenant_id: int, form: Any) -> list[IncomingEvent]:
        return webhooks.status_events(s, tenant_id, form, key, state().runtime.clock.now())

    return _receive(tenant_slug, handle) or Response(status=204)


def _receive(tenant_slug: str, handle: Handler) -> Any:
    """None when accepted and stored; else the refusal to answer with."""
    st = state()
    form = request.form
    with st.db.unit_of_work() as s:
        try:
            tenant = tenant_by_slug(s, tenant_slug)
        except NotFound:
            return jsonify({"error": "unknown tenant"}), 404
        config = service_config(tenant, "twilio")
        config.setdefault("public_url", (tenant.settings or {}).get("public_url")
                          or st.runtime.settings.get("public_url") or "")
        given = request.headers.get("X-Twilio-Signature")
        pairs = list(form.items(multi=True))
        if not any(signature.valid(config.get("auth_token", ""), url, pairs, given) for url in _urls(config)):
            log.warning("Twilio webhook for %s refused: bad or missing X-Twilio-Signature", tenant_slug)
            return jsonify({"error": "X-Twilio-Signature does not match this tenant's auth token"}), 403
        if config.get("account_sid") and form.get("AccountSid") not in (None, config["account_sid"]):
            return jsonify({"error": "AccountSid is not this tenant's Twilio account"}), 403
        now = st.runtime.clock.now()
        events = handle(s, tenant.id, form)
        record_use(tenant, "twilio", now)
        ingest_many(s, tenant.id, events, now)
    return None


def _urls(config: dict[str, Any]) -> list[str]:
    """The URL Twilio signed: as we received it, and as the tenant's public URL names it."""
    query = request.query_string.decode()
    urls = [request.url]
    public = str(config.get("public_url") or "").rstrip("/")
    if public:
        path = request.path[request.path.index("/hooks/"):]
        urls.append(f"{public}{path}" + (f"?{query}" if query else ""))
    return urls
