"""``POST /hooks/email/sendgrid/<tenant_slug>``: SendGrid's signed Event Webhook.

Verified before anything is read (``runtime.esp_events``); a request that does not
verify gets 401 and leaves nothing behind. Events for sends we do not know are ignored.
"""

from __future__ import annotations

import json

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from crm_journeys.errors import NotFound, WebhookRejected
from crm_journeys.runtime import esp_events
from crm_journeys.runtime.tenants import tenant_by_slug
from crm_journeys.web.state import state

esp_hooks = Blueprint("crm_journeys_esp_hooks", __name__)


@esp_hooks.post("/hooks/email/sendgrid/<slug>")
def sendgrid(slug: str) -> ResponseReturnValue:
    st = state()
    now = st.runtime.clock.now()
    body = request.get_data()
    with st.db.unit_of_work() as s:
        try:
            tenant = tenant_by_slug(s, slug)
        except NotFound:
            return jsonify(error="refused", reason="signature does not verify"), 401  # same as a bad signature
        try:
            esp_events.verify(str((tenant.settings or {}).get("sendgrid_public_key") or ""),
                              dict(request.headers), body, now)
        except WebhookRejected as exc:
            return jsonify(error="refused", reason=str(exc)), 401
        try:
            events = json.loads(body)
        except ValueError:
            return jsonify(error="invalid", reason="body: not JSON"), 400
        if not isinstance(events, list):
            return jsonify(error="invalid", reason="body: expected a JSON array of events"), 400
        used = esp_events.store(s, tenant.id, events, now)
    return jsonify(received=len(events), matched=used), 200
