"""Who may do what in a tenant: users with one role each, and API tokens (hashed at rest).

Same declarative base and ``cj_`` prefix as ``storage.models``; every row carries
``tenant_id`` so an access check is always one equality on the caller's tenant.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from crm_journeys.storage.models import Base, IdType

ROLES = ("admin", "editor", "viewer")


class User(Base):
    """A person who signs in to one tenant with one role (admin, editor or viewer)."""

    __tablename__ = "cj_user"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("cj_tenant.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(20), default="viewer")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    # Bumped on logout and password change: sessions carrying an older number are void.
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=false())


class ApiToken(Base):
    """A machine credential of one tenant; only the SHA-256 of the secret is kept."""

    __tablename__ = "cj_api_token"
    __table_args__ = (UniqueConstraint("token_hash"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("cj_tenant.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(16))  # shown in lists to tell tokens apart
    token_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(20), default="editor")
    revoked: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class LoginThrottle(Base):
    """Failed sign-ins counted per key (``account:<email>``, ``client:<address>``) in a
    fixed window: kept in the database so every web process sees the same count."""

    __tablename__ = "cj_login_throttle"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    window_start: Mapped[datetime]
