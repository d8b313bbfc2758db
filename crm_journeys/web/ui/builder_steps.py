"""The builder's step views: add a step (wired after another), edit it through the form
its type declares in ``catalog.STEP_FORMS``, delete it (connections to it then end the
journey). Split from ``builder`` to keep each module readable.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from crm_journeys.services.catalog import STEP_FORMS, actions_json
from crm_journeys.web.common.drafts import draft_errors
from crm_journeys.web.ui.builder import _context, _load, _save, new_id
from crm_journeys.web.ui.condition_form import parse_condition_tree as parse_condition_form
from crm_journeys.web.ui.forms import errors_under, parse_params, parse_value
from crm_journeys.web.ui.pages import ui

# --- steps ------------------------------------------------------------------------------

@ui.post("/journeys/<int:journey_id>/steps")
def add_step(journey_id: int) -> Any:
    kind = request.form.get("type", "")
    if kind not in STEP_FORMS:
        abort(400, "Choose a step type.")
    action = request.form.get("action") or "send_email"
    holder: dict[str, str] = {}

    def mutate(doc: dict[str, Any]) -> None:
        steps = doc.setdefault("steps", [])
        sid = new_id([st.get("id") for st in steps], request.form.get("label") or (action if kind == "action" else kind))
        step: dict[str, Any] = {"id": sid, "type": kind, "label": request.form.get("label", "")}
        step.update(_blank_step(kind, action))
        after = request.form.get("after")
        for other in steps:  # "add after X": X now leads here, and this leads where X led
            if other.get("id") == after and "next" in other:
                if "next" in step:
                    step["next"] = other.get("next")
                other["next"] = sid
        steps.append(step)
        if not doc.get("first_step"):
            doc["first_step"] = sid
        holder["id"] = sid

    _save(journey_id, mutate)
    return redirect(url_for("crm_journeys_ui.step", journey_id=journey_id, step_id=holder["id"]))


def _blank_step(kind: str, action: str) -> dict[str, Any]:
    yes_no: dict[str, Any] = {"branches": {"yes": None, "no": None}}
    blanks: dict[str, dict[str, Any]] = {
        "action": {"action": action, "params": {}, "next": None, "run_multiple_times": False},
        "wait": {"duration": "P1D", "next": None},
        "wait_until": {"time": "09:00", "next": None},
        "wait_and_check": {"duration": "P3D", "condition": None, **yes_no},
        "react_to_event": {"event": {"type": "email_opened", "key": None, "where": None}, "timeout": "P3D", **yes_no},
        "if_then": {"condition": None, "timeout": "P7D", **yes_no},
        "condition_split": {"condition": None, **yes_no},
        "multi_split": {"cases": [], "default": None},
        "random_split": {"paths": [{"name": "A", "percent": 50, "next": None}, {"name": "B", "percent": 50, "next": None}]},
        "jump": {"to": "", "max_times": 1, "next": None},
        "exit": {},
    }
    return blanks[kind]


def _step_index(doc: dict[str, Any], step_id: str) -> int:
    for i, st in enumerate(doc.get("steps") or []):
        if isinstance(st, dict) and st.get("id") == step_id:
            return i
    abort(404)


@ui.route("/journeys/<int:journey_id>/steps/<step_id>", methods=["GET", "POST"])
def step(journey_id: int, step_id: str) -> Any:
    p, journey = _load(journey_id)
    index = _step_index(journey.draft, step_id)
    current = journey.draft["steps"][index]
    action_specs = {a["name"]: a["params"] for a in actions_json()}
    shown = _email_panel(p, journey_id, step_id) if request.method == "POST" and request.form.get("email") else None
    if request.method == "POST" and not request.form.get("email"):
        if request.form.get("delete"):
            _save(journey_id, lambda doc: _delete_step(doc, step_id))
            flash(f"Step {step_id} deleted; connections to it now end the journey.")
            return redirect(url_for("crm_journeys_ui.builder", journey_id=journey_id))
        _save(journey_id, lambda doc: doc["steps"].__setitem__(index, read_step(current, request.form, action_specs)))
        flash("Step saved.")
        if request.form.get("action") and request.form.get("action") != current.get("action"):
            return redirect(url_for("crm_journeys_ui.step", journey_id=journey_id, step_id=step_id))
        return redirect(url_for("crm_journeys_ui.builder", journey_id=journey_id))
    return render_template("crm_journeys/step.html", **_context(p, journey), step=current, index=index,
                           form=STEP_FORMS.get(current.get("type", ""), {"fields": [], "label": "?"}),
                           action_specs=action_specs, actions=actions_json(), email_preview=shown,
                           local=errors_under(draft_errors(journey.draft), f"steps[{index}]"))


def _email_panel(principal: Any, journey_id: int, step_id: str) -> dict[str, Any] | None:
    """The step page's "Preview" and "Send a test to me" buttons (the saved step)."""
    from crm_journeys.auth.accounts import can
    from crm_journeys.web.common.email_preview import preview, test_send
    from crm_journeys.web.errors import ApiError

    raw = (request.form.get("contact_id") or "").strip()
    if raw and not raw.isdigit():
        flash("Contact id: a number, or empty for a sample contact.", "error")
        return None
    contact_id = int(raw) if raw else None
    try:
        if request.form.get("email") == "test":
            if not can(principal.role, "test"):
                abort(403)
            sent = test_send(principal, journey_id, step_id, contact_id, None)
            flash(f"Test email sent to {sent['sent_to']}.")
            return sent
        return preview(principal, journey_id, step_id, contact_id)
    except ApiError as exc:
        flash(exc.message, "error")
        return None


