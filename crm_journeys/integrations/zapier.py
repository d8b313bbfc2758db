"""Zapier: a Zap's "Webhooks by Zapier" POST action -> ``zapier_event``.

Zapier signs nothing, so we define the check: each tenant has its own secret, sent in
the ``X-Zapier-Secret`` header (or ``?secret=``), compared in constant time. The body is
the flat JSON object a Zap posts: ``email`` (required), optional ``zap`` (the name the
journey filters on) and ``id`` (Zapier's record id, for de-duplication); every other
field travels in ``data``.
"""

from __future__ import annotations

import hmac

from crm_journeys.integrations import Delivery, HookRejected, require_dict
from crm_journeys.runtime.ingest import IncomingEvent


def parse(delivery: Delivery) -> list[IncomingEvent]:
    expected = str(delivery.config.get("secret") or "")
    given = delivery.headers.get("X-Zapier-Secret") or delivery.args.get("secret") or ""
    if not expected or not hmac.compare_digest(expected.encode(), str(given).encode()):
        raise HookRejected(401, "zapier: missing or wrong secret (X-Zapier-Secret header)")
    body = require_dict(delivery.body, "zapier")
    email = str(body.get("email") or "").strip()
    if "@" not in email:
        raise HookRejected(422, "zapier: 'email' is required and must be an email address")
    zap = str(body.get("zap") or "")
    data = {k: v for k, v in body.items() if k not in ("email", "zap", "id")}
    dedup = f"zapier:{zap}:{body['id']}" if body.get("id") not in (None, "") else None
    return [IncomingEvent(type="zapier_event", key=zap, contact={"email": email},
                          properties={"zap": zap, "email": email, "data": data}, dedup_key=dedup)]
