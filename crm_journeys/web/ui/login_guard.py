"""What the sign-in page needs beyond checking a password: a safe ``next``, throttling and
the session version that lets logout and password changes void every copy of a cookie.

Kept apart from ``web.ui.pages`` (the pages) so the rules can be read, and tested, in one place.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from flask import request, session
from sqlalchemy.orm import Session

from crm_journeys.auth import throttle
from crm_journeys.storage.auth_models import User

SESSION_VERSION = "sv"


def safe_next(target: str) -> str | None:
    """``target`` when it is a path on this site, else None.

    Only a relative path is accepted: it starts with one ``/``, holds no backslash (some
    browsers read ``/\\host`` as ``//host``) and no control character (browsers drop tabs and
    newlines, so ``/\\t/evil.example`` would become ``//evil.example``; CR/LF would split the
    Location header).
    """
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


def client_address() -> str:
    """The caller's address as the WSGI server saw it (behind a proxy, configure
    ProxyFix so this is the client, not the proxy)."""
    return request.remote_addr or "unknown"


def throttled_until(s: Session, email: str, now: datetime) -> datetime | None:
    """When this account or client may try again, if either spent its failures."""
    times = [throttle.blocked_until(s, throttle.ACCOUNT, email, now),
             throttle.blocked_until(s, throttle.CLIENT, client_address(), now)]
    return max((t for t in times if t), default=None)


def count_failure(s: Session, email: str, now: datetime) -> None:
    throttle.record_failure(s, throttle.ACCOUNT, email, now)
    throttle.record_failure(s, throttle.CLIENT, client_address(), now)


def sign_in(s: Session, user: User, now: datetime) -> None:
    """A fresh session (no fixation) bound to the user's current session version."""
    throttle.clear(s, throttle.ACCOUNT, user.email)
    user.last_login_at = now
    session.clear()
    session.update(user_id=user.id, tenant_id=user.tenant_id, **{SESSION_VERSION: user.session_version})
    session.permanent = True


def void_sessions(user: User) -> None:
    """Every session of the user stops working, on every process (logout, password change)."""
    user.session_version = (user.session_version or 0) + 1
