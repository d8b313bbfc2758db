"""Admin page "Action errors": the tenant's dead and retrying actions with why they failed,
filtered and paged, and Retry / Dismiss per row, for the ticked rows or for every dead row
the filter matches. Admin role only; CSRF is checked by the UI's guard. The rules live in
``runtime.action_errors``; the nav's count of dead rows is ``dead_actions`` here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import flash, g, redirect, render_template, request, url_for

from crm_journeys.auth.accounts import can
from crm_journeys.runtime import action_errors as errors
from crm_journeys.services import queries
from crm_journeys.web.access import session_principal, ui_require
from crm_journeys.web.common.action_errors import apply
from crm_journeys.web.paging import pager
from crm_journeys.web.state import state
from crm_journeys.web.ui.pages import ui

SHOWN_REFUSALS = 5


@ui.app_context_processor
def _nav() -> dict[str, Any]:
    return {"dead_actions": dead_actions}


def dead_actions() -> str:
    """The nav badge: the signed-in admin's count of dead actions ("" when none, or for
    other roles; "999+" past the cap), one bounded query per request."""
    if "dead_actions" not in g:
        p = session_principal()
        count = 0
        if p is not None and can(p.role, "admin"):
            with state().db.unit_of_work() as s:
                count = errors.dead_count(s, p.tenant_id)
        g.dead_actions = f"{errors.BADGE_CAP - 1}+" if count >= errors.BADGE_CAP else str(count or "")
    return str(g.dead_actions)


def _filter_from(args: Any) -> tuple[errors.ErrorFilter, dict[str, str]]:
    """The filter in the query string or form, and its arguments to keep in links."""
    status = args.get("status", "") if args.get("status") in errors.FILTER_STATUSES else ""
    journey = args.get("journey_id", "") if args.get("journey_id", "").isdigit() else ""
    action = args.get("action", "").strip()[:60]
    kept = {k: v for k, v in (("status", status), ("journey_id", journey), ("action", action)) if v}
    return errors.ErrorFilter(status or None, int(journey) if journey else None, action or None), kept


@ui.get("/admin/action-errors")
def action_errors() -> Any:
    p = ui_require("admin")
    f, kept = _filter_from(request.args)
    with state().db.unit_of_work() as s:
        page = pager(errors.count_errors(s, p.tenant_id, f))
        rows = errors.list_errors(s, p.tenant_id, f, limit=page.per_page, offset=page.offset)
        journeys = [(j.id, j.name) for j in queries.journeys(s, p.tenant_id)]
        actions = errors.actions_in_use(s, p.tenant_id)
    return render_template("crm_journeys/admin_action_errors.html", rows=rows, pager=page, filters=kept,
                           journeys=journeys, actions=actions, statuses=errors.FILTER_STATUSES)


@ui.post("/admin/action-errors/<any(retry, dismiss):verb>")
def action_errors_apply(verb: str) -> Any:
    """One row (``row``), the ticked ones (``ids``) or, with ``scope=all``, every dead row
    the filter matches; back to the same filtered list with what happened."""
    p = ui_require("admin")
    form = request.form
    f, kept = _filter_from(form)
    if form.get("row", "").isdigit():
        outcome = apply(p, verb, [int(form["row"])])
    elif form.get("scope") == "all":
        outcome = apply(p, verb, None, f)
    else:
        outcome = apply(p, verb, [int(i) for i in form.getlist("ids") if i.isdigit()])
    _report(verb, outcome)
    return redirect(url_for("crm_journeys_ui.action_errors") + (f"?{urlencode(kept)}" if kept else ""))


def _report(verb: str, outcome: errors.Outcome) -> None:
    done = len(outcome.changed)
    if not done and not outcome.refused:
        flash("No dead action was chosen: tick some, or act on all matching the filter.", "error")
    if done:
        what = "sent again" if verb == "retry" else "dismissed (never sent)"
        flash(f"{done} action{'s' if done != 1 else ''} {what}.")
    refusals = list(outcome.refused.values())
    if refusals:
        more = len(refusals) - SHOWN_REFUSALS
        flash(" ".join(refusals[:SHOWN_REFUSALS]) + (f" And {more} more." if more > 0 else ""), "error")
