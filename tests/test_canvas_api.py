"""What the canvas relies on beyond the journeys API: sandbox contacts edited from the UI
start journeys, a task can go to the contact's owner, publishing needs a change, and test
mode says why a contact did not enter."""

from __future__ import annotations

from tests.web_fixtures import drain

WEBINAR = {
    "format_version": 1, "name": "Webinar follow-up", "description": "", "entry": {"policy": "once"},
    "starting_points": [{"id": "tagged", "type": "tag_added", "params": {"tag": "webinar-2026"},
                         "filter": {"op": "eq", "field": "country", "value": "DE"}, "next": None}],
    "entry_filter": None, "first_step": "task", "goals": [], "exit_rules": [],
    "steps": [{"id": "task", "type": "action", "label": "Call", "action": "create_task",
               "params": {"subject": "Call {{ contact.first_name }}", "owner": "{{ contact.owner }}", "due_in_days": 1},
               "next": None, "run_multiple_times": False}],
}


def published(api) -> int:
    jid = api.post("/journeys", json={"document": WEBINAR}).json["id"]
    assert api.post(f"/journeys/{jid}/publish", json={}).status_code == 200
    return jid


def test_sandbox_contact_tagged_in_the_ui_enters_and_its_owner_gets_the_task(as_, app):
    api = as_("acme_editor")
    jid = published(api)
    created = api.post("/sandbox/contacts", json={"email": "Bea@Example.com", "first_name": "Bea",
                                                  "fields": {"country": "FR", "owner": "olga@shop.example"}, "tags": []})
    assert created.status_code == 201, created.json
    cid = created.json["id"]
    drain(app)
    assert api.get(f"/journeys/{jid}/instances").json == []
    edited = api.put(f"/sandbox/contacts/{cid}", json={"email": "bea@example.com", "first_name": "Bea",
                                                       "fields": {"country": "DE", "owner": "olga@shop.example"},
                                                       "tags": ["webinar-2026"]})
    assert edited.status_code == 200 and edited.json["version"] == 2
    drain(app)
    drain(app)
    assert len(api.get(f"/journeys/{jid}/instances").json) == 1
    tasks = api.get("/sandbox/records?kind=task").json
    assert [(t["data"]["subject"], t["data"]["owner"]) for t in tasks] == [("Call Bea", "olga@shop.example")]


def test_sandbox_contact_errors_name_the_field(as_):
    api = as_("acme_editor")
    bad = api.post("/sandbox/contacts", json={"email": "not-an-email"})
    assert bad.status_code == 422 and "email" in bad.json["errors"]
    api.post("/sandbox/contacts", json={"email": "a@example.com"})
    again = api.post("/sandbox/contacts", json={"email": "A@example.com"})
    assert again.status_code == 409 and "email" in again.json["errors"]
    cid = api.get("/sandbox/contacts").json[0]["id"]
    unknown = api.post(f"/sandbox/contacts/{cid}/events", json={"type": "no_such_event"})
    assert unknown.status_code == 422 and "type" in unknown.json["errors"]
    assert api.post(f"/sandbox/contacts/{cid}/events", json={"type": "email_opened", "key": "x"}).status_code == 202
    assert as_("acme_viewer").post("/sandbox/contacts", json={"email": "b@example.com"}).status_code == 403
    assert as_("globex_editor").put(f"/sandbox/contacts/{cid}", json={"email": "a@example.com"}).status_code == 404


def test_publishing_needs_a_change(as_):
    api = as_("acme_editor")
    jid = published(api)
    again = api.post(f"/journeys/{jid}/publish", json={})
    assert again.status_code == 409 and again.json["code"] == "nothing_changed"
    assert [v["version"] for v in api.get(f"/journeys/{jid}/versions").json] == [1]


def test_test_mode_says_which_filter_kept_the_contact_out(as_):
    api = as_("acme_editor")
    jid = api.post("/journeys", json={"document": WEBINAR}).json["id"]
    out = api.post(f"/journeys/{jid}/simulate", json={"contact": {
        "email": "x@example.com", "fields": {"country": "FR"}, "tags": ["webinar-2026"]}}).json
    assert out["status"] == "not_entered"
    assert "country is “DE”" in out["outcome"] and "country is 'FR'" in out["outcome"]
    entered = api.post(f"/journeys/{jid}/simulate", json={"contact": {
        "email": "x@example.com", "first_name": "Xa", "fields": {"country": "DE", "owner": "sam@example.com"},
        "tags": ["webinar-2026"]}}).json
    assert [(r["kind"], r["data"]["owner"]) for r in entered["records"]] == [("task", "sam@example.com")]


