"""Admin pages of the UI: the workspace's users (invite, change role, remove) and API
tokens (create, list, revoke). Admin role only; CSRF is checked by the UI's guard.

A new token's secret (and an invited user's temporary password) is rendered into the
response of the POST itself and never stored or flashed: flashes live in the session
cookie, which is signed but readable.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from crm_journeys.auth import admin
from crm_journeys.storage.auth_models import ROLES
from crm_journeys.web.access import ui_require
from crm_journeys.web.common.team import invite, new_token
from crm_journeys.web.errors import ApiError
from crm_journeys.web.state import state
from crm_journeys.web.ui.pages import ui


def _users_page(**extra: Any) -> Any:
    p = ui_require("admin")
    with state().db.unit_of_work() as s:
        users = admin.list_users(s, p.tenant_id)
        s.expunge_all()
    return render_template("crm_journeys/admin_users.html", users=users, roles=ROLES, me=p, **extra)


@ui.get("/admin/users")
def admin_users() -> Any:
    return _users_page()


@ui.post("/admin/users")
def admin_invite() -> Any:
    p = ui_require("admin")
    form = request.form
    email, role = form.get("email", "").strip(), form.get("role", "")
    errors: dict[str, list[str]] = {}
    if "@" not in email:
        errors["email"] = ["Enter an email address."]
    if role not in ROLES:
        errors["role"] = ["Choose a role."]
    if not errors:
        try:
            created = invite(p.tenant_id, email, role, form.get("password") or None)
        except ApiError as exc:
            errors = {k: [m.capitalize() for m in v] for k, v in exc.errors.items()} or {"email": [exc.message]}
        else:
            return _users_page(created=created), 201
    return _users_page(form_errors=errors, form=form), 422


@ui.post("/admin/users/<int:user_id>/role")
def admin_set_role(user_id: int) -> Any:
    p = ui_require("admin")
    with state().db.unit_of_work() as s:
        try:
            row = admin.set_role(s, p.tenant_id, user_id, request.form.get("role", ""))
            flash(f"{row.email} is now {row.role}.")
        except (admin.LastAdmin, ValueError) as exc:
            flash(str(exc).capitalize() + ".", "error")
    return redirect(url_for("crm_journeys_ui.admin_users"))


@ui.post("/admin/users/<int:user_id>/delete")
def admin_remove_user(user_id: int) -> Any:
    p = ui_require("admin")
    with state().db.unit_of_work() as s:
        try:
            email = admin.user(s, p.tenant_id, user_id).email
            admin.remove_user(s, p.tenant_id, user_id)
            flash(f"{email} was removed.")
        except admin.LastAdmin as exc:
            flash(str(exc).capitalize() + ".", "error")
    return redirect(url_for("crm_journeys_ui.admin_users"))


def _tokens_page(**extra: Any) -> Any:
    p = ui_require("admin")
    with state().db.unit_of_work() as s:
        tokens = admin.list_tokens(s, p.tenant_id)
        s.expunge_all()
    return render_template("crm_journeys/admin_tokens.html", tokens=tokens, roles=ROLES, **extra)


@ui.get("/admin/tokens")
def admin_tokens() -> Any:
    return _tokens_page()


@ui.post("/admin/tokens")
def admin_create_token() -> Any:
    p = ui_require("admin")
    name, role = request.form.get("name", "").strip(), request.form.get("role", "editor")
    if not name or len(name) > 120 or role not in ROLES:
        errors = {"name": ["Give the token a name (what uses it)."]} if not name or len(name) > 120 else {}
        errors |= {"role": ["Choose a role."]} if role not in ROLES else {}
        return _tokens_page(form_errors=errors), 422
    return _tokens_page(created=new_token(p.tenant_id, name, role)), 201


@ui.post("/admin/tokens/<int:token_id>/revoke")
def admin_revoke_token(token_id: int) -> Any:
    p = ui_require("admin")
    with state().db.unit_of_work() as s:
        row = admin.revoke_token(s, p.tenant_id, token_id)
        flash(f"Token {row.name} ({row.prefix}…) is revoked.")
    return redirect(url_for("crm_journeys_ui.admin_tokens"))

