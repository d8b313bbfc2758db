"""Credentials encrypted at rest (Fernet) with a key from the environment; never logged.

``CRM_JOURNEYS_SECRET_KEY`` holds a Fernet key. Without it a key is made once and kept in
the instance folder (``crm_journeys.config``) with owner-only permissions, so the embedded default works out of
the box and a production install can supply its own.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from crm_journeys.errors import CrmJourneysError

ENV_KEY = "CRM_JOURNEYS_SECRET_KEY"


@cache
def _fernet() -> Fernet:
    from crm_journeys.config import secret_key

    return Fernet(secret_key())


def encrypt_json(value: dict[str, Any]) -> str:
    if not value:
        return ""
    return _fernet().encrypt(json.dumps(value).encode()).decode()


def decrypt_json(token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        return json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise CrmJourneysError("stored credentials cannot be decrypted with this key") from exc