def test_journey_list_search_duplicate_and_versions_in_words(app, as_):
    from tests.test_web_ui import sign_in

    api = as_("acme_editor")
    jid = published(api)
    api.post("/journeys", json={"document": dict(WEBINAR, name="Birthday greetings")})
    browser = sign_in(app, "editor@acme.example")
    found = browser.get("/journeys?q=WEBINAR").text
    assert "Webinar follow-up" in found and "Birthday greetings" not in found
    assert "Birthday greetings" in browser.get("/journeys?status=draft").text
    assert "Webinar follow-up" not in browser.get("/journeys?status=draft").text
    browser.get("/journeys")
    copied = browser.post(f"/journeys/{jid}/duplicate")
    assert copied.status_code == 302 and copied.headers["Location"].endswith("/canvas")
    assert "Copy of Webinar follow-up" in browser.get("/journeys?q=copy").text
    changed = dict(WEBINAR, steps=[dict(WEBINAR["steps"][0], params=dict(WEBINAR["steps"][0]["params"], due_in_days=2))])
    api.put(f"/journeys/{jid}", json={"document": changed})
    page = browser.get(f"/journeys/{jid}/versions?from=1&to=draft").text
    assert "Step “Call”</strong>: due in days changed from 1 to 2." in page


def test_counts_per_version(as_, app):
    api = as_("acme_editor")
    jid = published(api)
    api.post("/sandbox/contacts", json={"email": "a@example.com", "fields": {"country": "DE"}, "tags": ["webinar-2026"]})
    drain(app)
    drain(app)
    changed = dict(WEBINAR, steps=[dict(WEBINAR["steps"][0], label="Call them")])
    api.put(f"/journeys/{jid}", json={"document": changed})
    assert api.post(f"/journeys/{jid}/publish", json={}).json["version"] == 2
    assert api.get(f"/journeys/{jid}/versions/1/counts").json["steps"] == [{"id": "task", "entered": 1, "waiting": 0}]
    assert api.get(f"/journeys/{jid}/versions/2/counts").json["steps"] == [{"id": "task", "entered": 0, "waiting": 0}]
    assert api.get(f"/journeys/{jid}/versions/3/counts").status_code == 404
    assert as_("globex_editor").get(f"/journeys/{jid}/versions/1/counts").status_code == 404


def test_contacts_move_from_any_older_version_with_counts_and_timeline(as_, app):
    api = as_("acme_editor")
    waiting = dict(WEBINAR, first_step="wait", steps=[
        {"id": "wait", "type": "wait", "label": "Wait", "duration": "P2D", "next": "task"}, WEBINAR["steps"][0]])
    jid = api.post("/journeys", json={"document": waiting}).json["id"]
    api.post(f"/journeys/{jid}/publish", json={})
    api.post("/sandbox/contacts", json={"email": "a@example.com", "fields": {"country": "DE"}, "tags": ["webinar-2026"]})
    drain(app)
    drain(app)
    api.put(f"/journeys/{jid}", json={"document": dict(waiting, name="v2")})
    assert api.post(f"/journeys/{jid}/publish", json={}).json["version"] == 2  # the contact stays on v1
    longer = dict(waiting, name="v3", steps=[dict(waiting["steps"][0], id="wait_longer", duration="P3D"),
                                             WEBINAR["steps"][0]], first_step="wait_longer")
    api.put(f"/journeys/{jid}", json={"document": longer})
    third = api.post(f"/journeys/{jid}/publish", json={"migration": {"wait": "wait_longer"}})
    assert third.status_code == 200, third.json
    assert third.json["version"] == 3 and third.json["moved"] == {"wait": 1}
    assert api.get(f"/journeys/{jid}/versions/3/counts").json["steps"][0] == {"id": "wait_longer", "entered": 0,
                                                                               "waiting": 1}
    run = api.get(f"/journeys/{jid}/instances").json[0]
    timeline = api.get(f"/instances/{run['id']}").json["timeline"]
    assert any(t["kind"] == "moved" and "from version 1 step 'wait' to version 3" in t["why"] for t in timeline)


def test_contact_page_says_why_a_contact_is_not_in_a_journey(as_, app):
    from tests.test_web_ui import sign_in

    api = as_("acme_editor")
    jid = published(api)
    api.post("/sandbox/contacts", json={"email": "fr@example.com", "fields": {"country": "FR"}, "tags": ["webinar-2026"]})
    api.post("/sandbox/contacts", json={"email": "de@example.com", "fields": {"country": "DE"}, "tags": ["webinar-2026"]})
    drain(app)
    drain(app)
    french = api.get("/contacts?email=fr@example.com").json[0]["id"]
    german = api.get("/contacts?email=de@example.com").json[0]["id"]
    browser = sign_in(app, "editor@acme.example")
    page = browser.get(f"/contacts/{french}?why_not={jid}").text
    assert "it asks for country is “DE”, and the contact&#39;s country is &#39;FR&#39;" in page
    page = browser.get(f"/contacts/{german}?why_not={jid}").text
    assert "the journey lets a contact enter only once, ever" in page
