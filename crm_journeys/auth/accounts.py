"""Accounts: users with a role per tenant, API tokens, and what each role may do."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from crm_journeys.storage.auth_models import ROLES, ApiToken, User

TOKEN_PREFIX = "cjt_"

# What each role may do; a higher role includes the lower ones.
PERMISSIONS = {
    "viewer": {"read"},
    "editor": {"read", "edit", "publish", "test", "events"},
    "admin": {"read", "edit", "publish", "test", "events", "admin"},
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a signed-in user or an API token, always bound to one tenant."""

    tenant_id: int
    role: str
    name: str
    user_id: int | None = None
    token_id: int | None = None


def can(role: str, permission: str) -> bool:
    return permission in PERMISSIONS.get(role, set())


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")


def create_user(session: Session, tenant_id: int, email: str, password: str, role: str,
                now: datetime | None = None, *, temporary: bool = False) -> User:
    """Add a user to a tenant with a hashed password.

    Raises:
        ValueError: unknown role, empty email, or a password under 8 characters.
    """
    _check_role(role)
    email = email.strip().lower()
    if "@" not in email:
        raise ValueError("a user needs an email address")
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    user = User(tenant_id=tenant_id, email=email, password_hash=generate_password_hash(password),
                role=role, active=True, created_at=now or datetime.now(UTC), must_change_password=temporary)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, email: str, password: str,
                 tenant_id: int | None = None) -> User | None:
    """The active user with this email and password (in ``tenant_id`` when given), else None.

    An email known in several tenants must be told which one; ambiguity fails closed.
    """
    query = select(User).where(User.email == email.strip().lower(), User.active.is_(True))
    if tenant_id is not None:
        query = query.where(User.tenant_id == tenant_id)
    candidates = list(session.scalars(query))
    if not candidates:  # cost the same as a wrong password: timing must not tell who has an account
        check_password_hash(_dummy_hash(), password)
        return None
    matches = [u for u in candidates if check_password_hash(u.password_hash, password)]
    return matches[0] if len(matches) == 1 else None


@cache
def _dummy_hash() -> str:
    """A hash made with the same method and cost as real ones, to check unknown users against."""
    return generate_password_hash(secrets.token_urlsafe(16))


def set_password(user: User, password: str, *, temporary: bool = False) -> None:
    """Replace the user's password; every session of the user ends (a new version).

    Raises:
        ValueError: a password under 8 or over 200 characters.
    """
    if not 8 <= len(password) <= 200:
        raise ValueError("a password needs 8 to 200 characters")
    user.password_hash = generate_password_hash(password)
    user.must_change_password = temporary
    user.session_version = (user.session_version or 0) + 1


def _digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_api_token(session: Session, tenant_id: int, name: str, role: str = "editor",
                     now: datetime | None = None) -> str:
    """Create a token for machines (events API, CRM hooks); returns the only plaintext copy."""
    _check_role(role)
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(tenant_id=tenant_id, name=name, prefix=plaintext[:10], token_hash=_digest(plaintext),
                         role=role, revoked=False, created_at=now or datetime.now(UTC)))
    session.flush()
    return plaintext


LAST_USED_GRANULARITY = timedelta(minutes=1)

# Core statements built once: a token is checked on every API call, and an ORM query (a
# Session, the identity map, a statement and its cache key per call) cost more than the
# lookup itself. Reusing the statement objects lets SQLAlchemy reuse their compiled form.
_TOKENS = cast(Table, ApiToken.__table__)
_LOOKUP = select(_TOKENS.c.id, _TOKENS.c.tenant_id, _TOKENS.c.role, _TOKENS.c.name, _TOKENS.c.token_hash,
                 _TOKENS.c.last_used_at).where(_TOKENS.c.token_hash == bindparam("digest"),
                                               _TOKENS.c.revoked.is_(False))
_TOUCH = update(_TOKENS).where(_TOKENS.c.id == bindparam("token_id")).values(last_used_at=bindparam("used_at"))


def token_principal(session: Session, plaintext: str, now: datetime | None = None) -> Principal | None:
    """The principal of a presented token, or None (unknown or revoked)."""
    return token_principal_on(session.connection(), plaintext, now)


def token_principal_on(conn: Connection, plaintext: str, now: datetime | None = None) -> Principal | None:
    """``token_principal`` on a Core connection, inside the caller's transaction (the events
    API checks the token and stores the event in one transaction).

    ``last_used_at`` is written at most once a minute: a busy token must not cost a write per call.
    """
    if not plaintext.startswith(TOKEN_PREFIX):
        return None
    digest = _digest(plaintext)
    token = conn.execute(_LOOKUP, {"digest": digest}).first()
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    now = now or datetime.now(UTC)
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_GRANULARITY:
        conn.execute(_TOUCH, {"token_id": token.id, "used_at": now})
    return Principal(tenant_id=token.tenant_id, role=token.role, name=f"token {token.name}", token_id=token.id)


def user_principal(user: User) -> Principal:
    return Principal(tenant_id=user.tenant_id, role=user.role, name=user.email, user_id=user.id)
