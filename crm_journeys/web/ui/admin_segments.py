"""Setup pages for saved segments: the list (name, condition in plain words, members),
a new segment, a segment's page (its condition in the builder's AND/OR editor, its
members page by page, the journeys naming it) and delete. Everyone signed in reads;
editors and admins write. CSRF is checked by the UI's guard.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from crm_journeys.errors import DefinitionError
from crm_journeys.services import saved_segments
from crm_journeys.services.catalog import OPERATORS
from crm_journeys.services.condition_words import describe
from crm_journeys.services.usage import NameTaken, uses, uses_by_name
from crm_journeys.web.access import ui_require
from crm_journeys.web.paging import pager
from crm_journeys.web.state import state
from crm_journeys.web.ui.builder import pickers
from crm_journeys.web.ui.condition_form import EDITABLE_DEPTH, condition_tree, parse_condition_tree
from crm_journeys.web.ui.deletes import delete_from_page
from crm_journeys.web.ui.forms import errors_under, show_value
from crm_journeys.web.ui.pages import ui


def editor_context(tenant_id: int) -> dict[str, Any]:
    """What the condition editor macro needs."""
    return {"operators": OPERATORS, "pickers": pickers(tenant_id), "condition_tree": condition_tree,
            "errors_under": errors_under, "editable_depth": EDITABLE_DEPTH, "show_value": show_value}


@ui.get("/segments")
def segments() -> Any:
    p = ui_require("read")
    with state().db.unit_of_work() as s:
        page = pager(saved_segments.count_segments(s, p.tenant_id))
        rows = saved_segments.segments(s, p.tenant_id, limit=page.per_page, offset=page.offset)
        used = uses_by_name(s, p.tenant_id, "segment")
    return render_template("crm_journeys/segments.html", segments=rows, used=used, pager=page, describe=describe)


@ui.route("/segments/new", methods=["GET", "POST"])
def new_segment() -> Any:
    p = ui_require("edit")
    form = request.form
    name, condition, errors = form.get("name", "").strip(), None, {}
    if request.method == "POST":
        condition = parse_condition_tree(form, "condition")
        try:
            with state().db.unit_of_work() as s:
                row = saved_segments.create(s, p.tenant_id, name, condition, state().runtime.clock.now())
                segment_id, count = row.id, row.member_count
        except DefinitionError as exc:
            errors = exc.errors
        except NameTaken as exc:
            errors = {"name": [str(exc)]}
        else:
            flash(f"Segment “{name}” saved: {_contacts(count)} match it now.")
            return redirect(url_for("crm_journeys_ui.segment", segment_id=segment_id))
    return render_template("crm_journeys/segment.html", seg=None, name=name, condition=condition,
                           errors=errors, **editor_context(p.tenant_id)), 422 if errors else 200


@ui.route("/segments/<int:segment_id>", methods=["GET", "POST"])
def segment(segment_id: int) -> Any:
    p = ui_require("read")
    errors: dict[str, list[str]] = {}
    condition = None
    if request.method == "POST":
        ui_require("edit")
        condition = parse_condition_tree(request.form, "condition")
        try:
            with state().db.unit_of_work() as s:
                row = saved_segments.update(s, p.tenant_id, segment_id, condition, state().runtime.clock.now())
                name, count = row.name, row.member_count
        except DefinitionError as exc:
            errors = exc.errors
        else:
            flash(f"Segment “{name}” saved: {_contacts(count)} match it now.")
            return redirect(url_for("crm_journeys_ui.segment", segment_id=segment_id))
    with state().db.unit_of_work() as s:
        row = saved_segments.segment(s, p.tenant_id, segment_id)
        page = pager(saved_segments.count_members(s, p.tenant_id, row.name))
        members = saved_segments.members(s, p.tenant_id, row.name, limit=page.per_page, offset=page.offset)
        used = uses(s, p.tenant_id, "segment", row.name)
    return render_template("crm_journeys/segment.html", seg=row, name=row.name,
                           condition=condition if errors else row.condition, errors=errors, members=members,
                           pager=page, used=used, summary=describe(row.condition),
                           **editor_context(p.tenant_id)), 422 if errors else 200


@ui.post("/segments/<int:segment_id>/delete")
def delete_segment(segment_id: int) -> Any:
    return delete_from_page(saved_segments.delete, segment_id, label="Segment", page="segment", listing="segments",
                            id_arg="segment_id")


def _contacts(n: int) -> str:
    return f"{n} contact{'s' if n != 1 else ''}"
