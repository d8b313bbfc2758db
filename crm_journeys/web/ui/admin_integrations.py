"""Admin page for the inbound integrations (Eventbrite, LiveChat, Zapier, custom-trigger
webhooks): per service the URL to paste into it, which secrets are set, when it last
delivered, a form for the values the service gives, and rotation of the secrets we make.

A rotated secret is rendered into the response of that POST only (never flashed: flashes
live in the readable session cookie) with ``Cache-Control: no-store``; pasted values are
never echoed back. Admin role only; CSRF is checked by the UI's guard.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from crm_journeys.errors import DefinitionError
from crm_journeys.services import integration_secrets as secrets
from crm_journeys.storage.models import Tenant
from crm_journeys.web.access import ui_require
from crm_journeys.web.state import state
from crm_journeys.web.ui.forms import plain
from crm_journeys.web.ui.pages import ui


def _page(**extra: Any) -> Any:
    p = ui_require("admin")
    with state().db.unit_of_work() as s:
        services = secrets.status(s, p.tenant_id)
        tenant = s.get(Tenant, p.tenant_id)
        crm = {"connector": tenant.connector, "error": tenant.connector_error,
               "at": tenant.connector_error_at} if tenant else None
    return render_template("crm_journeys/admin_integrations.html", services=services, crm=crm,
                           **extra)


@ui.get("/admin/integrations")
def admin_integrations() -> Any:
    return _page()


@ui.post("/admin/integrations/<service>/rotate")
def admin_rotate_secret(service: str) -> Any:
    p = ui_require("admin")
    try:
        with state().db.unit_of_work() as s:
            setting, value = secrets.rotate(s, p.tenant_id, service, request.form.get("setting") or None)
    except DefinitionError as exc:
        flash(" ".join(plain(m) for msgs in exc.errors.values() for m in msgs), "error")
        return redirect(url_for("crm_journeys_ui.admin_integrations"))
    svc = secrets.service(service)
    response = _page(revealed={"service": service, "label": f"{svc.setting(setting).label.lower()} for {svc.label}",
                               "secret": value})
    return response, 200, {"Cache-Control": "no-store"}


@ui.post("/admin/integrations/<service>")
def admin_save_integration(service: str) -> Any:
    p = ui_require("admin")
    svc = secrets.service(service)
    form = request.form
    values: dict[str, str | None] = {}
    for st in svc.settings:
        given = form.get(f"value.{st.name}")
        if f"clear.{st.name}" in form:
            values[st.name] = None
        elif given is not None and (given.strip() or not st.secret):  # an empty secret box keeps the secret
            values[st.name] = given
    with state().db.unit_of_work() as s:
        secrets.update(s, p.tenant_id, service, values)
    changed = ", ".join(svc.setting(n).label.lower() for n in values) or "nothing changed"
    flash(f"{svc.label} saved ({changed}).")
    return redirect(url_for("crm_journeys_ui.admin_integrations") + f"#{service}")
