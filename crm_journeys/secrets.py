"""Secrets encrypted at rest (Fernet) with keys from the environment; never logged.

``CRM_JOURNEYS_SECRET_KEY`` holds one Fernet key, or several separated by commas: the
first encrypts, every one decrypts (``MultiFernet``), so a key is rotated by putting the new
one first, running ``crm-journeys rotate-secrets`` and then dropping the old one.

Without the variable a key is made once and kept in the instance folder (``crm_journeys.config``) with owner-only
permissions, so the embedded demo works out of the box; that is logged as a warning naming
the file on every start, because whoever can read that folder can decrypt every tenant's
CRM credentials. A production install must set the variable (docs/security.md).

``SealedString`` is the column type for secrets the app must read back (the tenant's
webhook signing secret, journey trigger secrets): stored as ``sealed:<fernet token>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import String
from sqlalchemy.types import TypeDecorator

from crm_journeys.errors import CrmJourneysError

ENV_KEY = "CRM_JOURNEYS_SECRET_KEY"


SEALED = "sealed:"
log = logging.getLogger(__name__)


@cache
def _keys() -> tuple[str, ...]:
    """The Fernet keys, newest first (from the environment, else the instance's key file)."""
    keys = [k.strip() for k in os.environ.get(ENV_KEY, "").split(",") if k.strip()]
    return tuple(keys) if keys else (_key_file(),)


def forget_keys() -> None:
    """Read the keys again on next use (after the environment changed: tests, rotation)."""
    _keys.cache_clear()
    _fernet.cache_clear()


def signing_key(purpose: str) -> bytes:
    """A key for signing links (unsubscribe, tracking), derived from the newest secret key so
    an install has one secret to keep; one key per purpose, so a token made for one use is
    refused by every other. Rotating the key voids links already sent."""
    return hmac.new(_keys()[0].encode(), f"crm-journeys:{purpose}".encode(),
                    hashlib.sha256).digest()


@cache
def _fernet() -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in _keys()])
    except ValueError as exc:
        raise CrmJourneysError(f"{ENV_KEY} must hold Fernet keys separated by commas: {exc}") from None


def _key_file() -> str:
    from crm_journeys.config import kept_secret_key

    path, key = kept_secret_key()
    log.warning("%s is not set: secrets are encrypted with the key file %s, readable by anyone who "
                "can read that folder. Set %s in production (docs/security.md).", ENV_KEY, path, ENV_KEY)
    return key


def seal(plaintext: str) -> str:
    """``sealed:<token>`` for a secret the app must read back; empty stays empty."""
    return SEALED + _fernet().encrypt(plaintext.encode()).decode() if plaintext else ""


def unseal(stored: str) -> str:
    """The plaintext of a sealed value (a value stored before sealing is returned as is)."""
    if not stored or not stored.startswith(SEALED):
        return stored
    try:
        return _fernet().decrypt(stored[len(SEALED):].encode()).decode()
    except InvalidToken as exc:
        raise CrmJourneysError("a stored secret cannot be decrypted with this key") from exc


def rotate(stored: str) -> str:
    """Re-encrypt a sealed value or an ``encrypt_json`` token with the first key."""
    if not stored:
        return stored
    if stored.startswith(SEALED):
        return SEALED + _fernet().rotate(stored[len(SEALED):].encode()).decode()
    return _fernet().rotate(stored.encode()).decode()


class SealedString(TypeDecorator[str]):
    """A text column whose values are sealed on the way in and unsealed on the way out."""

    impl = String
    cache_ok = True

    def __init__(self, length: int = 200, *, sqlite_length: int | None = None):
        """``sqlite_length``: the length an older SQLite table declared. SQLite never enforces
        it, and widening it there would rebuild the table, so the declaration stays."""
        super().__init__(length)
        self.sqlite_length = sqlite_length

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite" and self.sqlite_length:
            return dialect.type_descriptor(String(self.sqlite_length))
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None or value.startswith(SEALED):
            return value
        return seal(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else unseal(value)


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
