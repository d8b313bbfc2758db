"""Signed, unguessable tokens for the links an email carries (open pixel, tracked links,
unsubscribe).

itsdangerous rather than hand-written HMAC: it is Flask's own signer (already installed),
compares in constant time and timestamps tokens. A token carries only the tenant, the send's
random public id (and a link's position), never a contact id; each purpose has its own key, so
an open token does not unsubscribe and a click token does not open. A token that does not
verify, whatever the reason, is simply ``None``: callers answer every failure the same
way, so a forger learns nothing about which contacts exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from itsdangerous import BadData, URLSafeTimedSerializer

from crm_journeys.secrets import signing_key

PURPOSES = ("open", "click", "unsubscribe")
MAX_AGE = {"open": 180 * 86400, "click": 180 * 86400, "unsubscribe": 5 * 365 * 86400}


@cache
def _serializer(purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return URLSafeTimedSerializer(signing_key(f"mail-{purpose}"), salt=purpose)


@dataclass(frozen=True)
class TokenData:
    tenant_id: int
    public_id: str
    link: int | None = None


def make_token(purpose: str, tenant_id: int, public_id: str, link: int | None = None) -> str:
    payload: list[Any] = [tenant_id, public_id] if link is None else [tenant_id, public_id, link]
    return str(_serializer(purpose).dumps(payload))


def read_token(purpose: str, token: str) -> TokenData | None:
    """What the token names, or None for anything forged, altered or too old."""
    try:
        payload = _serializer(purpose).loads(token, max_age=MAX_AGE[purpose])
    except BadData:
        return None
    if not isinstance(payload, list) or len(payload) not in (2, 3) or not _int(payload[0]) \
            or not isinstance(payload[1], str) or (len(payload) == 3 and not _int(payload[2])):
        return None
    return TokenData(payload[0], payload[1], payload[2] if len(payload) == 3 else None)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
