"""Invite a user and create an API token, for the REST API and the admin pages alike.

The rules (roles, last admin, revocation) live in ``crm_journeys.auth``; these map a refusal
to an ``ApiError`` and return the new row's shown fields plus the one-time secret.
"""

from __future__ import annotations

from typing import Any

from crm_journeys.auth import admin
from crm_journeys.auth.accounts import create_api_token, create_user
from crm_journeys.web.errors import ApiError
from crm_journeys.web.state import state

# The fields a user and a token are shown with (the API's ``UserOut`` / ``TokenOut`` dump these).
USER_FIELDS = ("id", "email", "role", "active", "created_at", "last_login_at")
TOKEN_FIELDS = ("id", "name", "prefix", "role", "revoked", "created_at", "last_used_at")


def _attrs(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in names}


def invite(tenant_id: int, email: str, role: str, password: str | None) -> dict[str, Any]:
    """Create the user; 409 when the email is already a user."""
    temporary = None if password else admin.temporary_password()
    with state().db.unit_of_work() as s:
        if admin.email_taken(s, tenant_id, email):
            raise ApiError(409, "user_exists", "This email is already a user of the workspace.",
                           {"email": ["already a user"]})
        try:
            row = create_user(s, tenant_id, email, password or temporary or "", role, state().runtime.clock.now(),
                              temporary=temporary is not None)
        except ValueError as exc:
            raise ApiError(422, "invalid_request", str(exc), {"password": [str(exc)]}) from None
        return {**_attrs(row, USER_FIELDS), "temporary_password": temporary}


def new_token(tenant_id: int, name: str, role: str) -> dict[str, Any]:
    with state().db.unit_of_work() as s:
        plaintext = create_api_token(s, tenant_id, name, role, state().runtime.clock.now())
        row = admin.token_by_plaintext_prefix(s, tenant_id, plaintext[:10])
        return {**_attrs(row, TOKEN_FIELDS), "token": plaintext}

