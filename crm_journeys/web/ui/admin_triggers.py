"""Setup pages for custom triggers: the declared business events with their attribute
schema (name, type from a fixed list, required), each error next to its field, and for
each trigger ready-to-run calls (events API and webhook) with secrets as placeholders.
Everyone signed in reads; editors and admins write.

Attribute rows are posted as ``attr<i>.name|type|required``; rows left without a name are
dropped, so the form always offers a few empty rows to add more.
"""

from __future__ import annotations

import re
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from crm_journeys.errors import DefinitionError
from crm_journeys.services import trigger_declarations as declared
from crm_journeys.services.integration_secrets import hook_url, tenant_slug
from crm_journeys.services.usage import NameTaken, uses, uses_by_name
from crm_journeys.web.access import ui_require
from crm_journeys.web.paging import pager
from crm_journeys.web.state import state
from crm_journeys.web.ui.deletes import delete_from_page
from crm_journeys.web.ui.pages import ui

EMPTY_ROWS = 3
_ROW = re.compile(r"^attr(\d+)\.")


def parse_attributes(form: MultiDict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for i in sorted({int(m.group(1)) for key in form if (m := _ROW.match(key))}):
        name = form.get(f"attr{i}.name", "").strip()
        if name:
            rows.append({"name": name, "type": form.get(f"attr{i}.type", ""),
                         "required": f"attr{i}.required" in form})
    return rows


@ui.get("/custom-triggers")
def custom_triggers() -> Any:
    p = ui_require("read")
    with state().db.unit_of_work() as s:
        page = pager(declared.count_declarations(s, p.tenant_id))
        rows = declared.declarations(s, p.tenant_id, limit=page.per_page, offset=page.offset)
        used = uses_by_name(s, p.tenant_id, "custom_trigger")
    return render_template("crm_journeys/custom_triggers.html", triggers=rows, used=used, pager=page,
                           attribute_list=declared.attribute_list, types=declared.FORM_TYPES)


@ui.route("/custom-triggers/new", methods=["GET", "POST"])
def new_custom_trigger() -> Any:
    p = ui_require("edit")
    name, attributes, errors = request.form.get("name", "").strip(), parse_attributes(request.form), {}
    if request.method == "POST":
        try:
            with state().db.unit_of_work() as s:
                trigger_id = declared.create(s, p.tenant_id, name, attributes, state().runtime.clock.now()).id
        except DefinitionError as exc:
            errors = exc.errors
        except NameTaken as exc:
            errors = {"name": [str(exc)]}
        else:
            flash(f"Custom trigger “{name}” saved.")
            return redirect(url_for("crm_journeys_ui.custom_trigger", trigger_id=trigger_id))
    return _page(None, name, attributes, errors)


@ui.route("/custom-triggers/<int:trigger_id>", methods=["GET", "POST"])
def custom_trigger(trigger_id: int) -> Any:
    p = ui_require("read")
    errors: dict[str, list[str]] = {}
    attributes = None
    if request.method == "POST":
        ui_require("edit")
        attributes = parse_attributes(request.form)
        try:
            with state().db.unit_of_work() as s:
                name = declared.update(s, p.tenant_id, trigger_id, attributes, state().runtime.clock.now()).name
        except DefinitionError as exc:
            errors = exc.errors
        else:
            flash(f"Custom trigger “{name}” saved. Events arriving from now on are checked against it.")
            return redirect(url_for("crm_journeys_ui.custom_trigger", trigger_id=trigger_id))
    with state().db.unit_of_work() as s:
        row = declared.declaration(s, p.tenant_id, trigger_id)
        slug = tenant_slug(s, p.tenant_id)
        used = uses(s, p.tenant_id, "custom_trigger", row.name)
        s.expunge(row)
    examples = declared.curl_examples(row, url_for("crm_journeys_api.post_event", _external=True),
                                      hook_url(slug, "custom"))
    current = attributes if attributes is not None else declared.attribute_list(row.attributes)
    return _page(row, row.name, current, errors, used=used, examples=examples)


@ui.post("/custom-triggers/<int:trigger_id>/delete")
def delete_custom_trigger(trigger_id: int) -> Any:
    return delete_from_page(declared.delete, trigger_id, label="Custom trigger", page="custom_trigger", listing="custom_triggers",
                            id_arg="trigger_id")


def _page(row: Any, name: str, attributes: list[dict[str, Any]], errors: dict[str, list[str]], **extra: Any) -> Any:
    rows = attributes + [{"name": "", "type": "text", "required": False}] * EMPTY_ROWS
    page = render_template("crm_journeys/custom_trigger.html", trigger=row, name=name, rows=rows, errors=errors,
                           types=declared.FORM_TYPES, **extra)
    return page, 422 if errors else 200
