"""Accounts: users with a role per tenant, API tokens, and what each role may do."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
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
                now: datetime | None = None) -> User:
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
                role=role, active=True, created_at=now or datetime.now(UTC))
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
    matches = [u for u in session.scalars(query) if check_password_hash(u.password_hash, password)]
    return matches[0] if len(matches) == 1 else None


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


def token_principal(session: Session, plaintext: str, now: datetime | None = None) -> Principal | None:
    """The principal of a presented token, or None (unknown or revoked)."""
    if not plaintext.startswith(TOKEN_PREFIX):
        return None
    digest = _digest(plaintext)
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest, ApiToken.revoked.is_(False)))
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    now = now or datetime.now(UTC)
    last = token.last_used_at
    if last is None or now - last >= LAST_USED_GRANULARITY:
        token.last_used_at = now  # at most one write a minute: a busy token must not cost a commit per call
    return Principal(tenant_id=token.tenant_id, role=token.role, name=f"token {token.name}", token_id=token.id)


def user_principal(user: User) -> Principal:
    return Principal(tenant_id=user.tenant_id, role=user.role, name=user.email, user_id=user.id)
