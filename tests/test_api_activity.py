# ruff: noqa: F811  -- pytest fixtures imported from test_api_journeys are redefined as arguments
"""Events in, the journey trigger, contacts, instances, analytics and the OpenAPI document."""

from __future__ import annotations

from datetime import timedelta

from openapi_spec_validator import validate

from crm_journeys.runtime.worker import advance_to
from crm_journeys.web.api.openapi import openapi_path
from tests.web_fixtures import drain, welcome_doc


def _live_welcome(api):
    jid = api.post("/journeys", json={"document": welcome_doc()}).json["id"]
    assert api.post(f"/journeys/{jid}/publish", json={}).status_code == 200
    return jid


def test_events_api_runs_a_journey_and_feeds_analytics(as_, app, clock):
    api = as_("acme_editor")
    jid = _live_welcome(api)
    sent = api.post("/events", json={"type": "subscribed", "contact": {"email": "ada@example.com"},
                                     "properties": {"list": "newsletter"}, "id": "evt-1"})
    assert sent.status_code == 202 and sent.json == {"accepted": True, "duplicate": False, "type": "subscribed",
                                                     "key": "newsletter"}
    again = api.post("/events", json={"type": "subscribed", "contact": {"email": "ada@example.com"},
                                      "properties": {"list": "newsletter"}, "id": "evt-1"})
    assert again.json["duplicate"] is True
    drain(app)
    instances = api.get(f"/journeys/{jid}/instances").json
    assert [(i["contact_email"], i["status"], i["step"]) for i in instances] == \
        [("ada@example.com", "active", "opened_welcome")]
    summary = api.get("/journeys").json[0]
    assert summary["counts"]["entered"] == 1 and summary["counts"]["waiting"] == 1 and summary["version"] == 1

    runtime = app.extensions["crm_journeys"].runtime
    from crm_journeys.runtime.worker import Worker
    advance_to(Worker(runtime), clock, clock.now() + timedelta(days=3, minutes=1))
    stats = api.get(f"/journeys/{jid}/analytics").json
    assert stats["counts"]["completed"] == 1
    by_step = {s["id"]: s for s in stats["steps"]}
    assert by_step["opened_welcome"]["branches"] == {"no": 1}
    assert by_step["opened_welcome"]["lateness_p50_ms"] == 0 and by_step["reminder"]["entered"] == 1
    funnel = [(f["label"], f["count"], f["depth"], f["branch"]) for f in stats["funnel"]]
    assert funnel[0] == ("Entered", 1, 0, None)
    assert funnel == [("Entered", 1, 0, None), ("Send the welcome email", 1, 1, None),
                      ("Opened the welcome email? (check after 3 days)", 1, 1, None),
                      ("yes", 0, 2, "yes"), ("Send the first-purchase promo code", 0, 3, None),
                      ("no", 1, 2, "no"), ("Other path: send a reminder", 1, 3, None),
                      ("Completed", 1, 0, None), ("Goal reached", 0, 0, None)]

    detail = api.get(f"/instances/{instances[0]['id']}").json
    branch = next(t for t in detail["timeline"] if t["kind"] == "branch")
    assert branch["branch"] == "no" and "condition false" in branch["why"]
    contacts = api.get("/contacts?email=ada@example.com").json
    assert [c["email"] for c in contacts] == ["ada@example.com"]
    contact = api.get(f"/contacts/{contacts[0]['id']}").json
    assert contact["instances"][0]["journey_id"] == jid and contact["timeline"]
    emails = api.get("/sandbox/records?kind=email").json
    assert [e["data"]["subject"] for e in emails] == ["Did you miss our welcome?", "Welcome, !"]
    assert as_("globex_admin").get(f"/contacts/{contacts[0]['id']}").status_code == 404
    assert as_("globex_admin").get(f"/instances/{instances[0]['id']}").status_code == 404
    assert as_("globex_admin").get("/sandbox/records").json == []


def test_custom_event_by_name_and_validation(as_):
    api = as_("acme_editor")
    ok = api.post("/events", json={"name": "webinar_joined", "contact": {"id": "42"}, "properties": {"room": "a"}})
    assert ok.json["type"] == "custom_event" and ok.json["key"] == "webinar_joined"
    both = api.post("/events", json={"name": "x", "type": "purchase", "contact": {"id": "42"}})
    assert both.status_code == 422 and "type" in both.json["errors"]
    nobody = api.post("/events", json={"name": "x", "contact": {}})
    assert nobody.json["errors"] == {"contact.email": ["identify the contact by email or id"]}
    unknown = api.post("/events", json={"type": "teleported", "contact": {"id": "1"}})
    assert unknown.status_code == 422 and "teleported" in unknown.json["errors"]["type"][0]
    assert as_("acme_viewer").post("/events", json={"name": "x", "contact": {"id": "1"}}).status_code == 403


def test_journey_trigger_needs_its_secret(as_, app):
    api = as_("acme_editor")
    doc = welcome_doc()
    doc["starting_points"] = [{"id": "api", "type": "journey_api", "params": {}, "filter": None, "next": None}]
    jid = api.post("/journeys", json={"document": doc}).json["id"]
    journey = api.post(f"/journeys/{jid}/publish", json={}).json
    client = api.client
    denied = client.post(journey["trigger_path"], json={"contact": {"email": "t@example.com"}},
                         headers={"X-Journey-Secret": "wrong"})
    assert denied.status_code == 401 and denied.json["code"] == "unauthorized"
    ok = client.post(journey["trigger_path"], json={"contact": {"email": "t@example.com"}, "payload": {"a": 1}},
                     headers={"X-Journey-Secret": journey["trigger_secret"]})
    assert ok.status_code == 202 and ok.json["type"] == "journey_api_call" and ok.json["key"] == str(jid)
    drain(app)
    assert [i["contact_email"] for i in api.get(f"/journeys/{jid}/instances").json] == ["t@example.com"]


def test_openapi_document_is_valid_and_matches_routes(app, as_):
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json
    validate(document)
    routes = {(openapi_path(r.rule), m.lower()) for r in app.url_map.iter_rules() if r.rule.startswith("/api/")
              for m in r.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert routes == documented
    assert document["components"]["schemas"]["ErrorOut"]["required"] == ["code", "status", "message", "errors"]


def test_session_api_calls_need_csrf(app):
    client = app.test_client()
    login = client.get("/login")
    assert login.status_code == 200
    token = _csrf(login.text)
    client.post("/login", data={"email": "editor@acme.example", "password": "password-123", "csrf_token": token})
    assert client.get("/api/journeys").status_code == 200
    assert client.post("/api/journeys", json={}).json["code"] == "csrf_failed"
    assert client.post("/api/journeys", json={}, headers={"X-CSRF-Token": token}).status_code == 403  # rotated
    token = _csrf(client.get("/journeys").text)
    assert client.post("/api/journeys", json={}, headers={"X-CSRF-Token": token}).status_code == 201


def _csrf(html: str) -> str:
    import re

    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
