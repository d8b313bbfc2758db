"""Eventbrite webhooks: registrations and ticket purchases.

Eventbrite sends ``{"config": {"action": "order.placed", "webhook_id", "user_id",
"endpoint_url"}, "api_url": "https://www.eventbriteapi.com/v3/orders/123/"}`` and signs
nothing. So the payload itself is never trusted: ``api_url`` must point at Eventbrite's
API, the webhook id must be one the tenant registered (when configured), and the order or
attendee is fetched from there with the tenant's private token; only what Eventbrite
returns becomes events. ``order.placed`` -> one ``eventbrite_registered`` per attendee
and, when the order cost anything, ``eventbrite_ticket_bought`` for each ticket;
``attendee.updated`` -> ``eventbrite_registered``. The creation ping (``test``) yields
nothing.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

from crm_journeys.integrations import Delivery, HookRejected, http_fetch, require_dict
from crm_journeys.runtime.ingest import IncomingEvent

API_HOST = "www.eventbriteapi.com"
HANDLED = ("order.placed", "attendee.updated")
# The only records a delivery may make us fetch with the tenant's token: not any API path.
RECORD_PATHS = {"order.placed": re.compile(r"/v3/orders/[0-9A-Za-z_-]{1,64}/?"),
                "attendee.updated": re.compile(r"/v3/events/[0-9A-Za-z_-]{1,64}/attendees/[0-9A-Za-z_-]{1,64}/?")}
_WHAT = {"order.placed": "order (/v3/orders/<id>/)",
         "attendee.updated": "attendee (/v3/events/<id>/attendees/<id>/)"}


def parse(delivery: Delivery) -> list[IncomingEvent]:
    body = require_dict(delivery.body, "eventbrite")
    config = body.get("config") or {}
    if not isinstance(config, dict):
        raise HookRejected(400, "eventbrite: config must be a JSON object")
    action = config.get("action")
    if action == "test":
        return []
    if action not in HANDLED:
        return []  # other actions (event.updated, ...) start nothing
    url = str(body.get("api_url") or "")
    parts = urlparse(url)
    if (parts.scheme != "https" or parts.hostname != API_HOST or parts.port not in (None, 443)
            or parts.query or parts.fragment or parts.username or not RECORD_PATHS[action].fullmatch(parts.path)):
        raise HookRejected(400, f"eventbrite: api_url must be the https URL of the {_WHAT[action]} on {API_HOST}")
    allowed = delivery.config.get("webhook_ids")
    if allowed and str(config.get("webhook_id")) not in {str(w) for w in allowed}:
        raise HookRejected(403, "eventbrite: unknown webhook_id for this tenant")
    token = delivery.config.get("token")
    if not token:
        raise HookRejected(403, "eventbrite: no private token configured, cannot verify the delivery")
    fetch = delivery.fetch or http_fetch
    record = fetch(url + "?expand=event,attendees", str(token))
    if action == "order.placed":
        return _order(record)
    return [_registered(record, record.get("event") or {})]


def _contact(profile: dict[str, Any]) -> dict[str, Any]:
    email = profile.get("email")
    if not email:
        raise HookRejected(422, "eventbrite: the record has no email address")
    return {"email": email, "first_name": profile.get("first_name"), "last_name": profile.get("last_name")}


def _event_name(event: dict[str, Any]) -> str:
    name = event.get("name")
    return str(name.get("text") if isinstance(name, dict) else name or "")


def _registered(attendee: dict[str, Any], event: dict[str, Any]) -> IncomingEvent:
    event_id = str(attendee.get("event_id") or event.get("id") or "")
    return IncomingEvent(
        type="eventbrite_registered", key=event_id, contact=_contact(attendee.get("profile") or {}),
        properties={"event_id": event_id, "event_name": _event_name(event),
                    "attendee_id": str(attendee.get("id") or "")},
        dedup_key=f"eventbrite:registered:{attendee.get('id')}")


def _order(order: dict[str, Any]) -> list[IncomingEvent]:
    event = order.get("event") or {}
    event_id = str(order.get("event_id") or event.get("id") or "")
    attendees = order.get("attendees") or [
        {"id": f"order-{order.get('id')}", "event_id": event_id, "profile": order}]
    out = [_registered(a, event) for a in attendees]
    gross = ((order.get("costs") or {}).get("gross") or {}).get("value") or 0
    if gross:
        for a in attendees:
            out.append(IncomingEvent(
                type="eventbrite_ticket_bought", key=event_id, contact=_contact(a.get("profile") or order),
                properties={"event_id": event_id, "event_name": _event_name(event),
                            "ticket_class": a.get("ticket_class_name") or "", "order_id": str(order.get("id"))},
                dedup_key=f"eventbrite:ticket:{order.get('id')}:{a.get('id')}"))
    return out
