"""Custom-trigger declarations set up without code: the REST endpoints and the pages
(attribute schema with a fixed list of types, errors next to the field, the examples
shown for each trigger really work), tenant scoping and roles."""

from __future__ import annotations

import html
import json
import re

from tests.sp_helpers import journey, sp
from tests.test_web_ui import sign_in

VIP_CALL = {"name": "vip_call", "attributes": [{"name": "minutes", "type": "number", "required": True},
                                               {"name": "topic", "type": "text"}]}


def test_custom_trigger_crud_over_the_api_and_events_checked_against_it(as_):
    api = as_("acme_editor")
    created = api.post("/custom-triggers", json=VIP_CALL)
    assert created.status_code == 201, created.json
    trigger = created.json
    assert trigger["attributes"] == [{"name": "minutes", "type": "number", "required": True},
                                     {"name": "topic", "type": "text", "required": False}]
    example = trigger["example_event"]
    assert example["type"] == "custom_trigger" and example["properties"] == {"minutes": 1, "topic": "some text"}
    assert api.post("/events", json=example).status_code == 202  # the example is a working call
    listed = api.get("/custom-triggers")
    assert listed.headers["X-Total-Count"] == "1" and listed.json[0]["name"] == "vip_call"

    changed = api.put(f"/custom-triggers/{trigger['id']}", json={"attributes": [
        {"name": "minutes", "type": "number", "required": True}, {"name": "happy", "type": "boolean"}]})
    assert changed.status_code == 200 and [a["name"] for a in changed.json["attributes"]] == ["minutes", "happy"]
    stale = api.post("/events", json=example)  # "topic" is no longer declared
    assert stale.status_code == 422 and "'topic' is not declared" in stale.json["errors"]["attributes"][0]

    taken = api.post("/custom-triggers", json=VIP_CALL)
    assert taken.status_code == 409 and taken.json["code"] == "custom_trigger_exists"
    assert api.delete(f"/custom-triggers/{trigger['id']}").json == {"deleted": trigger["id"]}
    assert api.get(f"/custom-triggers/{trigger['id']}").status_code == 404
    gone = api.post("/events", json=example)
    assert gone.status_code == 422 and "no custom trigger named 'vip_call'" in gone.json["errors"]["trigger"][0]


def test_invalid_declarations_name_the_field(as_):
    api = as_("acme_editor")
    bad = api.post("/custom-triggers", json={"name": "VIP Call", "attributes": [
        {"name": "minutes", "type": "number"}, {"name": "minutes", "type": "text"},
        {"name": "trigger", "type": "text"}, {"name": "Topic!", "type": "date"}]})
    assert bad.status_code == 422 and set(bad.json) == {"code", "status", "message", "errors"}
    assert bad.json["errors"] == {
        "name": ["Use lowercase letters, digits and _, starting with a letter (at most 60 characters)."],
        "attributes[1].name": ["Another attribute already has this name."],
        "attributes[2].name": ["“trigger” is reserved: choose another name."],
        "attributes[3].name": ["Use lowercase letters, digits and _, starting with a letter (at most 60 characters)."]}
    wrong_type = api.post("/custom-triggers", json={"name": "x", "attributes": [{"name": "a", "type": "colour"}]})
    assert wrong_type.status_code == 422 and list(wrong_type.json["errors"]) == ["attributes[0].type"]


def test_custom_triggers_are_tenant_scoped_viewers_read_and_in_use_ones_stay(as_):
    acme = as_("acme_editor")
    trigger_id = acme.post("/custom-triggers", json=VIP_CALL).json["id"]
    globex = as_("globex_editor")
    for call in (globex.get(f"/custom-triggers/{trigger_id}"), globex.delete(f"/custom-triggers/{trigger_id}"),
                 globex.put(f"/custom-triggers/{trigger_id}", json={"attributes": []})):
        assert call.status_code == 404
    assert globex.get("/custom-triggers").json == []
    viewer = as_("acme_viewer")
    assert viewer.get(f"/custom-triggers/{trigger_id}").status_code == 200
    assert viewer.post("/custom-triggers", json={"name": "mine"}).status_code == 403
    assert viewer.delete(f"/custom-triggers/{trigger_id}").status_code == 403

    doc = journey([sp("custom_trigger", {"trigger": "vip_call"})])
    doc["name"] = "Call back VIPs"
    jid = acme.post("/journeys", json={"document": doc}).json["id"]
    assert acme.post(f"/journeys/{jid}/publish", json={}).status_code == 200
    refused = acme.delete(f"/custom-triggers/{trigger_id}")
    assert refused.status_code == 409 and refused.json["code"] == "custom_trigger_in_use"
    assert "“Call back VIPs”" in refused.json["message"]
    assert acme.get(f"/custom-triggers/{trigger_id}").json["used_by"] == [
        {"journey_id": jid, "name": "Call back VIPs", "status": "live", "published": True}]


