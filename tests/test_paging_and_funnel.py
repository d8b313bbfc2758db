# ruff: noqa: F811  -- pytest fixtures imported from test_api_journeys are redefined as arguments
"""Pages with totals on the long lists (API and UI), and the funnel along the branches."""

from __future__ import annotations

from crm_journeys.services.funnel import funnel
from tests.test_web_ui import sign_in
from tests.web_fixtures import drain, welcome_doc


def test_journeys_contacts_and_instances_come_in_pages_with_totals(as_, app):
    api = as_("acme_editor")
    ids = [api.post("/journeys", json={"document": {**welcome_doc(), "name": f"J{n}"}}).json["id"] for n in range(5)]
    first = api.get("/journeys?page=1&per_page=2")
    assert [j["id"] for j in first.json] == ids[:2]
    assert (first.headers["X-Total-Count"], first.headers["X-Page"], first.headers["X-Per-Page"]) == ("5", "1", "2")
    assert [j["id"] for j in api.get("/journeys?page=3&per_page=2").json] == ids[4:]
    assert api.get("/journeys?page=9&per_page=2").json == []
    assert api.get("/journeys?page=0").json["errors"] == {"query.page": ["Must be greater than or equal to 1."]}
    assert as_("globex_editor").get("/journeys?per_page=2").headers["X-Total-Count"] == "0"

    jid = ids[0]
    api.post(f"/journeys/{jid}/publish", json={})
    for n in range(3):
        api.post("/events", json={"type": "subscribed", "key": "newsletter", "contact": {"email": f"c{n}@example.com"}})
    drain(app)
    page = api.get(f"/journeys/{jid}/instances?page=2&per_page=2")
    assert len(page.json) == 1 and page.headers["X-Total-Count"] == "3"
    assert api.get(f"/journeys/{jid}/instances?status=completed").headers["X-Total-Count"] == "0"
    contacts = api.get("/contacts?per_page=2")
    assert len(contacts.json) == 2 and contacts.headers["X-Total-Count"] == "3"
    assert len(api.get("/contacts?limit=1&offset=2").json) == 1  # the older form still works
    doc = api.client.get("/api/openapi.json").json
    headers = doc["paths"]["/api/journeys"]["get"]["responses"]["200"]["headers"]
    assert set(headers) == {"X-Total-Count", "X-Page", "X-Per-Page"}


def test_ui_lists_have_pagers(as_, app):
    api = as_("acme_editor")
    for n in range(27):
        api.post("/journeys", json={"document": {**welcome_doc(), "name": f"Journey {n:02d}"}})
    editor = sign_in(app, "editor@acme.example")
    first = editor.get("/journeys").text
    assert "Journey 24" in first and "Journey 25" not in first and "Page 1 of 2 (27 journeys)" in first
    second = editor.get("/journeys?page=2").text
    assert "Journey 25" in second and "Journey 00" not in second and 'rel="prev" href="/journeys?page=1"' in second
    assert "Page 2 of 2" in editor.get("/journeys?page=99").text
    assert "0 contacts" in editor.get("/contacts").text


SPLITS = {
    "first_step": "split", "starting_points": [{"id": "sp", "type": "signup", "next": "side"}],
    "goals": [],
    "steps": [
        {"id": "split", "type": "multi_split", "cases": [{"name": "de", "next": "tag"}, {"name": "fr", "next": "ab"}],
         "default": None},
        {"id": "tag", "type": "action", "label": "Tag", "next": "ab"},
        {"id": "ab", "type": "random_split", "paths": [{"name": "A", "next": None}, {"name": "B", "next": "tag"}]},
        {"id": "side", "type": "wait", "next": None},
    ],
}


def test_funnel_follows_cases_paths_and_rejoins():
    per_step = {"split": {"entered": 10, "branches": {"de": 6, "fr": 3, "default": 1}}, "tag": {"entered": 6},
                "ab": {"entered": 9, "branches": {"A": 5, "B": 4}}, "side": {"entered": 2}}
    rows = [(r["label"], r["count"], r["depth"]) for r in
            funnel(SPLITS, per_step, {"entered": 12, "completed": 7, "goal_reached": 0})]
    assert rows == [("Entered", 12, 0), ("split", 10, 1),
                    ("de", 6, 2), ("Tag", 6, 3), ("ab", 9, 3), ("A → end", 5, 4), ("B → joins tag", 4, 4),
                    ("fr → joins ab", 3, 2), ("default → end", 1, 2),
                    ("side", 2, 1), ("Completed", 7, 0)]
