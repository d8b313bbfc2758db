"""The REST API end to end on a real app: journeys, lifecycle, versions, test mode, access."""

from __future__ import annotations

import time

from tests.web_fixtures import welcome_doc


def test_crud_and_lifecycle(as_, app):
    api = as_("acme_editor")
    created = api.post("/journeys", json={"document": welcome_doc()})
    assert created.status_code == 201, created.json
    jid = created.json["id"]
    assert created.json["status"] == "draft" and created.json["draft_errors"] == {}
    assert [j["id"] for j in api.get("/journeys").json] == [jid]
    doc = welcome_doc()
    doc["name"] = "Renamed"
    assert api.put(f"/journeys/{jid}", json={"document": doc}).json["name"] == "Renamed"
    published = api.post(f"/journeys/{jid}/publish", json={})
    assert published.status_code == 200 and published.json["status"] == "live" and published.json["version"] == 1
    assert api.post(f"/journeys/{jid}/pause").json["status"] == "paused"
    assert api.post(f"/journeys/{jid}/pause").status_code == 409
    assert api.post(f"/journeys/{jid}/resume").json["status"] == "live"
    assert api.delete(f"/journeys/{jid}").status_code == 409
    assert api.post(f"/journeys/{jid}/archive").json["status"] == "archived"
    assert api.delete(f"/journeys/{jid}").status_code == 200
    assert api.get(f"/journeys/{jid}").status_code == 404


def test_versions_and_diff(as_):
    api = as_("acme_editor")
    jid = api.post("/journeys", json={"document": welcome_doc()}).json["id"]
    api.post(f"/journeys/{jid}/publish", json={})
    doc = welcome_doc()
    doc["steps"][0]["params"]["subject"] = "Hello!"
    api.put(f"/journeys/{jid}", json={"document": doc})
    assert api.get(f"/journeys/{jid}").json["unpublished_changes"] is True
    second = api.post(f"/journeys/{jid}/publish", json={"migration": {"opened_welcome": "opened_welcome"}})
    assert second.json["version"] == 2
    versions = api.get(f"/journeys/{jid}/versions").json
    assert [v["version"] for v in versions] == [2, 1] and [v["active"] for v in versions] == [True, False]
    assert api.get(f"/journeys/{jid}/versions/1").json["document"]["steps"][0]["params"]["subject"].startswith("Welcome")
    changes = api.get(f"/journeys/{jid}/diff?from=1&to=2").json["changes"]
    assert changes == [{"path": "steps[welcome].params.subject", "change": "changed",
                        "before": "Welcome, {{ contact.first_name }}!", "after": "Hello!"}]
    assert api.get(f"/journeys/{jid}/diff?from=2").json["changes"] == []
    assert api.get(f"/journeys/{jid}/diff?from=9").status_code == 404
    assert api.get(f"/journeys/{jid}/diff").json["errors"] == {"query.from": ["Missing data for required field."]}


def test_publish_invalid_draft_reports_paths(as_):
    api = as_("acme_editor")
    created = api.post("/journeys", json={"template": "welcome_promo"})
    assert created.json["draft_errors"] == {"steps[2].params.body": ["Shorter than minimum length 1."]}
    failed = api.post(f"/journeys/{created.json['id']}/publish", json={})
    assert failed.status_code == 422
    assert failed.json == {"code": "invalid_journey", "status": 422, "message": "The journey is not valid yet.",
                           "errors": {"steps[2].params.body": ["Shorter than minimum length 1."]}}


def test_templates_and_catalog(as_):
    api = as_("acme_viewer")
    ids = [t["id"] for t in api.get("/templates").json]
    assert ids == ["welcome_promo", "post_sale_followup", "abandoned_cart", "birthday", "lead_nurture"]
    catalog = api.get("/catalog").json
    assert {"starting_points", "steps", "actions", "operators", "events"} <= set(catalog)
    assert "signup" in [t["name"] for g in catalog["starting_points"] for t in g["types"]]
    assert {a["name"] for a in catalog["actions"]} >= {"send_email", "create_task", "create_lead"}
    assert "has_tag" in [o["op"] for o in catalog["operators"]["tags"]]


