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

from crm_journeys.connectors.base import CONTACT_OWNER
from crm_journeys.definition.triggers import CATALOG, GROUP_LABELS
from crm_journeys.services import queries
from crm_journeys.services.catalog import (
    ENTRY_POLICIES,
    OPERATORS,
    STEP_FORMS,
    actions_json,
    event_types,
)
from crm_journeys.services.saved_segments import segment_names
from crm_journeys.services.trigger_declarations import trigger_names
from crm_journeys.storage.models import Journey
from crm_journeys.web.access import ui_require
from crm_journeys.web.common.drafts import draft_errors, save_draft
from crm_journeys.web.state import state
from crm_journeys.web.ui.condition_form import EDITABLE_DEPTH, condition_tree
from crm_journeys.web.ui.condition_form import parse_condition_tree as parse_condition_form
from crm_journeys.web.ui.forms import (
    errors_under,
    field_errors,
    parse_params,
    parse_value,
    plain,
    show_value,
)
from crm_journeys.web.ui.pages import ui

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


def pickers(tenant_id: int) -> dict[str, list[str]]:
    """Values for the builder's pickers from the tenant's CRM (empty when it cannot say),
    plus the workspace's own saved segments and declared custom triggers."""
    out: dict[str, list[str]] = {}
    try:
        connector = state().runtime.connector_for(tenant_id)
        for name in ("tags", "groups", "fields", "emails", "products", "forms", "segments"):
            out[name] = list(connector.picker_values(name))
        # Owners by email where the CRM has one (publish turns it into the CRM's id).
        out["owners"] = [CONTACT_OWNER, *(o.email or o.id for o in connector.list_owners())]
    except Exception:  # a CRM that is down must not break the builder
        pass
    with state().db.unit_of_work() as s:
        out["segments"] = sorted(set(out.get("segments") or []) | set(segment_names(s, tenant_id)))
        out["custom_triggers"] = trigger_names(s, tenant_id)
    return out


def _context(p: Any, journey: Journey, **extra: Any) -> dict[str, Any]:
    document = journey.draft
    return {"journey": journey, "doc": document, "errors": draft_errors(document), "pickers": pickers(p.tenant_id),
            "step_ids": [st.get("id") for st in document.get("steps") or [] if isinstance(st, dict)],
            "configure": session.get(f"configure:{journey.id}", []), "operators": OPERATORS,
            "show_value": show_value, "field_errors": field_errors, "condition_tree": condition_tree, "errors_under": errors_under,
            "editable_depth": EDITABLE_DEPTH, "sms_count": sms_count,
            "step_forms": STEP_FORMS, "event_types": event_types(), **extra}


def sms_count(text: Any) -> dict[str, Any]:
    """The SMS field's count as the page first shows it (the script keeps it live)."""
    from crm_journeys.sms.segments import count_segments

    return count_segments(str(text or "")).to_json()


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
        elif m := re.match(r"(goals|exit_rules)\[(\d+)\]", path):
            where = f"{'Goal' if m.group(1) == 'goals' else 'Exit rule'} {int(m.group(2)) + 1}"
            url = url_for("crm_journeys_ui.rule", journey_id=journey.id, kind=m.group(1), index=int(m.group(2)))
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
