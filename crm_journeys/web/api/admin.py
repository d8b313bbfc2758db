"""Admin endpoints of the REST API: the tenant's users and API tokens (admin role only).

The rules (roles, last admin, revocation) live in ``crm_journeys.auth``; this module maps
them to HTTP: an id of another tenant is a 404, a refused change a 409.
"""

from __future__ import annotations

from typing import Any

from crm_journeys.auth import admin
from crm_journeys.auth.accounts import Principal
from crm_journeys.web.api.blueprint import api
from crm_journeys.web.api.schemas_admin import (
    TokenCreatedOut,
    TokenCreateIn,
    TokenOut,
    UserCreatedOut,
    UserCreateIn,
    UserOut,
    UserUpdateIn,
)
from crm_journeys.web.common.team import invite, new_token
from crm_journeys.web.endpoint import endpoint
from crm_journeys.web.errors import ApiError
from crm_journeys.web.state import state

TAG = "admin"


@endpoint(api, "/users", "GET", summary="The workspace's users and their roles", tag=TAG, permission="admin",
          out=UserOut, many=True)
def list_users(principal: Principal) -> Any:
    with state().db.unit_of_work() as s:
        return admin.list_users(s, principal.tenant_id)


@endpoint(api, "/users", "POST", summary="Add (invite) a user with a role", tag=TAG, permission="admin",
          body=UserCreateIn, out=UserCreatedOut, status=201,
          description="Without `password` a temporary one is made and returned once in `temporary_password`.")
def add_user(principal: Principal, body: dict[str, Any]) -> Any:
    return invite(principal.tenant_id, body["email"], body["role"], body.get("password"))


@endpoint(api, "/users/<int:user_id>", "PATCH", summary="Change a user's role", tag=TAG, permission="admin",
          body=UserUpdateIn, out=UserOut, description="The last admin cannot step down (409 last_admin).")
def update_user(principal: Principal, user_id: int, body: dict[str, Any]) -> Any:
    with state().db.unit_of_work() as s:
        try:
            return admin.set_role(s, principal.tenant_id, user_id, body["role"])
        except admin.LastAdmin as exc:
            raise ApiError(409, "last_admin", str(exc)) from None


@endpoint(api, "/users/<int:user_id>", "DELETE", summary="Remove a user from the workspace", tag=TAG,
          permission="admin", raw_out={"type": "object", "properties": {"deleted": {"type": "integer"}}})
def delete_user(principal: Principal, user_id: int) -> Any:
    with state().db.unit_of_work() as s:
        try:
            admin.remove_user(s, principal.tenant_id, user_id)
        except admin.LastAdmin as exc:
            raise ApiError(409, "last_admin", str(exc)) from None
    return {"deleted": user_id}


@endpoint(api, "/tokens", "GET", summary="The workspace's API tokens (never their secrets)", tag=TAG,
          permission="admin", out=TokenOut, many=True)
def list_tokens(principal: Principal) -> Any:
    with state().db.unit_of_work() as s:
        return admin.list_tokens(s, principal.tenant_id)


@endpoint(api, "/tokens", "POST", summary="Create an API token; the secret is returned only here", tag=TAG,
          permission="admin", body=TokenCreateIn, out=TokenCreatedOut, status=201)
def add_token(principal: Principal, body: dict[str, Any]) -> Any:
    return new_token(principal.tenant_id, body["name"], body["role"])


@endpoint(api, "/tokens/<int:token_id>", "DELETE", summary="Revoke an API token", tag=TAG, permission="admin",
          out=TokenOut)
def revoke_token(principal: Principal, token_id: int) -> Any:
    with state().db.unit_of_work() as s:
        return admin.revoke_token(s, principal.tenant_id, token_id)
