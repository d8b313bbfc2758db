"""The server-rendered UI: sign-in, journey list, templates, lifecycle, map, test mode,
analytics, timelines and the sandbox CRM. The builder's editing views are in ``builder``.

Every view reads the signed-in user's tenant from the session and passes it to every
query; every POST carries the session's CSRF token (checked before the view runs).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import select
from werkzeug.security import check_password_hash

from crm_journeys.actions.registry import installed_actions
from crm_journeys.auth.accounts import authenticate, can, set_password
from crm_journeys.errors import CrmJourneysError, DefinitionError, NotFound
from crm_journeys.runtime.owners import owner_lookup, owner_messages
from crm_journeys.runtime.tenants import tenant_by_slug
from crm_journeys.runtime.versions import create_journey, publish, set_status
from crm_journeys.services import queries
from crm_journeys.services.diff import diff_documents
from crm_journeys.services.diff_words import changes_in_words
from crm_journeys.services.entry_explain import why_not_in_journey
from crm_journeys.services.gallery import template, templates
from crm_journeys.services.timeline_words import journey_names, with_step_labels, worded
from crm_journeys.storage.auth_models import User
from crm_journeys.storage.models import JourneyVersion
from crm_journeys.web.access import csrf_ok, csrf_token, session_principal, ui_require
from crm_journeys.web.common.backtests import backtest_jobs, job_out, run_simulation, start_backtest
from crm_journeys.web.common.drafts import draft_errors, unchanged
from crm_journeys.web.paging import pager
from crm_journeys.web.state import state
from crm_journeys.web.ui import login_guard
from crm_journeys.web.ui.forms import plain
from crm_journeys.web.ui.journey_map import NODE_H, NODE_W, layout

ui = Blueprint("crm_journeys_ui", __name__, template_folder="../templates", static_folder="../static",
               static_url_path="/static/crm_journeys")
PUBLIC = ("crm_journeys_ui.login", "crm_journeys_ui.static")
PASSWORD_PAGES = ("crm_journeys_ui.change_password", "crm_journeys_ui.logout", "crm_journeys_ui.static")
JOURNEY_STATUSES = ("draft", "live", "paused", "archived")


@ui.record_once
def _cookie_settings(setup: Any) -> None:
    """Session cookies: HttpOnly, SameSite=Lax, and Secure unless CRM_JOURNEYS_SECURE_COOKIES is False."""
    config = setup.app.config
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = config.get("SESSION_COOKIE_SAMESITE") or "Lax"
    if config.get("CRM_JOURNEYS_SECURE_COOKIES", True):
        config["SESSION_COOKIE_SECURE"] = True


@ui.app_context_processor
def _globals() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "principal": session_principal, "can": can, "plain": plain}


@ui.app_template_test("cj_under")
def _under(path: str, prefix: str) -> bool:
    """A document path lies inside ``prefix`` (for highlighting what a template asks to configure)."""
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


@ui.before_request
def _guard() -> Any:
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and not csrf_ok():
        abort(400, "The form expired or did not come from this site. Reload the page and try again.")
    if request.endpoint not in PUBLIC and session_principal() is None:
        return redirect(url_for("crm_journeys_ui.login", next=request.full_path))
    if g.get("must_change_password") and request.endpoint not in PASSWORD_PAGES:
        return redirect(url_for("crm_journeys_ui.change_password"))
    return None


@ui.errorhandler(NotFound)
def _not_found(exc: NotFound) -> Any:
    return render_template("crm_journeys/message.html", title="Not found",
                           message="There is nothing here, or it belongs to another workspace."), 404


# --- sign in ----------------------------------------------------------------------------

@ui.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error, status = None, 200
    if request.method == "POST":
        now = state().runtime.clock.now()
        email = request.form.get("email", "")[:320]
        with state().db.unit_of_work() as s:
            until = login_guard.throttled_until(s, email, now)
            if until is not None:
                minutes = max(1, int((until - now).total_seconds() // 60) + 1)
                return render_template("crm_journeys/login.html",
                                       error=f"Too many failed sign-ins. Try again in {minutes} minutes."), 429
            user = authenticate(s, email, request.form.get("password", "")[:200], _login_tenant(s))
            if user is not None:
                login_guard.sign_in(s, user, now)
                if user.must_change_password:
                    return redirect(url_for("crm_journeys_ui.change_password"))
                target = login_guard.safe_next(request.args.get("next", ""))
                return redirect(target or url_for("crm_journeys_ui.journeys"))
            login_guard.count_failure(s, email, now)
        error, status = "That email and password do not match (name the workspace if you belong to several).", 200
    return render_template("crm_journeys/login.html", error=error), status


def _login_tenant(s: Any) -> int | None:
    slug = request.form.get("tenant", "").strip()
    if not slug:
        return None
    try:
        return tenant_by_slug(s, slug[:80]).id
    except CrmJourneysError:
        return -1


@ui.post("/logout")
def logout() -> Any:
    user_id = session.get("user_id")
    if user_id is not None and session_principal() is not None:
        with state().db.unit_of_work() as s:
            user = s.get(User, user_id)
            if user is not None:
                login_guard.void_sessions(user)  # a copied cookie dies with this one
    session.clear()
    return redirect(url_for("crm_journeys_ui.login"))


@ui.route("/account/password", methods=["GET", "POST"])
def change_password() -> Any:
    """Change one's own password (forced after a temporary one); other sessions end."""
    p = session_principal()
    assert p is not None and p.user_id is not None  # _guard signed the caller in
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = request.form
        with state().db.unit_of_work() as s:
            user = s.get(User, p.user_id)
            assert user is not None
            if not check_password_hash(user.password_hash, form.get("current_password", "")[:200]):
                errors["current_password"] = "This is not your current password."
            elif form.get("new_password", "") != form.get("confirm_password", ""):
                errors["confirm_password"] = "The two new passwords differ."
            elif form.get("new_password", "") == form.get("current_password", ""):
                errors["new_password"] = "Choose a password different from the current one."
            else:
                try:
                    set_password(user, form.get("new_password", ""))
                except ValueError as exc:
                    errors["new_password"] = str(exc)
            if not errors:
                login_guard.sign_in(s, user, state().runtime.clock.now())  # this session lives on
                flash("Password changed. Other sessions were signed out.")
                return redirect(url_for("crm_journeys_ui.journeys"))
    forced = bool(g.get("must_change_password"))
    return render_template("crm_journeys/password.html", errors=errors, forced=forced), 400 if errors else 200


