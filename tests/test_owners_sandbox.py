"""Owners on the built-in sandbox CRM: it has no user directory, so the picker offers the
owners its contacts carry (marked incomplete) and publishing takes any owner as written."""

from __future__ import annotations

from tests.web_fixtures import welcome_doc


def test_sandbox_owners_are_free_text(app, as_):
    tenant = app.config["TEST_TENANTS"]["acme"]
    connector = app.extensions["crm_journeys"].runtime.connector_for(tenant)
    connector.update_fields("email:ann@example.com", {"owner": "sam@sales.example"}, "k-owner")
    owners = as_("acme_viewer").get("/owners").json
    assert [(o["id"], o["kind"], o["complete"]) for o in owners] == [
        ("contact_owner", "contact_owner", False), ("sam@sales.example", "user", False)]
    assert as_("globex_viewer").get("/owners").json[1:] == []  # the other tenant's contacts
    document = welcome_doc()
    document["steps"].append({"id": "call", "type": "action", "action": "create_task",
                              "params": {"subject": "Call", "owner": "someone@else.example"},
                              "next": document["first_step"], "run_multiple_times": False})
    document["first_step"] = "call"
    api = as_("acme_editor")
    created = api.post("/journeys", json={"document": document})
    assert created.status_code == 201, created.json
    published = api.post(f"/journeys/{created.json['id']}/publish", json={})
    assert published.status_code == 200, published.json