def _delete_step(doc: dict[str, Any], step_id: str) -> None:
    doc["steps"] = [st for st in doc.get("steps") or [] if st.get("id") != step_id]
    if doc.get("first_step") == step_id:
        doc["first_step"] = doc["steps"][0]["id"] if doc["steps"] else None
    for st in doc["steps"]:
        for key in ("next", "default"):
            if st.get(key) == step_id:
                st[key] = None
        for name, target in list((st.get("branches") or {}).items()):
            if target == step_id:
                st["branches"][name] = None
        for item in (st.get("cases") or []) + (st.get("paths") or []):
            if item.get("next") == step_id:
                item["next"] = None


def read_step(current: dict[str, Any], form: Any, action_specs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The step document from its posted form (fields as in ``catalog.STEP_FORMS``)."""
    step: dict[str, Any] = {"id": current["id"], "type": current["type"], "label": form.get("label", "")}
    for spec in STEP_FORMS[current["type"]]["fields"]:
        name, kind = spec["name"], spec["type"]
        if kind == "action_params":
            action = form.get("action") or current.get("action", "")
            if action == current.get("action"):
                value: Any = parse_params(action_specs.get(action, []), form, "params")
            else:  # a new action: keep what the new one understands, then show its form
                known = {p["name"] for p in action_specs.get(action, [])}
                value = {k: v for k, v in (current.get("params") or {}).items() if k in known}
        elif kind == "condition":
            value = parse_condition_form(form, name)
        elif kind == "step":
            value = form.get(name) or None
        elif kind == "cases":
            value = [{"name": form.get(f"cases.{i}.name", "").strip(), "condition": parse_condition_form(form, f"cases.{i}.condition"),
                      "next": form.get(f"cases.{i}.next") or None}
                     for i in range(int(form.get("cases.count", 0))) if form.get(f"cases.{i}.name", "").strip()]
        elif kind == "paths":
            value = [{"name": form.get(f"paths.{i}.name", "").strip(),
                      "percent": parse_value("integer", form.get(f"paths.{i}.percent")),
                      "next": form.get(f"paths.{i}.next") or None}
                     for i in range(int(form.get("paths.count", 0))) if form.get(f"paths.{i}.name", "").strip()]
        elif kind == "list":
            value = form.getlist(name)
        else:
            value = parse_value({"event_type": "text", "action": "text"}.get(kind, kind), form.get(name),
                                present=name in form)
        _put(step, name, value, required=spec["required"] or kind in ("step", "bool"))
    return step


def _put(doc: dict[str, Any], path: str, value: Any, *, required: bool) -> None:
    """Set ``a.b`` in ``doc``; optional empty values are left out (the document's defaults apply)."""
    head, _, rest = path.partition(".")
    if rest:
        _put(doc.setdefault(head, {}), rest, value, required=required)
        return
    if value is None and not required and head not in ("key", "where", "yes", "no"):
        return
    doc[head] = value
