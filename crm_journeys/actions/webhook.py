"""Call an outside webhook with the contact's data, HMAC-signed with the tenant's secret.

Journey authors choose the URL, so it is checked where it resolves: private, loopback and
link-local addresses are refused unless an admin allows them (``allow_private_webhooks``),
which keeps a journey from probing the network it runs in.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from marshmallow import fields, validate

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


_local = threading.local()


def _session() -> requests.Session:
    """One session per delivery thread: connections to a webhook host are kept alive from
    one call to the next (a new TCP and TLS handshake per call is most of a fast call),
    and no session is shared between threads."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def refuse_private(url: str, allow_private: bool) -> None:
    host = urlsplit(url).hostname or ""
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise RetriableConnectorError(f"cannot resolve {host}: {exc}") from exc
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved:
            raise FatalConnectorError(f"{host} resolves to a private address ({addr}); an admin must allow private webhooks")


class CallWebhook(Action[dict[str, Any]]):
    name, label, params_schema = "call_webhook", "Call webhook", CallWebhookParamsSchema

    @classmethod
    def host(cls, raw_params: dict[str, Any]) -> str:
        return (urlsplit(str(raw_params.get("url", ""))).hostname or "webhook").lower()

    def execute(self, ctx: ActionContext, params: dict[str, Any]) -> ActionResult:
        refuse_private(params["url"], bool(ctx.settings.get("allow_private_webhooks")))
        body = json.dumps({"contact": {"id": ctx.contact.external_id, "email": ctx.contact.email,
                                       **ctx.contact.fields},
                           "journey_id": ctx.journey_id, "idempotency_key": ctx.idempotency_key,
                           **params["payload"]}, sort_keys=True, default=str).encode()
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "Idempotency-Key": ctx.idempotency_key,
                   SIGNATURE_HEADER: sign(ctx.settings.get("webhook_secret", ""), stamp, body)}
        host = urlsplit(params["url"]).netloc
        try:
            resp = _session().post(params["url"], data=body, headers=headers, timeout=params["timeout_seconds"])
        except requests.RequestException as exc:
            host_answered(host, type(exc).__name__)
            raise RetriableConnectorError(f"webhook unreachable: {exc}") from exc
        host_answered(host, resp.status_code)
        if resp.status_code == 429 or resp.status_code >= 500:
            wait = parse_retry_after(resp.headers.get("Retry-After"), ctx.now)
            raise RetriableConnectorError(f"webhook answered {resp.status_code}", retry_after=wait)
        if resp.status_code >= 400:
            raise FatalConnectorError(f"webhook answered {resp.status_code}: {resp.text[:200]}", resp.status_code)
        return ActionResult.done(f"POST {params['url']} -> {resp.status_code}")
