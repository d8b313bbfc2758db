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
from datetime import UTC, datetime
from functools import cache
from typing import Any

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from crm_journeys.secrets import signing_key

PURPOSES = ("open", "click", "unsubscribe")
MAX_AGE = {"open": 180 * 86400, "click": 180 * 86400, "unsubscribe": 5 * 365 * 86400}


def _serializer(purpose: str, at: int | None = None) -> URLSafeTimedSerializer:
    """``at``: the signing time to write, from the runtime's clock (the journeys' notion of
    now, virtual in tests and simulations) rather than the process's."""
    if at is None:
        return _reader(purpose)
    signer = type("ClockSigner", (TimestampSigner,), {"get_timestamp": lambda self: at})
    return URLSafeTimedSerializer(_key(purpose), salt=purpose, signer=signer)


@cache
def _reader(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_key(purpose), salt=purpose)


@cache
def _key(purpose: str) -> bytes:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return signing_key(f"mail-{purpose}")


@dataclass(frozen=True)
class TokenData:
    tenant_id: int
    public_id: str
    link: int | None = None


def make_token(purpose: str, tenant_id: int, public_id: str, link: int | None = None, *,
               now: datetime | None = None) -> str:
    payload: list[Any] = [tenant_id, public_id] if link is None else [tenant_id, public_id, link]
    return str(_serializer(purpose, int(now.timestamp()) if now else None).dumps(payload))


def read_token(purpose: str, token: str, now: datetime | None = None) -> TokenData | None:
    """What the token names, or None for anything forged, altered or older than its
    purpose allows (at ``now``, the runtime's clock)."""
    try:
        payload, signed_at = _serializer(purpose).loads(token, return_timestamp=True)
    except BadData:
        return None
    if ((now or datetime.now(UTC)) - signed_at).total_seconds() > MAX_AGE[purpose]:
        return None
    if not isinstance(payload, list) or len(payload) not in (2, 3) or not _int(payload[0]) \
            or not isinstance(payload[1], str) or (len(payload) == 3 and not _int(payload[2])):
        return None
    return TokenData(payload[0], payload[1], payload[2] if len(payload) == 3 else None)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
