"""Call an outside webhook with the contact's data, HMAC-signed with the tenant's secret.

Journey authors choose the URL, so it goes through ``crm_journeys.outbound``: resolved once,
connected to the checked address, never redirected, and refused unless public (an admin may
allow private targets with ``allow_private_webhooks``), which keeps a journey from probing
the network it runs in. Publish runs the same check (``runtime.publish_checks``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlsplit

from marshmallow import fields, validate

from crm_journeys import outbound
from crm_journeys.actions.base import Action, ActionContext, ActionResult, ParamsSchema
from crm_journeys.connectors.http import parse_retry_after
from crm_journeys.errors import FatalConnectorError, RetriableConnectorError
from crm_journeys.metrics import host_answered

SIGNATURE_HEADER = "X-CRM-Journeys-Signature"


class CallWebhookParamsSchema(ParamsSchema):
    url = fields.Url(required=True, schemes={"http", "https"}, require_tld=False, metadata={"label": "URL"})
    payload = fields.Dict(load_default=dict, metadata={"label": "Extra JSON fields"})
    timeout_seconds = fields.Float(load_default=10.0, validate=validate.Range(1, 30))


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``t=<unix>,v1=<hex hmac-sha256 of "t.body">``: verifiable by the receiver, replay-bounded."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class CallWebhook(Action[dict[str, Any]]):
    name, label, params_schema = "call_webhook", "Call webhook", CallWebhookParamsSchema

    @classmethod
    def host(cls, raw_params: dict[str, Any]) -> str:
        return (urlsplit(str(raw_params.get("url", ""))).hostname or "webhook").lower()

    def execute(self, ctx: ActionContext, params: dict[str, Any]) -> ActionResult:
        body = json.dumps({"contact": {"id": ctx.contact.external_id, "email": ctx.contact.email,
                                       **ctx.contact.fields},
                           "journey_id": ctx.journey_id, "idempotency_key": ctx.idempotency_key,
                           **params["payload"]}, sort_keys=True, default=str).encode()
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "Idempotency-Key": ctx.idempotency_key,
                   SIGNATURE_HEADER: sign(ctx.settings.get("webhook_secret", ""), stamp, body)}
        resp = outbound.request("POST", params["url"], body=body, headers=headers,
                                timeout=params["timeout_seconds"],
                                allow_private=bool(ctx.settings.get("allow_private_webhooks")),
                                pools=_pools(ctx))
        host_answered(urlsplit(params["url"]).netloc, resp.status)
        if resp.status == 429 or resp.status >= 500:
            wait = parse_retry_after(resp.headers.get("Retry-After"), ctx.now)
            raise RetriableConnectorError(f"webhook answered {resp.status}", retry_after=wait)
        if 300 <= resp.status < 400:
            raise FatalConnectorError(f"webhook answered a redirect ({resp.status}); redirects are not followed",
                                      resp.status)
        if resp.status >= 400:
            raise FatalConnectorError(f"webhook answered {resp.status}: {resp.text[:200]}", resp.status)
        return ActionResult.done(f"POST {params['url']} -> {resp.status}")


def _pools(ctx: ActionContext) -> outbound.Pools:
    """The delivery pass's keep-alive pools (made once per pass, not once per call)."""
    pools = ctx.pass_cache.get("http")
    if pools is None:
        pools = ctx.pass_cache.setdefault("http", outbound.Pools())
    return pools