def test_custom_trigger_pages(app, as_):
    editor = sign_in(app, "editor@acme.example")
    assert 'href="/custom-triggers"' in editor.get("/journeys").text
    form = editor.get("/custom-triggers/new")
    assert form.status_code == 200 and 'name="attr0.name"' in form.text
    assert re.findall(r'<option value="(\w+)"', form.text.split('name="attr0.type"')[1].split("</select>")[0]) == \
        ["text", "number", "boolean", "date"]
    bad = editor.post("/custom-triggers/new", {"name": "vip_call", "attr0.name": "Minutes!", "attr0.type": "number",
                                               "attr1.name": "", "attr1.type": "text"})
    assert bad.status_code == 422
    row = re.search(r'<tr class="attribute" data-row="0">.*?</tr>', bad.text, re.S).group(0)
    assert 'class="field has-error"' in row and "Use lowercase letters, digits and _" in row and 'value="Minutes!"' in row
    created = editor.post("/custom-triggers/new", {"name": "vip_call", "attr0.name": "minutes", "attr0.type": "number",
                                                   "attr0.required": "1", "attr1.name": "topic", "attr1.type": "text",
                                                   "attr2.name": "", "attr2.type": "date"})
    assert created.status_code == 302, created.text
    page = editor.get(created.headers["Location"])
    assert "Custom trigger “vip_call” saved." in page.text
    assert re.search(r'name="attr0.required" value="1" checked', page.text)
    assert 'name="attr1.required" value="1" >' in page.text and 'name="attr4.name"' in page.text

    # the events-API example on the page is a call that works (with a real token)
    example = html.unescape(re.search(r'<pre id="example-events-api">(.*?)</pre>', page.text, re.S).group(1))
    assert example.startswith("curl -X POST http://localhost/api/events") and "$CRM_JOURNEYS_TOKEN" in example
    body = json.loads(re.search(r"-d '(.*)'", example).group(1))
    assert as_("acme_editor").post("/events", json=body).status_code == 202
    hook = html.unescape(re.search(r'<pre id="example-webhook">(.*?)</pre>', page.text, re.S).group(1))
    slug = _slug(app)
    assert f"http://localhost/hooks/{slug}/custom" in hook and "X-Webhook-Secret: $WEBHOOK_SECRET" in hook
    with app.extensions["crm_journeys"].db.unit_of_work() as s:
        from crm_journeys.storage.models import Tenant

        secret = s.get(Tenant, app.config["TEST_TENANTS"]["acme"]).webhook_secret
    assert secret not in page.text
    hook_body = json.loads(re.search(r"-d '(.*)'", hook).group(1))
    delivered = app.test_client().post(f"/hooks/{slug}/custom", json=hook_body, headers={"X-Webhook-Secret": secret})
    assert delivered.status_code == 202, delivered.json

    listing = editor.get("/custom-triggers").text
    row = re.search(r'<tr data-trigger="vip_call">.*?</tr>', listing, re.S).group(0)
    assert "(number, required)" in row and "(text)" in row

    # edit: drop "topic" by clearing its name
    url = created.headers["Location"]
    saved = editor.post(url, {"attr0.name": "minutes", "attr0.type": "number", "attr0.required": "1",
                              "attr1.name": "", "attr1.type": "text"})
    assert saved.status_code == 302
    assert as_("acme_viewer").get("/custom-triggers").json[0]["attributes"] == [
        {"name": "minutes", "type": "number", "required": True}]
    assert editor.post(url + "/delete").status_code == 302
    assert "No custom triggers yet." in editor.get("/custom-triggers").text


def test_custom_trigger_pages_scoped_and_read_only_for_viewers(app, as_):
    trigger_id = as_("acme_editor").post("/custom-triggers", json=VIP_CALL).json["id"]
    globex = sign_in(app, "editor@globex.example")
    assert globex.get(f"/custom-triggers/{trigger_id}").status_code == 404
    assert globex.post(f"/custom-triggers/{trigger_id}", {"attr0.name": "x", "attr0.type": "text"}).status_code == 404
    assert globex.post(f"/custom-triggers/{trigger_id}/delete").status_code == 404
    viewer = sign_in(app, "viewer@acme.example")
    page = viewer.get(f"/custom-triggers/{trigger_id}")
    assert page.status_code == 200 and "Save trigger" not in page.text and "Delete trigger" not in page.text
    assert viewer.get("/custom-triggers/new").status_code == 403
    assert viewer.post(f"/custom-triggers/{trigger_id}/delete").status_code == 403
    assert as_("acme_viewer").get(f"/custom-triggers/{trigger_id}").json["attributes"][0]["name"] == "minutes"


def test_declared_triggers_are_offered_in_the_builder(app, as_):
    as_("acme_editor").post("/custom-triggers", json=VIP_CALL)
    editor = sign_in(app, "editor@acme.example")
    builder = editor.post("/journeys/new", {"name": "Custom"}).headers["Location"]
    editor.get(builder)
    point = editor.post(builder + "/starting-points", {"type": "custom_trigger"}).headers["Location"]
    assert re.search(r'<datalist id="picker-custom_triggers">.*<option value="vip_call">', editor.get(point).text, re.S)


def _slug(app):
    from crm_journeys.storage.models import Tenant

    with app.extensions["crm_journeys"].db.unit_of_work() as s:
        return s.get(Tenant, app.config["TEST_TENANTS"]["acme"]).slug
