"""Action errors over the REST API and on the admin page: failed actions listed with why,
filtered and paged; retry and dismiss of one, of many, of all matching a filter; refusals
that say why; another tenant's rows out of reach. Real SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest

from crm_journeys.errors import FatalConnectorError, RetriableConnectorError
from tests.refusing_host import LEAD_JOURNEY, RefusingHost, missing_property
from tests.test_web_ui import sign_in
from tests.web_fixtures import drain


@pytest.fixture
def host(monkeypatch) -> RefusingHost:
    return RefusingHost(monkeypatch)


def live_lead_journey(api) -> int:
    jid = api.post("/journeys", json={"document": LEAD_JOURNEY}).json["id"]
    assert api.post(f"/journeys/{jid}/publish", json={}).status_code == 200
    return jid


def submit(app, api, host, email, failure) -> None:
    """A form submission whose lead the host answers with ``failure`` (None: accepted)."""
    host.failure = failure
    assert api.post("/events", json={"type": "form_submitted", "key": "demo",
                                     "contact": {"email": email}}).status_code == 202
    drain(app)
    host.failure = None


def failed_rows(app, as_, host) -> tuple[int, dict, dict]:
    """Ada's lead is dead (a required property is missing), Bob's is retrying (503)."""
    api = as_("acme_admin")
    jid = live_lead_journey(api)
    submit(app, api, host, "ada@example.com", missing_property())
    submit(app, api, host, "bob@example.com", RetriableConnectorError("503 Service Unavailable"))
    rows = {r["contact_email"]: r for r in api.get("/action-errors").json}
    return jid, rows["ada@example.com"], rows["bob@example.com"]


def test_failed_actions_are_listed_with_why_and_a_retry_is_sent_once(app, as_, host, clock):
    jid, ada, bob = failed_rows(app, as_, host)
    api = as_("acme_admin")
    listed = api.get("/action-errors")
    assert listed.headers["X-Total-Count"] == "2" and [r["id"] for r in listed.json] == [bob["id"], ada["id"]]
    assert (ada["status"], ada["attempts"], ada["action"], ada["step"], ada["journey_id"], ada["journey_name"]) == \
        ("dead", 1, "create_lead", "lead", jid, "Lead on form")
    assert "REQUIRED_FIELD" in ada["last_error"] and ada["params"] == {"title": "Demo request"}
    assert (bob["status"], bob["attempts"], bob["last_error"]) == ("retrying", 1, "503 Service Unavailable")
    assert bob["next_attempt_at"] > clock.now().isoformat()
    assert [r["id"] for r in api.get("/action-errors?status=dead").json] == [ada["id"]]
    assert [r["id"] for r in api.get("/action-errors?status=retrying").json] == [bob["id"]]
    assert len(api.get(f"/action-errors?journey_id={jid}&action=create_lead").json) == 2
    assert api.get(f"/action-errors?journey_id={jid + 1}").json == []
    assert api.get("/action-errors?action=create_task").json == []
    second = api.get("/action-errors?per_page=1&page=2")
    assert [r["id"] for r in second.json] == [ada["id"]] and second.headers["X-Page"] == "2"
    wrong = api.get("/action-errors?status=done")
    assert wrong.status_code == 422 and set(wrong.json) == {"code", "status", "message", "errors"}
    assert list(wrong.json["errors"]) == ["query.status"]

    retried = api.post(f"/action-errors/{ada['id']}/retry")
    assert retried.status_code == 200
    assert (retried.json["status"], retried.json["attempts"]) == ("pending", 0)
    assert "REQUIRED_FIELD" in retried.json["last_error"]  # kept until the next failure
    drain(app)
    assert api.get(f"/action-errors/{ada['id']}").json["status"] == "done"
    assert [r["data"]["title"] for r in api.get("/sandbox/records?kind=lead").json] == ["Demo request"]
    again = api.post(f"/action-errors/{ada['id']}/retry")
    assert again.status_code == 409 and again.json["code"] == "not_dead"
    assert again.json["message"] == f"Action {ada['id']} cannot be retried: it was already carried out, and is never sent twice."
    busy = api.post(f"/action-errors/{bob['id']}/dismiss")
    assert busy.status_code == 409 and "still being retried (next attempt" in busy.json["message"]
    assert api.post("/action-errors/987654/retry").status_code == 404
    drain(app)
    assert len(api.get("/sandbox/records?kind=lead").json) == 1

    timeline = api.get(f"/contacts/{ada['contact_id']}").json["timeline"]
    [entry] = [t for t in timeline if t["kind"] == "action retried"]
    assert entry["step"] == "lead" and entry["why"].startswith("create_lead retried by token admin token after 1 failed")
    assert "REQUIRED_FIELD" in entry["why"]


def test_many_at_once_by_ids_and_by_filter(app, as_, host):
    api = as_("acme_admin")
    jid = live_lead_journey(api)
    for name in ("ann", "ben", "cat", "dan"):
        submit(app, api, host, f"{name}@example.com", missing_property())
    ids = sorted(r["id"] for r in api.get("/action-errors?status=dead").json)
    dismissed = api.post("/action-errors/dismiss", json={"ids": [ids[0], 999999]})
    assert dismissed.status_code == 200
    assert dismissed.json == {"changed": [ids[0]], "count": 1,
                              "refused": {"999999": "Action 999999 cannot be dismissed: there is no such action."}}
    assert api.get(f"/action-errors/{ids[0]}").json["status"] == "dismissed"
    assert api.post("/action-errors/retry", json={"all_matching": True, "journey_id": jid + 1}).json["count"] == 0
    assert api.post("/action-errors/retry", json={"all_matching": True, "action": "create_task"}).json["count"] == 0
    retried = api.post("/action-errors/retry", json={"all_matching": True, "journey_id": jid, "action": "create_lead"})
    assert retried.json == {"changed": ids[1:], "count": 3, "refused": {}}
    refused = api.post("/action-errors/retry", json={"ids": [ids[0]]}).json["refused"]
    assert refused == {str(ids[0]): f"Action {ids[0]} cannot be retried: it was dismissed, and is never sent."}
    drain(app)
    assert len(api.get("/sandbox/records?kind=lead").json) == 3
    assert api.get("/action-errors").json == []
    for body in ({}, {"ids": [1], "all_matching": True}, {"ids": [1], "journey_id": jid},
                 {"all_matching": True, "status": "retrying"}, {"ids": []}, {"ids": [1], "extra": 1}):
        answer = api.post("/action-errors/retry", json=body)
        assert answer.status_code == 422 and answer.json["code"] == "invalid_request", body


def test_another_tenants_failed_actions_are_out_of_reach(app, as_, host):
    _, ada, _ = failed_rows(app, as_, host)
    globex = as_("globex_admin")
    listed = globex.get("/action-errors")
    assert listed.json == [] and listed.headers["X-Total-Count"] == "0"
    for answer in (globex.get(f"/action-errors/{ada['id']}"), globex.post(f"/action-errors/{ada['id']}/retry"),
                   globex.post(f"/action-errors/{ada['id']}/dismiss")):
        assert answer.status_code == 404 and answer.json["code"] == "not_found"
    assert globex.post("/action-errors/retry", json={"all_matching": True}).json["count"] == 0
    assert globex.post("/action-errors/dismiss", json={"ids": [ada["id"]]}).json["count"] == 0
    for who in ("acme_editor", "acme_viewer"):
        assert as_(who).get("/action-errors").status_code == 403
        assert as_(who).post(f"/action-errors/{ada['id']}/retry").status_code == 403

    page = sign_in(app, "admin@globex.example")
    assert f'data-outbox="{ada["id"]}"' not in page.get("/admin/action-errors").text
    assert page.post("/admin/action-errors/retry", {"row": str(ada["id"])}).status_code == 302
    assert "there is no such action" in page.get("/admin/action-errors").text
    assert as_("acme_admin").get(f"/action-errors/{ada['id']}").json["status"] == "dead"
    editor = sign_in(app, "editor@acme.example")
    assert editor.get("/admin/action-errors").status_code == 403
    assert "Action errors" not in editor.get("/journeys").text


def test_admin_page_shows_escaped_errors_and_retries_from_the_list(app, as_, host):
    api = as_("acme_admin")
    jid = live_lead_journey(api)
    long_error = "400: <script>alert(1)</script> " + "property lifecyclestage is required; " * 10
    submit(app, api, host, "ada@example.com", FatalConnectorError(long_error, 400))
    submit(app, api, host, "cy@example.com", missing_property())
    submit(app, api, host, "bob@example.com", RetriableConnectorError("503"))  # parks the CRM's lane
    rows = {r["contact_email"]: r for r in api.get("/action-errors").json}
    admin = sign_in(app, "admin@acme.example")
    html = admin.get("/admin/action-errors").text
    assert re.search(r'id="dead-count"[^>]*>2<', html)
    row = re.search(rf'<tr data-outbox="{rows["ada@example.com"]["id"]}".*?</tr>', html, re.S).group(0)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in row
    assert "<details><summary>" in row and "<pre>" in row and row.count("property lifecyclestage is required") > 5
    assert f'href="/contacts/{rows["ada@example.com"]["contact_id"]}"' in row and f'href="/journeys/{jid}"' in row
    assert "&lt;b&gt;fix the form&lt;/b&gt;" in html
    retrying = admin.get("/admin/action-errors?status=retrying").text
    assert 'data-status="retrying"' in retrying and 'data-status="dead"' not in retrying
    assert 'id="retry-all"' not in retrying and "next attempt" in retrying

    sent = admin.post("/admin/action-errors/retry", {"row": str(rows["ada@example.com"]["id"]), "status": "dead"})
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/admin/action-errors?status=dead")
    assert "1 action sent again." in admin.get("/admin/action-errors?status=dead").text
    admin.post("/admin/action-errors/retry", {"row": str(rows["ada@example.com"]["id"])})
    assert "it is already queued to be sent" in admin.get("/admin/action-errors").text
    ticked = admin.post("/admin/action-errors/dismiss", {"ids": str(rows["cy@example.com"]["id"])})
    assert ticked.status_code == 302
    assert "1 action dismissed (never sent)." in admin.get("/admin/action-errors").text
    admin.post("/admin/action-errors/retry", {"scope": "all"})
    assert "No dead action was chosen" in admin.get("/admin/action-errors").text
    drain(app)
    assert [r["contact_email"] for r in api.get("/sandbox/records?kind=lead").json] == ["ada@example.com"]
    assert 'id="dead-count"' not in admin.get("/admin/action-errors").text


def test_the_openapi_document_describes_the_operations(app):
    paths = app.test_client().get("/api/openapi.json").json["paths"]
    assert set(paths["/api/action-errors"]) == {"get"}
    for path in ("/api/action-errors/{outbox_id}/retry", "/api/action-errors/{outbox_id}/dismiss",
                 "/api/action-errors/retry", "/api/action-errors/dismiss"):
        assert paths[path]["post"]["x-permission"] == "admin"
    listed = paths["/api/action-errors"]["get"]
    assert {p["name"] for p in listed["parameters"]} == {"status", "journey_id", "action", "page", "per_page"}
    assert listed["responses"]["200"]["headers"]["X-Total-Count"]
    bulk = paths["/api/action-errors/retry"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert bulk == {"$ref": "#/components/schemas/ActionErrorsIn"}
