"""The journey builder's editing views: settings, starting points, entry filter, steps,
goals and exit rules, each with its own form rendered from the catalogue.

Saving a form only rewrites the draft (drafts may be incomplete); the draft's validation
errors are shown next to the fields they concern on every page, and publishing refuses
until none is left.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from flask import abort, flash, redirect, render_template, request, session, url_for

from crm_journeys.definition.triggers import CATALOG, GROUP_LABELS
from crm_journeys.extension import state
from crm_journeys.storage.models import Journey
from crm_journeys.web import queries
from crm_journeys.web.access import ui_require
from crm_journeys.web.api_journeys import draft_errors, save_draft
from crm_journeys.web.catalog import (
    ENTRY_POLICIES,
    OPERATORS,
    STEP_FORMS,
    actions_json,
    event_types,
)
from crm_journeys.web.forms import (
    condition_groups,
    errors_under,
    field_errors,
    parse_condition_form,
    parse_params,
    parse_value,
    plain,
    show_value,
)
from crm_journeys.web.ui import ui

_ID = re.compile(r"[^a-z0-9_]+")


def _load(journey_id: int, permission: str = "read") -> tuple[Any, Journey]:
    p = ui_require(permission)
    with state().db.unit_of_work() as s:
        return p, queries.journey(s, p.tenant_id, journey_id)


def _save(journey_id: int, mutate: Any) -> None:
    p = ui_require("edit")
    with state().db.unit_of_work() as s:
        journey = queries.journey(s, p.tenant_id, journey_id)
        document = copy.deepcopy(journey.draft)
        mutate(document)
        save_draft(journey, document, state().runtime.clock.now())


def _pickers(tenant_id: int) -> dict[str, list[str]]:
    """Values for the builder's pickers from the tenant's CRM (empty when it cannot say)."""
    out: dict[str, list[str]] = {}
    try:
        connector = state().runtime.connector_for(tenant_id)
        for name in ("tags", "groups", "fields", "owners", "emails", "products", "forms", "segments"):
            out[name] = list(connector.picker_values(name))
    except Exception:  # a CRM that is down must not break the builder
        pass
    return out


def _context(p: Any, journey: Journey, **extra: Any) -> dict[str, Any]:
    document = journey.draft
    return {"journey": journey, "doc": document, "errors": draft_errors(document), "pickers": _pickers(p.tenant_id),
            "step_ids": [st.get("id") for st in document.get("steps") or [] if isinstance(st, dict)],
            "configure": session.get(f"configure:{journey.id}", []), "operators": OPERATORS,
            "show_value": show_value, "field_errors": field_errors, "condition_groups": condition_groups, "errors_under": errors_under,
            "step_forms": STEP_FORMS, "event_types": event_types(), **extra}


def problems(journey: Journey, errors: dict[str, list[str]]) -> list[dict[str, str]]:
    """Each validation error with where it is, in words, and the form that fixes it."""
    doc, out = journey.draft, []
    steps = [st for st in doc.get("steps") or [] if isinstance(st, dict)]
    for path, msgs in errors.items():
        where, url = "Journey settings", url_for("crm_journeys_ui.builder", journey_id=journey.id) + "#settings"
        if m := re.match(r"steps\[(\d+)\](.*)", path):
            i = int(m.group(1))
            sid = steps[i].get("id", "?") if i < len(steps) else "?"
            where = f"Step '{steps[i].get('label') or sid}'" if i < len(steps) else f"Step {i + 1}"
            url = url_for("crm_journeys_ui.step", journey_id=journey.id, step_id=sid)
        elif m := re.match(r"starting_points\[(\d+)\]", path):
            where = f"Starting point {int(m.group(1)) + 1}"
            url = url_for("crm_journeys_ui.starting_point", journey_id=journey.id, index=int(m.group(1)))
        elif path.startswith("entry_filter"):
            where, url = "Entry filter", url_for("crm_journeys_ui.entry_filter", journey_id=journey.id)
        elif path.startswith(("goals", "exit_rules")):
            where, url = "Goals and exit rules", url_for("crm_journeys_ui.builder", journey_id=journey.id) + "#goals"
        field = path.rsplit(".", 1)[-1] if "." in path else path
        for msg in msgs:
            out.append({"where": where, "field": field.replace("_", " "), "message": plain(msg), "url": url})
    return out


def new_id(existing: list[str], wanted: str) -> str:
    base = _ID.sub("_", wanted.lower()).strip("_")[:60] or "step"
    candidate, n = base, 2
    while candidate in existing:
        candidate, n = f"{base}_{n}", n + 1
    return candidate


# --- overview and settings --------------------------------------------------------------

@ui.get("/journeys/<int:journey_id>")
def builder(journey_id: int) -> Any:
    p, journey = _load(journey_id)
    with state().db.unit_of_work() as s:
        counts = queries.counts(s, p.tenant_id, [journey_id])[journey_id]
        live_steps: list[str] = []
        if journey.live_version_id:
            from crm_journeys.storage.models import JourneyVersion

            live = s.get(JourneyVersion, journey.live_version_id)
            live_steps = [st["id"] for st in (live.document if live else {}).get("steps", [])]
    groups = [(label, [t for t in CATALOG.values() if t.group == g]) for g, label in GROUP_LABELS.items()]
    context = _context(p, journey)
    return render_template("crm_journeys/builder.html", **context, counts=counts, trigger_groups=groups,
                           problems=problems(journey, context["errors"]),
                           actions=actions_json(), entry_policies=ENTRY_POLICIES, live_steps=live_steps,
                           catalog=CATALOG)


@ui.post("/journeys/<int:journey_id>/settings")
def save_settings(journey_id: int) -> Any:
    form = request.form

    def mutate(doc: dict[str, Any]) -> None:
        doc["name"] = form.get("name", "").strip()
        doc["description"] = form.get("description", "")
        entry: dict[str, Any] = {"policy": form.get("policy", "once")}
        if entry["policy"] == "cooldown":
            entry["cooldown"] = form.get("cooldown", "").strip()
        if entry["policy"] == "max_times":
            entry["max_entries"] = parse_value("integer", form.get("max_entries"))
        doc["entry"] = entry
        doc["settings"] = {"interaction_triggers_start": "interaction_triggers_start" in form,
                           "time_zone": form.get("time_zone", "UTC").strip() or "UTC"}
        doc["first_step"] = form.get("first_step") or None

    _save(journey_id, mutate)
    flash("Settings saved.")
    return redirect(url_for("crm_journeys_ui.builder", journey_id=journey_id))


# --- starting points and entry filter ---------------------------------------------------

@ui.post("/journeys/<int:journey_id>/starting-points")
def add_starting_point(journey_id: int) -> Any:
    kind = request.form.get("type", "")
    if kind not in CATALOG:
        abort(400, "Choose a starting point type.")
    holder: dict[str, int] = {}

    def mutate(doc: dict[str, Any]) -> None:
        points = doc.setdefault("starting_points", [])
        existing = [sp.get("id") for sp in points]
        points.append({"id": new_id(existing, kind), "type": kind, "params": {}, "filter": None, "next": None})
        holder["index"] = len(points) - 1

    _save(journey_id, mutate)
    return redirect(url_for("crm_journeys_ui.starting_point", journey_id=journey_id, index=holder["index"]))


@ui.route("/journeys/<int:journey_id>/starting-points/<int:index>", methods=["GET", "POST"])
def starting_point(journey_id: int, index: int) -> Any:
    p, journey = _load(journey_id)
    points = journey.draft.get("starting_points") or []
    if index >= len(points):
        abort(404)
    kind = CATALOG.get(points[index].get("type", ""))
    specs = [param.to_json() for param in kind.params] if kind else []
    if request.method == "POST":
        form = request.form
        if form.get("delete"):
            _save(journey_id, lambda doc: doc["starting_points"].pop(index))
            return redirect(url_for("crm_journeys_ui.builder", journey_id=journey_id))

        def mutate(doc: dict[str, Any]) -> None:
            sp = doc["starting_points"][index]
            sp["params"] = parse_params(specs, form, "params")
            sp["filter"] = parse_condition_form(form, "filter")
            sp["next"] = form.get("next") or None

        _save(journey_id, mutate)
        flash("Starting point saved.")
        return redirect(url_for("crm_journeys_ui.builder", journey_id=journey_id))
    prefix = f"starting_points[{index}]"
    return render_template("crm_journeys/starting_point.html", **_context(p, journey), sp=points[index], index=index,
                           kind=kind, specs=specs, local=errors_under(draft_errors(journey.draft), prefix))


@ui.route("/journeys/<int:journey_id>/entry-filter", methods=["GET", "POST"])
def entry_filter(journey_id: int) -> Any:
    p, journey = _load(journey_id)
    if request.method == "POST":
        _save(journey_id, lambda doc: doc.__setitem__("entry_filter", parse_condition_form(request.form, "entry_filter")))
        flash("Entry filter saved.")
        return redirect(url_for("crm_journeys_ui.builder", journey_id=journey_id))
    return render_template("crm_journeys/entry_filter.html", **_context(p, journey),
                           local=errors_under(draft_errors(journey.draft), "entry_filter"))


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
    if request.method == "POST":
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
                           action_specs=action_specs, actions=actions_json(),
                           local=errors_under(draft_errors(journey.draft), f"steps[{index}]"))


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


# --- goals and exit rules ---------------------------------------------------------------

@ui.post("/journeys/<int:journey_id>/<any(goals, exit_rules):kind>")
def add_rule(journey_id: int, kind: str) -> Any:
    form = request.form

    def mutate(doc: dict[str, Any]) -> None:
        items = doc.setdefault(kind, [])
        label = form.get("label", "").strip()
        rule: dict[str, Any] = {"id": new_id([i.get("id") for i in items], label or form.get("type", kind)),
                                "condition": None,
                                "event": {"type": form.get("type", ""), "key": form.get("key") or None, "where": None}}
        if kind == "goals":
            rule.update(label=label, then=None)
        items.append(rule)

    _save(journey_id, mutate)
    return redirect(url_for("crm_journeys_ui.builder", journey_id=journey_id) + "#goals")


@ui.post("/journeys/<int:journey_id>/<any(goals, exit_rules):kind>/<int:index>/delete")
def delete_rule(journey_id: int, kind: str, index: int) -> Any:
    _save(journey_id, lambda doc: (doc.get(kind) or []).pop(index) if index < len(doc.get(kind) or []) else None)
    return redirect(url_for("crm_journeys_ui.builder", journey_id=journey_id) + "#goals")