# --- journeys ---------------------------------------------------------------------------

@ui.get("/")
def home() -> Any:
    return redirect(url_for("crm_journeys_ui.journeys"))


@ui.get("/journeys")
def journeys() -> Any:
    p = ui_require("read")
    name, status = request.args.get("q", "").strip()[:200], request.args.get("status", "")
    status = status if status in JOURNEY_STATUSES else ""
    with state().db.unit_of_work() as s:
        page = pager(queries.count_journeys(s, p.tenant_id, name=name, status=status))
        rows = queries.journeys(s, p.tenant_id, limit=page.per_page, offset=page.offset, name=name, status=status)
        numbers = queries.version_numbers(s, p.tenant_id)
        counts = queries.counts(s, p.tenant_id, [j.id for j in rows])
    return render_template("crm_journeys/journeys.html", journeys=rows, numbers=numbers, counts=counts, pager=page,
                           q=name, status=status, statuses=JOURNEY_STATUSES)


@ui.get("/templates")
def gallery() -> Any:
    ui_require("read")
    return render_template("crm_journeys/gallery.html", templates=templates())


@ui.post("/journeys/new")
def new_journey() -> Any:
    p = ui_require("edit")
    from crm_journeys.web.common.drafts import BLANK

    chosen = request.form.get("template")
    document = template(chosen)["document"] if chosen else dict(BLANK, name=request.form.get("name") or "Untitled journey")
    with state().db.unit_of_work() as s:
        journey = create_journey(s, p.tenant_id, document, state().runtime.clock.now())
    if request.form.get("editor") == "canvas":
        return redirect(url_for("crm_journeys_ui.canvas", journey_id=journey.id))
    if chosen:
        session[f"configure:{journey.id}"] = template(chosen)["configure"]
        flash("Your copy of the template is ready. The highlighted fields are yours to set.")
    return redirect(url_for("crm_journeys_ui.builder", journey_id=journey.id))


