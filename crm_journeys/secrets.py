"""Credentials encrypted at rest (Fernet) with a key from the environment; never logged.

``CRM_JOURNEYS_SECRET_KEY`` holds a Fernet key. Without it a key is made once and kept in
the instance folder with owner-only permissions, so the embedded default works out of
the box and a production install can supply its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from crm_journeys.errors import CrmJourneysError

ENV_KEY = "CRM_JOURNEYS_SECRET_KEY"


@cache
def _fernet() -> Fernet:
    return Fernet(_key())


def signing_key(purpose: str) -> bytes:
    """A key for signing links (unsubscribe, tracking), derived from the same secret so an
    install has one secret to keep; one key per purpose, so a token made for one use is
    refused by every other."""
    return hmac.new(_key(), f"crm-journeys:{purpose}".encode(), hashlib.sha256).digest()


@cache
def _key() -> bytes:
    key = os.environ.get(ENV_KEY)
    if not key:
        path = Path(os.environ.get("CRM_JOURNEYS_INSTANCE", "instance")) / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(Fernet.generate_key())
            path.chmod(0o600)
        key = path.read_text().strip()
    return key.encode()


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
