"""Managing a tenant's users and API tokens: list, change a role, remove, revoke.

Kept apart from ``accounts`` (which creates and checks credentials) because these are the
admin's operations; the web layer and the CLI both call them, so the rules below hold
whichever door is used. Every function takes the caller's ``tenant_id`` and touches
nothing outside it: an id of another tenant is reported as unknown.
"""

from __future__ import annotations

import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_journeys.errors import NotFound
from crm_journeys.storage.auth_models import ROLES, ApiToken, User


class LastAdmin(ValueError):
    """Refused because the tenant would be left without an active admin (nobody could fix it)."""


def list_users(s: Session, tenant_id: int) -> list[User]:
    return list(s.scalars(select(User).where(User.tenant_id == tenant_id).order_by(User.email)))


def user(s: Session, tenant_id: int, user_id: int) -> User:
    row = s.scalar(select(User).where(User.tenant_id == tenant_id, User.id == user_id))
    if row is None:
        raise NotFound(f"no user {user_id}")
    return row


def _other_admins(s: Session, tenant_id: int, user_id: int) -> int:
    return int(s.scalar(select(func.count()).select_from(User).where(
        User.tenant_id == tenant_id, User.role == "admin", User.active.is_(True), User.id != user_id)) or 0)


def set_role(s: Session, tenant_id: int, user_id: int, role: str) -> User:
    """Give a user another role; the last admin cannot step down.

    Raises:
        ValueError: unknown role; LastAdmin: it would leave no admin; NotFound.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    row = user(s, tenant_id, user_id)
    if row.role == "admin" and role != "admin" and not _other_admins(s, tenant_id, user_id):
        raise LastAdmin("the workspace needs at least one admin; make someone else admin first")
    row.role = role
    return row


def remove_user(s: Session, tenant_id: int, user_id: int) -> None:
    """Delete a user (their session ends on the next request, which re-reads the user).

    Raises:
        LastAdmin: it is the last admin; NotFound.
    """
    row = user(s, tenant_id, user_id)
    if row.role == "admin" and not _other_admins(s, tenant_id, user_id):
        raise LastAdmin("the workspace needs at least one admin; the last one cannot be removed")
    s.delete(row)
    s.flush()


def temporary_password() -> str:
    """A password for an invited user, shown once to the admin who hands it over."""
    return secrets.token_urlsafe(12)


def email_taken(s: Session, tenant_id: int, email: str) -> bool:
    return s.scalar(select(User.id).where(User.tenant_id == tenant_id,
                                          User.email == email.strip().lower())) is not None


def list_tokens(s: Session, tenant_id: int) -> list[ApiToken]:
    return list(s.scalars(select(ApiToken).where(ApiToken.tenant_id == tenant_id)
                          .order_by(ApiToken.revoked, ApiToken.id.desc())))


def revoke_token(s: Session, tenant_id: int, token_id: int) -> ApiToken:
    """Revoke for good (a revoked token is never accepted again; create a new one instead)."""
    row = s.scalar(select(ApiToken).where(ApiToken.tenant_id == tenant_id, ApiToken.id == token_id))
    if row is None:
        raise NotFound(f"no token {token_id}")
    row.revoked = True
    return row


def token_by_plaintext_prefix(s: Session, tenant_id: int, prefix: str) -> ApiToken | None:
    """The newest token with this displayed prefix (to report the row just created)."""
    return s.scalar(select(ApiToken).where(ApiToken.tenant_id == tenant_id, ApiToken.prefix == prefix)
                    .order_by(ApiToken.id.desc()))