@ui.post("/journeys/<int:journey_id>/<any(publish, pause, resume, archive):action>")
def lifecycle(journey_id: int, action: str) -> Any:
    p = ui_require("publish")
    now = state().runtime.clock.now()
    owners = owner_lookup(state().runtime, p.tenant_id) if action == "publish" else None
    with state().db.unit_of_work() as s:
        journey = queries.journey(s, p.tenant_id, journey_id)
        try:
            if action == "publish":
                migration = {k[10:]: v for k, v in request.form.items() if k.startswith("migration.") and v}
                if not migration and unchanged(s, journey):
                    flash("Nothing changed since the live version, so no new version was made.")
                    return redirect(url_for("crm_journeys_ui.builder", journey_id=journey_id))
                publish(s, p.tenant_id, journey.id, now, actions=installed_actions(), migration=migration or None,
                        owners=owners)
            else:
                set_status(s, p.tenant_id, journey.id, {"pause": "paused", "resume": "live", "archive": "archived"}[action], now)
        except DefinitionError as exc:
            flash("The journey is not ready to publish: fix the points marked below.", "error")
            for message in owner_messages(exc):  # checked against the CRM, not in the draft
                flash(message, "error")
            return redirect(url_for("crm_journeys_ui.builder", journey_id=journey_id, check=1))
    flash({"publish": "Published. New contacts now enter the new version.", "pause": "Paused.",
           "resume": "Live again.", "archive": "Archived; contacts in flight have left."}[action])
    return redirect(url_for("crm_journeys_ui.builder", journey_id=journey_id))


@ui.get("/journeys/<int:journey_id>/map")
def journey_map(journey_id: int) -> Any:
    p = ui_require("read")
    with state().db.unit_of_work() as s:
        journey = queries.journey(s, p.tenant_id, journey_id)
        stats = queries.analytics(s, p.tenant_id, journey_id)
    per_step = {st["id"]: st for st in stats["steps"]}
    document = journey.draft
    if journey.live_version_id:
        with state().db.unit_of_work() as s:
            live = s.get(JourneyVersion, journey.live_version_id)
            document = live.document if live and request.args.get("draft") is None else document
    return render_template("crm_journeys/map.html", journey=journey, stats=stats,
                           layout=layout(document, per_step), node_w=NODE_W, node_h=NODE_H)


@ui.get("/journeys/<int:journey_id>/versions")
def versions(journey_id: int) -> Any:
    p = ui_require("read")
    with state().db.unit_of_work() as s:
        journey = queries.journey(s, p.tenant_id, journey_id)
        rows = list(s.scalars(select(JourneyVersion).where(JourneyVersion.tenant_id == p.tenant_id,
                                                           JourneyVersion.journey_id == journey_id)
                              .order_by(JourneyVersion.version.desc())))
    docs = {str(v.version): v.document for v in rows} | {"draft": journey.draft}
    before, after = request.args.get("from"), request.args.get("to", "draft")
    changes = diff_documents(docs[before], docs[after]) if before in docs and after in docs else None
    words = changes_in_words(docs[str(before)], docs[after], changes) if changes is not None else None
    return render_template("crm_journeys/versions.html", journey=journey, versions=rows, changes=changes, words=words,
                           before=before, after=after)


# --- test mode --------------------------------------------------------------------------

@ui.route("/journeys/<int:journey_id>/test", methods=["GET", "POST"])
def test_mode(journey_id: int) -> Any:
    p = ui_require("read")
    result, error = None, None
    with state().db.unit_of_work() as s:
        journey = queries.journey(s, p.tenant_id, journey_id)
    problems = draft_errors(journey.draft)
    if request.method == "POST":
        ui_require("test")
        form = request.form
        events = [{"after": form.get(f"event{i}.after") or "PT0S", "type": form[f"event{i}.type"],
                   "key": form.get(f"event{i}.key", ""), "properties": {}}
                  for i in range(3) if form.get(f"event{i}.type")]
        body = {"contact": {"email": form.get("email") or "test@example.com", "first_name": form.get("first_name", ""),
                            "last_name": "", "fields_": {}, "groups": [],
                            "tags": [t.strip() for t in form.get("tags", "").split(",") if t.strip()]},
                "horizon": form.get("horizon") or "P30D", "events": events,
                "starting_point": form.get("starting_point") or None}
        try:
            result = run_simulation(journey.draft, body)
        except DefinitionError:
            error = "Fix the journey's problems before simulating it."
        except CrmJourneysError as exc:
            error = str(exc)
        except ValueError as exc:
            error = str(exc)
    from crm_journeys.services.catalog import event_types

    return render_template("crm_journeys/test.html", journey=journey, result=result, error=error,
                           problems=problems, event_types=event_types())


