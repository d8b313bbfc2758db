"""The builder's goals and exit rules: each fires on an event, on a condition about the
contact (checked whenever the contact's data changes), or on both, so a goal like
"became a customer" needs no event at all. A goal may also send the contact to a step.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from crm_journeys.web.common.drafts import draft_errors
from crm_journeys.web.ui.builder import _context, _load, _save, new_id
from crm_journeys.web.ui.condition_form import parse_condition_tree
from crm_journeys.web.ui.forms import errors_under
from crm_journeys.web.ui.pages import ui

KINDS = {"goals": "Goal", "exit_rules": "Exit rule"}


def read_rule(kind: str, current: dict[str, Any], form: Any) -> dict[str, Any]:
    """A goal or exit rule from its posted form; ``when`` says event, condition or both."""
    when = form.get("when", "event")
    rule: dict[str, Any] = {"id": current["id"], "condition": None, "event": None}
    if when in ("event", "both"):
        old_where = (current.get("event") or {}).get("where")
        rule["event"] = {"type": form.get("event.type", "").strip(), "key": form.get("event.key", "").strip() or None,
                         "where": old_where}
    if when in ("condition", "both"):
        rule["condition"] = parse_condition_tree(form, "condition")
        if rule["condition"] is None:  # keep the choice visible: validation says a condition is needed
            rule["condition"] = {"all": []} if when == "condition" else None
    if kind == "goals":
        rule["label"] = form.get("label", "").strip()
        rule["then"] = form.get("then") or None
    return rule


@ui.post("/journeys/<int:journey_id>/<any(goals, exit_rules):kind>")
def add_rule(journey_id: int, kind: str) -> Any:
    form = request.form
    holder: dict[str, int] = {}

    def mutate(doc: dict[str, Any]) -> None:
        items = doc.setdefault(kind, [])
        label = form.get("label", "").strip()
        when = form.get("when", "event")
        rule: dict[str, Any] = {"id": new_id([i.get("id") for i in items], label or form.get("type") or kind),
                                "condition": None, "event": None}
        if when == "condition":
            rule["condition"] = {"all": []}
        else:
            rule["event"] = {"type": form.get("type", ""), "key": form.get("key") or None, "where": None}
        if kind == "goals":
            rule.update(label=label, then=None)
        items.append(rule)
        holder["index"] = len(items) - 1

    _save(journey_id, mutate)
    if form.get("when") == "condition":  # a condition needs its own form
        return redirect(url_for("crm_journeys_ui.rule", journey_id=journey_id, kind=kind, index=holder["index"]))
    return redirect(url_for("crm_journeys_ui.builder", journey_id=journey_id) + "#goals")


@ui.route("/journeys/<int:journey_id>/<any(goals, exit_rules):kind>/<int:index>", methods=["GET", "POST"])
def rule(journey_id: int, kind: str, index: int) -> Any:
    p, journey = _load(journey_id)
    items = journey.draft.get(kind) or []
    if index >= len(items) or not isinstance(items[index], dict):
        abort(404)
    current = items[index]
    if request.method == "POST":
        _save(journey_id, lambda doc: doc[kind].__setitem__(index, read_rule(kind, current, request.form)))
        flash(f"{KINDS[kind]} saved.")
        return redirect(url_for("crm_journeys_ui.builder", journey_id=journey_id) + "#goals")
    when = "both" if current.get("event") and current.get("condition") is not None else \
        "condition" if current.get("condition") is not None else "event"
    return render_template("crm_journeys/rule.html", **_context(p, journey), rule=current, kind=kind, index=index,
                           title=KINDS[kind], when=when,
                           local=errors_under(draft_errors(journey.draft), f"{kind}[{index}]"))


@ui.post("/journeys/<int:journey_id>/<any(goals, exit_rules):kind>/<int:index>/delete")
def delete_rule(journey_id: int, kind: str, index: int) -> Any:
    _save(journey_id, lambda doc: (doc.get(kind) or []).pop(index) if index < len(doc.get(kind) or []) else None)
    return redirect(url_for("crm_journeys_ui.builder", journey_id=journey_id) + "#goals")
