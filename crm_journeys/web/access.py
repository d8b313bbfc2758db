"""Who is calling and what they may do: session users, bearer tokens, CSRF tokens.

The browser UI signs users in with a session cookie; machines send
``Authorization: Bearer cjt_...``. Both resolve to a ``Principal`` bound to one tenant,
and every query of the web layer filters by ``principal.tenant_id``. Unsafe requests made
with a session cookie must carry the session's CSRF token (form field or header).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from flask import abort, g, request, session
from sqlalchemy import select

from crm_journeys.auth.accounts import Principal, can, token_principal_on, user_principal
from crm_journeys.storage.auth_models import User
from crm_journeys.web.errors import ApiError
from crm_journeys.web.state import state

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
TOKEN_REFUSED = "The API token is unknown or revoked."


def csrf_token() -> str:
    """The session's CSRF token, made on first use (rendered into every form)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def csrf_ok() -> bool:
    expected = session.get("csrf")
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    return bool(expected) and hmac.compare_digest(str(expected), given)


def session_principal() -> Principal | None:
    """The signed-in user, re-read from the database (a removed user is signed out, and so
    is a cookie older than the user's last logout or password change)."""
    if "principal" in g:
        return g.principal
    user_id = session.get("user_id")
    principal = None
    if user_id is not None:
        with state().db.unit_of_work() as s:
            user = s.scalar(select(User).where(User.id == user_id, User.tenant_id == session.get("tenant_id"),
                                               User.active.is_(True)))
            if user is not None and user.session_version != session.get("sv", 0):
                user = None  # signed out elsewhere, or the password changed: this cookie is void
            g.must_change_password = bool(user and user.must_change_password)
            principal = user_principal(user) if user else None
    g.principal = principal
    return principal


def api_principal() -> Principal:
    """Bearer token first, else the session (with CSRF on unsafe methods); 401 otherwise."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        with state().db.engine.begin() as conn:  # Core: no Session, no ORM object for a lookup
            principal = token_principal_on(conn, header[7:].strip(), state().runtime.clock.now())
        if principal is None:
            raise ApiError(401, "unauthorized", TOKEN_REFUSED)
        return principal
    principal = session_principal()
    if principal is None:
        raise ApiError(401, "unauthorized", "Sign in or send an API token (Authorization: Bearer ...).")
    if g.get("must_change_password"):
        raise ApiError(403, "password_change_required", "Change your temporary password first (/account/password).")
    if request.method in UNSAFE and not csrf_ok():
        raise ApiError(403, "csrf_failed", f"Send the session's CSRF token in the {CSRF_HEADER} header.")
    return principal


def require(principal: Principal, permission: str) -> None:
    if not can(principal.role, permission):
        raise ApiError(403, "forbidden", f"Your role ({principal.role}) may not {permission}.")


@dataclass(frozen=True)
class Access:
    """An access check to finish later, inside the transaction that writes (the events
    API's group commit): a bearer token still to be looked up, or a session principal
    already resolved; plus the input's error, raised only once access is granted, so the
    caller gets what any endpoint answers: 401/403 first, then 400/422.

    Holds nothing of Flask's request: ``grant`` may run in another request's thread.
    """

    permission: str
    token: str | None = None
    principal: Principal | None = None
    input_error: Exception | None = None

    def grant(self, lookup: Callable[[str], Principal | None]) -> Principal:
        """The principal (``lookup`` reads a token), or raises 401, 403 or the input's error."""
        principal = self.principal if self.token is None else lookup(self.token)
        if principal is None:
            raise ApiError(401, "unauthorized", TOKEN_REFUSED)
        require(principal, self.permission)
        if self.input_error is not None:
            raise self.input_error
        return principal


def deferred_access(permission: str) -> Access:
    """The request's ``Access``: a bearer token is kept for ``grant`` to look up; a session
    is checked now (401, or 403 without its CSRF token), as ``api_principal`` does."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return Access(permission, token=header[7:].strip())
    return Access(permission, principal=api_principal())


def ui_require(permission: str) -> Principal:
    """For UI views: the signed-in user with ``permission``, else 403 (login is checked earlier)."""
    principal = session_principal()
    if principal is None:
        abort(401)
    if not can(principal.role, permission):
        abort(403, f"Your role ({principal.role}) may not do this.")
    return principal