@ui.post("/journeys/<int:journey_id>/backtest")
def backtest(journey_id: int) -> Any:
    p = ui_require("test")
    days = request.form.get("days", "7")
    try:
        job = start_backtest(p, journey_id, max(1, min(365, int(days))))
    except (DefinitionError, ValueError):
        flash("Fix the journey's problems (and give a number of days) before backtesting.", "error")
        return redirect(url_for("crm_journeys_ui.test_mode", journey_id=journey_id))
    return redirect(url_for("crm_journeys_ui.backtest_progress", journey_id=journey_id, job_id=job.id))


@ui.get("/journeys/<int:journey_id>/backtests/<job_id>")
def backtest_progress(journey_id: int, job_id: str) -> Any:
    p = ui_require("read")
    job = backtest_jobs().get(p.tenant_id, job_id)
    if job is None or job.journey_id != journey_id:
        abort(404)
    with state().db.unit_of_work() as s:
        journey = queries.journey(s, p.tenant_id, journey_id)
    return render_template("crm_journeys/backtest.html", journey=journey, job=job_out(job))


# --- analytics, timelines, contacts -----------------------------------------------------

@ui.get("/journeys/<int:journey_id>/analytics")
def analytics(journey_id: int) -> Any:
    p = ui_require("read")
    with state().db.unit_of_work() as s:
        journey = queries.journey(s, p.tenant_id, journey_id)
        stats = queries.analytics(s, p.tenant_id, journey_id)
        page = pager(queries.count_instances(s, p.tenant_id, journey_id=journey_id))
        instances = queries.instance_rows(s, p.tenant_id, journey_id=journey_id, limit=page.per_page, offset=page.offset)
        with_step_labels(s, p.tenant_id, instances)
    return render_template("crm_journeys/analytics.html", journey=journey, stats=stats, instances=instances, pager=page)


@ui.get("/instances/<int:instance_id>")
def instance(instance_id: int) -> Any:
    p = ui_require("read")
    with state().db.unit_of_work() as s:
        detail = queries.instance_detail(s, p.tenant_id, instance_id)
        journey = queries.journey(s, p.tenant_id, detail["journey_id"])
        detail["timeline"] = worded(s, p.tenant_id, detail["timeline"], [detail])
        with_step_labels(s, p.tenant_id, [detail])
    return render_template("crm_journeys/instance.html", instance=detail, journey=journey)


@ui.get("/contacts")
def contacts() -> Any:
    p = ui_require("read")
    with state().db.unit_of_work() as s:
        crm_contacts = queries.sandbox_contacts(s, p.tenant_id)
        records = queries.sandbox_records(s, p.tenant_id, limit=200)
        page = pager(queries.count_contacts(s, p.tenant_id))
        mirror = queries.contacts(s, p.tenant_id, limit=page.per_page, offset=page.offset)
    return render_template("crm_journeys/contacts.html", crm_contacts=crm_contacts, records=records,
                           mirror=mirror, pager=page, since=state().runtime.clock.now() - timedelta(days=1))


@ui.get("/contacts/<int:contact_id>")
def contact(contact_id: int) -> Any:
    p = ui_require("read")
    with state().db.unit_of_work() as s:
        detail = queries.contact_detail(s, p.tenant_id, contact_id)
        detail["timeline"] = worded(s, p.tenant_id, detail["timeline"], detail["instances"])
        names = journey_names(s, p.tenant_id, {i["journey_id"] for i in detail["instances"]})
        with_step_labels(s, p.tenant_id, detail["instances"])
        why_not = why_not_for(s, p.tenant_id, detail, request.args.get("why_not", ""))
        live = queries.journeys(s, p.tenant_id, status="live")
    return render_template("crm_journeys/contact.html", contact=detail, names=names, why_not=why_not, live=live)


def why_not_for(s: Any, tenant_id: int, contact: dict[str, Any], journey_id: str) -> dict[str, Any] | None:
    """The "why is this contact not in that journey" answer for the contact page."""
    if not journey_id.isdigit():
        return None
    journey = queries.journey(s, tenant_id, int(journey_id))
    live = s.get(JourneyVersion, journey.live_version_id) if journey.live_version_id else None
    if live is None:
        return {"journey": journey.name, "lines": ["The journey is not live, so nobody enters it."]}
    runs = [i["entered_at"] for i in contact["instances"] if i["journey_id"] == journey.id]
    facts = {"email": contact["email"], "fields": contact["fields"] or {}, "tags": contact["tags"] or [],
             "groups": contact["groups"] or []}
    return {"journey": journey.name,
            "lines": why_not_in_journey(live.document, facts, runs, state().runtime.clock.now())}
