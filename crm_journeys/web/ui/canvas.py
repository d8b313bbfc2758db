"""The canvas editor's page (a shell the ES modules in ``static/canvas/`` fill in), and
duplicating a journey into a new draft to edit there.

The page carries only what the script needs to find the JSON API (journey id, API root,
the session's CSRF token) in ``data-*`` attributes; everything else (the journey document,
the catalogue, live counts, test runs, sandbox contacts) is fetched from the same API an
integrator uses, so the canvas writes the same document through the same validation.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, url_for

from crm_journeys.runtime.versions import create_journey
from crm_journeys.services import queries
from crm_journeys.web.access import ui_require
from crm_journeys.web.state import state
from crm_journeys.web.ui.pages import ui


@ui.get("/journeys/<int:journey_id>/canvas")
def canvas(journey_id: int) -> Any:
    p = ui_require("read")
    with state().db.unit_of_work() as s:
        journey = queries.journey(s, p.tenant_id, journey_id)
    return render_template("crm_journeys/canvas.html", journey=journey,
                           api_root=url_for("crm_journeys_api.get_catalog").rsplit("/", 1)[0])


@ui.post("/journeys/<int:journey_id>/duplicate")
def duplicate(journey_id: int) -> Any:
    """A new draft from a journey's draft (its versions, contacts and counts stay behind)."""
    p = ui_require("edit")
    with state().db.unit_of_work() as s:
        source = queries.journey(s, p.tenant_id, journey_id)
        document = dict(source.draft, name=f"Copy of {source.name}"[:200])
        copy = create_journey(s, p.tenant_id, document, state().runtime.clock.now())
    flash(f"“{document['name']}” is a new draft: change what you need, then publish it.")
    return redirect(url_for("crm_journeys_ui.canvas", journey_id=copy.id))
