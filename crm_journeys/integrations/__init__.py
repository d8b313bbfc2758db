"""Inbound integration adapters: other services' webhook payloads -> canonical events.

Each adapter parses the service's real payload shape, verifies it the way that service
allows (Eventbrite: no signature, so the payload's ``api_url`` on Eventbrite's own API is
fetched with the tenant's token and only what it returns counts; LiveChat: the secret key
it puts in every payload; Zapier: a per-tenant secret we define), and returns
``IncomingEvent``s for ``runtime.ingest``. ``web.hooks.integrations`` mounts them at
``POST /hooks/<tenant>/<service>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crm_journeys.errors import CrmJourneysError
from crm_journeys.runtime.ingest import IncomingEvent

Fetch = Callable[[str, str], dict[str, Any]]  # (url, bearer token) -> JSON


class HookRejected(CrmJourneysError):
    """The delivery is refused: ``status`` is the HTTP answer, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Delivery:
    """One inbound webhook call as the adapters see it."""

    body: Any
    headers: dict[str, str]
    args: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the tenant's settings for this service
    fetch: Fetch | None = None


def http_fetch(url: str, token: str) -> dict[str, Any]:
    """GET a JSON record through the outbound guard (public addresses only, no redirects)."""
    import json

    from crm_journeys import outbound
    from crm_journeys.errors import ConnectorError

    try:
        resp = outbound.request("GET", url, headers={"Authorization": f"Bearer {token}",
                                                     "Accept": "application/json"}, timeout=10)
    except ConnectorError as exc:
        raise HookRejected(502, f"could not fetch the record: {exc}") from exc
    if resp.status >= 300:
        raise HookRejected(502, f"could not fetch the record: HTTP {resp.status}")
    try:
        record = json.loads(resp.body)
    except ValueError as exc:
        raise HookRejected(502, "could not fetch the record: the answer is not JSON") from exc
    if not isinstance(record, dict):
        raise HookRejected(502, "could not fetch the record: the answer is not a JSON object")
    return record


def adapters() -> dict[str, Callable[[Delivery], list[IncomingEvent]]]:
    from crm_journeys.integrations import custom, eventbrite, livechat, zapier

    return {"eventbrite": eventbrite.parse, "livechat": livechat.parse, "zapier": zapier.parse,
            "custom": custom.parse}


def require_dict(body: Any, service: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise HookRejected(400, f"{service}: the body must be a JSON object")
    return body


JSON_TYPES: dict[type, str] = {dict: "a JSON object", list: "a JSON array", str: "a string"}


def require_types(body: dict[str, Any], service: str, shape: dict[str, type], prefix: str = "") -> None:
    """Each named member, when present and not null, has the JSON type ``shape`` says.

    The adapters read nested members with ``.get``; a string where an object belongs
    would be a 500, so the shape is checked first and refused with a 400 naming the field.
    """
    for name, kind in shape.items():
        value = body.get(name)
        if value is not None and not isinstance(value, kind):
            raise HookRejected(400, f"{service}: {prefix}{name} must be {JSON_TYPES[kind]}")
