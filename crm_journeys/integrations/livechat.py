"""LiveChat webhooks: a chat closed -> ``chat_closed``.

LiveChat (Text platform webhooks v3.x) posts ``{"webhook_id", "secret_key", "action",
"organization_id", "payload", "additional_data"}``; the ``secret_key`` is the one chosen
when the webhook was registered and is compared (constant time) with the tenant's.
``chat_deactivated`` carries ``payload.chat_id``/``thread_id``/``user_id`` only, so the
customer is found in ``additional_data.chat`` or ``payload.chat`` users when present,
else the chat is fetched from the Agent Chat API (``get_chat``) with the tenant's token.
"""

from __future__ import annotations

import hmac
from typing import Any

from crm_journeys.integrations import (
    Delivery,
    HookRejected,
    http_fetch,
    require_dict,
    require_types,
)
from crm_journeys.runtime.ingest import IncomingEvent

CLOSED = ("chat_deactivated", "thread_closed")
GET_CHAT = "https://api.livechatinc.com/v3.5/agent/action/get_chat?chat_id={chat}&thread_id={thread}"


def parse(delivery: Delivery) -> list[IncomingEvent]:
    body = require_dict(delivery.body, "livechat")
    require_types(body, "livechat", {"secret_key": str, "payload": dict, "additional_data": dict})
    expected = str(delivery.config.get("secret_key") or "")
    given = str(body.get("secret_key") or "")
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise HookRejected(401, "livechat: secret_key does not match this tenant's")
    if body.get("action") not in CLOSED:
        return []
    payload = body.get("payload") or {}
    require_types(payload, "livechat", {"chat": dict}, "payload.")
    require_types(body.get("additional_data") or {}, "livechat", {"chat": dict}, "additional_data.")
    chat_id = str(payload.get("chat_id") or (payload.get("chat") or {}).get("id") or "")
    if not chat_id:
        raise HookRejected(422, "livechat: payload.chat_id is missing")
    chat = (body.get("additional_data") or {}).get("chat") or payload.get("chat")
    if not chat:
        token = delivery.config.get("token")
        if not token:
            raise HookRejected(422, "livechat: no customer in the payload and no token to fetch the chat")
        chat = (delivery.fetch or http_fetch)(
            GET_CHAT.format(chat=chat_id, thread=payload.get("thread_id") or ""), str(token))
    if not isinstance(chat, dict) or not isinstance(chat.get("users") or [], list) \
            or not all(isinstance(u, dict) for u in chat.get("users") or []):
        raise HookRejected(400, "livechat: chat.users must be a list of objects")
    customer = _customer(chat)
    agent = next((u.get("name") for u in chat.get("users") or [] if u.get("type") == "agent"), "")
    rating = ((chat.get("properties") or {}).get("rating") or {}).get("score", {})
    props: dict[str, Any] = {"chat_id": chat_id, "agent": agent or ""}
    if isinstance(rating, dict) and rating.get("value") in (0, 1):
        props["rating"] = "good" if rating["value"] == 1 else "bad"
    return [IncomingEvent(type="chat_closed", contact={"email": customer["email"], "first_name": customer.get("name")},
                          properties=props, dedup_key=f"livechat:{chat_id}:{payload.get('thread_id') or ''}")]


def _customer(chat: dict[str, Any]) -> dict[str, Any]:
    for user in chat.get("users") or []:
        if user.get("type") == "customer" and user.get("email"):
            return user
    raise HookRejected(422, "livechat: the chat's customer has no email address")