def test_strict_input_and_one_error_body(as_):
    api = as_("acme_editor")
    bad = api.post("/journeys", json={"document": {}, "colour": "red"})
    assert bad.status_code == 422
    assert bad.json["code"] == "invalid_request" and bad.json["errors"] == {"colour": ["Unknown field."]}
    assert api.post("/journeys", data="{nope", content_type="application/json").json["code"] == "bad_json"
    missing = api.get("/nowhere")
    assert missing.status_code == 404 and set(missing.json) == {"code", "status", "message", "errors"}
    assert api.delete("/catalog").status_code == 405
    unauth = api.client.get("/api/journeys")
    assert unauth.status_code == 401 and unauth.json["code"] == "unauthorized"
    assert api.client.get("/api/journeys", headers={"Authorization": "Bearer cjt_wrong"}).status_code == 401


def test_viewer_cannot_publish_or_edit(as_):
    editor, viewer = as_("acme_editor"), as_("acme_viewer")
    jid = editor.post("/journeys", json={"document": welcome_doc()}).json["id"]
    denied = viewer.post(f"/journeys/{jid}/publish", json={})
    assert denied.status_code == 403 and denied.json["code"] == "forbidden"
    assert viewer.put(f"/journeys/{jid}", json={"document": welcome_doc()}).status_code == 403
    assert viewer.post("/journeys", json={}).status_code == 403
    assert viewer.get(f"/journeys/{jid}").json["trigger_secret"] is None
    assert viewer.get(f"/journeys/{jid}").status_code == 200


def test_editor_cannot_touch_another_tenants_journeys(as_):
    acme, globex = as_("acme_editor"), as_("globex_editor")
    jid = acme.post("/journeys", json={"document": welcome_doc()}).json["id"]
    for call in (lambda: globex.get(f"/journeys/{jid}"), lambda: globex.put(f"/journeys/{jid}", json={"document": {}}),
                 lambda: globex.post(f"/journeys/{jid}/publish", json={}), lambda: globex.delete(f"/journeys/{jid}"),
                 lambda: globex.get(f"/journeys/{jid}/analytics"), lambda: globex.get(f"/journeys/{jid}/versions"),
                 lambda: globex.post(f"/journeys/{jid}/simulate", json={"contact": {"email": "a@b.example"}})):
        assert call().status_code == 404
    assert globex.get("/journeys").json == []
    assert acme.get(f"/journeys/{jid}").status_code == 200


def test_simulate_walks_one_contact(as_):
    api = as_("acme_editor")
    jid = api.post("/journeys", json={"document": welcome_doc()}).json["id"]
    result = api.post(f"/journeys/{jid}/simulate", json={
        "contact": {"email": "ada@example.com", "first_name": "Ada"},
        "events": [{"after": "P1D", "type": "email_opened", "key": "welcome"}], "horizon": "P5D"})
    assert result.status_code == 200, result.json
    body = result.json
    assert body["status"] == "completed"
    branch = [t for t in body["timeline"] if t["kind"] == "branch"]
    assert [(b["step"], b["branch"]) for b in branch] == [("opened_welcome", "yes")]
    assert branch[0]["why"] and branch[0]["rule"]
    assert [r["data"]["subject"] for r in body["records"] if r["kind"] == "email"] == \
        ["Welcome, Ada!", "10% off your first order"]
    assert api.get("/sandbox/records").json == []  # nothing reached the tenant's CRM


def test_backtest_replays_recorded_events(as_, app, clock):
    api = as_("acme_editor")
    for n in range(3):
        api.post("/events", json={"type": "subscribed", "key": "newsletter", "contact": {"email": f"c{n}@example.com"}})
    jid = api.post("/journeys", json={"document": welcome_doc()}).json["id"]
    from datetime import timedelta
    clock.advance(timedelta(days=1))
    job = api.post(f"/journeys/{jid}/backtest", json={"days": 7})
    assert job.status_code == 202
    for _ in range(200):
        polled = api.get(f"/journeys/{jid}/backtests/{job.json['id']}").json
        if polled["status"] != "running":
            break
        time.sleep(0.05)
    assert polled["status"] == "done", polled
    assert polled["progress"] == 1.0 and polled["total"] == 3
    assert polled["result"]["entered"] == 3 and polled["result"]["records"] == {"email": 3}
    assert as_("globex_editor").get(f"/journeys/{jid}/backtests/{job.json['id']}").status_code == 404
