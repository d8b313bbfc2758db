"""Installing into a CRM from the browser: pick the host, sign in there (OAuth) or paste a
key, and the tenant exists; uninstalling removes it. Also the CRM-side links (cards, tabs)
land here and are sent on to the right page.

``GET /install`` lists hosts; ``GET|POST /install/<host>`` shows and takes the form;
OAuth hosts continue at ``/install/<host>/callback`` with ``state`` checked against this
browser's session. ``POST /install/tenants/<slug>/uninstall`` needs the tenant's admin
(session or API token). The CRM webhook endpoint (``web.hooks.crm``) is nested here so the
add-on registers as one blueprint.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import select

from crm_journeys.auth.accounts import can, create_api_token
from crm_journeys.connectors.registry import load_connector
from crm_journeys.errors import NotFound
from crm_journeys.hosts import BUILT_IN, HostProfile, sync_interval
from crm_journeys.install import (
    InstallError,
    begin_oauth,
    client_config,
    finish_oauth,
    host_profile,
    install_tenant,
    typed_settings,
    uninstall,
)
from crm_journeys.runtime.tenants import tenant_by_slug
from crm_journeys.storage.models import Contact, Tenant
from crm_journeys.web.access import api_principal, csrf_ok, csrf_token, session_principal
from crm_journeys.web.errors import ApiError
from crm_journeys.web.hooks.crm import crm_hooks
from crm_journeys.web.hooks.install_access import REFUSED, may_install_with_key, private_url_errors
from crm_journeys.web.state import state

install = Blueprint("crm_journeys_install", __name__)
install.register_blueprint(crm_hooks)
PENDING = "cj_install"


def _wants_json() -> bool:
    return request.is_json or request.accept_mimetypes.best == "application/json"


def _submitted(profile: HostProfile) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """(slug, name, settings, credentials) from a JSON body or the form."""
    if request.is_json:
        body = request.get_json(silent=True)
        body = body if isinstance(body, dict) else {}
        settings, credentials = body.get("settings") or {}, body.get("credentials") or {}
        if not isinstance(settings, dict) or not isinstance(credentials, dict):
            raise InstallError({"settings" if not isinstance(settings, dict) else "credentials":
                                "must be a JSON object"})
        return str(body.get("tenant", "")), str(body.get("name", "")), settings, credentials
    form = request.form
    settings = typed_settings({k[9:]: v for k, v in form.items() if k.startswith("settings.") and v},
                      profile.settings_schema()["properties"])
    credentials = {k[12:]: v for k, v in form.items() if k.startswith("credentials.") and v}
    return form.get("tenant", ""), form.get("name", ""), settings, credentials


def _failed(host: str, profile: HostProfile, error: InstallError) -> Any:
    if _wants_json():
        return jsonify({"error": "install_failed", "errors": error.errors}), 400
    return render_template("crm_journeys/install.html", host=host, profile=profile,
                           errors=error.errors, values=request.form), 400


def _refused(host: str, profile: HostProfile) -> Any:
    if _wants_json():
        return jsonify({"error": "unauthorized", "message": REFUSED}), 401
    return render_template("crm_journeys/install.html", host=host, profile=profile,
                           errors={"install_key": REFUSED}, values=request.form), 401


def _installed(tenant_id: int) -> Any:
    """The one page that shows the installer what to keep: an admin API token, the
    webhook URL (for HubSpot the app's one URL, the same for every account) and, for
    Dynamics, the secret to enter on the service endpoint."""
    from crm_journeys.secrets import decrypt_json

    st = state()
    with st.db.unit_of_work() as s:
        tenant = s.get(Tenant, tenant_id)
        assert tenant is not None
        token = create_api_token(s, tenant_id, "installer", role="admin", now=st.runtime.clock.now())
        info = {"tenant": tenant.slug, "tenant_id": tenant_id, "host": tenant.connector,
                "api_token": token}
        if "webhooks" in load_connector(tenant.connector).capabilities:
            info["webhook_url"] = url_for("crm_journeys_install.crm_journeys_crm_hooks.receive",
                                          tenant_slug=tenant.slug, _external=True)
        else:  # nothing to paste anywhere: the worker polls the host
            info["polled_every_seconds"] = sync_interval(tenant.connector, tenant.settings or {})
        if tenant.connector == "hubspot":  # the app's one target URL, routed by portalId
            info["webhook_url"] = url_for(
                "crm_journeys_install.crm_journeys_crm_hooks.receive_hubspot", _external=True)
            info["portal_id"] = str((tenant.settings or {}).get("portal_id", ""))
        secret = decrypt_json(tenant.credentials).get("webhook_secret")
        if secret:
            info["webhook_secret"] = secret
    if _wants_json():
        return jsonify(info), 201
    return render_template("crm_journeys/installed.html", info=info), 201


@install.get("/install")
def hosts() -> Any:
    listed = {name: p for name, p in BUILT_IN.items() if p.auth != "none"}
    if _wants_json():
        return jsonify({name: {"label": p.label, "auth": p.auth,
                               "url": url_for(".start", host=name)} for name, p in listed.items()})
    return render_template("crm_journeys/install.html", host=None, hosts=listed)


@install.route("/install/<host>", methods=["GET", "POST"])
def start(host: str) -> Any:
    try:
        profile = host_profile(host)
    except InstallError as exc:
        abort(404, exc.errors.get("host"))
    if request.method == "GET":
        if _wants_json():
            return jsonify({"host": host, "auth": profile.auth, "csrf_token": csrf_token(),
                            "settings_schema": profile.settings_schema(),
                            "credentials_schema": profile.credentials_schema()})
        return render_template("crm_journeys/install.html", host=host, profile=profile,
                               errors={}, values={})
    if not request.is_json and not csrf_ok():
        abort(400, "The form expired or did not come from this site. Reload and try again.")
    runtime = state().runtime
    try:
        slug, name, settings, credentials = _submitted(profile)
        if profile.auth == "oauth2":
            if not may_install_with_key():
                unsafe = private_url_errors(settings, profile.settings_schema()["properties"])
                if unsafe:
                    raise InstallError(unsafe)
            client = client_config(host, current_app.config.get("CRM_JOURNEYS_OAUTH_CLIENTS"))
            redirect_uri = url_for(".callback", host=host, _external=True)
            url, pending = begin_oauth(runtime, host, slug, name, settings, redirect_uri, client)
            session[PENDING] = pending
            return redirect(url)
        if not may_install_with_key():
            return _refused(host, profile)
        tenant_id = install_tenant(runtime, host, slug, name, settings, credentials)
    except InstallError as exc:
        return _failed(host, profile, exc)
    return _installed(tenant_id)


@install.get("/install/<host>/callback")
def callback(host: str) -> Any:
    profile = host_profile(host)
    pending = session.pop(PENDING, None)
    if pending and pending.get("host") != host:
        pending = None
    if request.args.get("error"):
        return _failed(host, profile, InstallError(
            {"code": f"{host} said: {request.args.get('error_description') or request.args['error']}"}))
    try:
        client = client_config(host, current_app.config.get("CRM_JOURNEYS_OAUTH_CLIENTS"))
        tenant_id = finish_oauth(state().runtime, pending, request.args.get("state"),
                                 request.args.get("code"), client)
    except InstallError as exc:
        return _failed(host, profile, exc)
    return _installed(tenant_id)


@install.post("/install/tenants/<slug>/uninstall")
def remove(slug: str) -> Any:
    try:
        principal = api_principal()
    except ApiError as exc:
        return jsonify({"error": exc.code, "message": exc.message}), exc.status
    st = state()
    with st.db.unit_of_work() as s:
        try:
            tenant_id = tenant_by_slug(s, slug).id
        except NotFound:
            return jsonify({"error": "unknown tenant"}), 404
    if principal.tenant_id != tenant_id or not can(principal.role, "admin"):
        return jsonify({"error": "only the tenant's admin may uninstall"}), 403
    deleted = uninstall(st.runtime, tenant_id)
    session.clear()
    return jsonify({"uninstalled": slug, "deleted": deleted})


@install.get("/crm/contact")
def crm_contact() -> Any:
    """Where CRM cards and tabs link: a host contact id to its journeys timeline.

    Only for a signed-in user of that tenant: anyone else is sent to sign in before
    anything is looked up, so the answer never tells whether an address is a contact."""
    principal = session_principal()
    if principal is None:
        return redirect(url_for("crm_journeys_ui.login", next=request.full_path))
    st = state()
    with st.db.unit_of_work() as s:
        try:
            tenant_id = tenant_by_slug(s, request.args.get("tenant", "")).id
        except NotFound:
            abort(404)
        if tenant_id != principal.tenant_id:
            abort(404, "That contact has not reached crm_journeys yet.")
        contact_id = s.scalar(select(Contact.id).where(
            Contact.tenant_id == tenant_id,
            Contact.external_id == request.args.get("external_id", "")))
    if contact_id is None:
        abort(404, "That contact has not reached crm_journeys yet.")
    return redirect(url_for("crm_journeys_ui.contact", contact_id=contact_id))
