"""Input bounded and typed at the edge (item 6): every case here was a 500 or a
traceback, or let through what it should not; now a 4xx that names the field."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from crm_journeys.cli import main
from crm_journeys.runtime.tenants import create_tenant
from crm_journeys.storage.models import Tenant
from tests.web_fixtures import welcome_doc

BIG = 2**63


def _errors(answer):  # type: ignore[no-untyped-def]
    body = answer.get_json()
    assert set(body) >= {"code", "status", "message", "errors"}, body
    return body["errors"]


@pytest.mark.parametrize("path", [f"/journeys/{BIG}", f"/journeys/{BIG}/versions", f"/contacts/{BIG}",
                                  f"/journeys/{'9' * 30}", "/journeys?page=" + str(BIG),
                                  f"/journeys?offset={BIG}", f"/contacts?page={'9' * 5000}"])
def test_ids_and_paging_beyond_64_bits_are_4xx(as_, path):
    answer = as_("acme_editor").get(path)
    assert answer.status_code in (400, 404, 422), answer.get_data(as_text=True)[:300]


def test_ui_paging_beyond_64_bits_shows_the_last_page(app):
    from tests.test_web_ui import sign_in

    browser = sign_in(app, "editor@acme.example")
    assert browser.get(f"/journeys?page={BIG}").status_code == 200
    assert browser.get(f"/journeys/{BIG}/builder").status_code == 404


@pytest.mark.parametrize("text, where", [("bad \ud800 name", "body.document.name"), ("nul \x00 name", "body.document.name")])
def test_nul_and_lone_surrogates_are_refused_naming_the_field(as_, text, where):
    doc = {**welcome_doc(), "name": text}
    raw = json.dumps({"document": doc})  # ensure_ascii: \\ud800 and \\u0000 escapes, as a client sends them
    answer = as_("acme_editor").post("/journeys", data=raw, content_type="application/json")
    assert answer.status_code == 400 and where in _errors(answer)


def test_deep_nesting_and_big_bodies_are_refused(as_):
    deep = '{"document": ' + "[" * 1000 + "]" * 1000 + "}"
    answer = as_("acme_editor").post("/journeys", data=deep, content_type="application/json")
    assert answer.status_code == 400 and "body" in _errors(answer)
    huge = json.dumps({"document": {**welcome_doc(), "description": "x" * (3 * 1024 * 1024)}})
    answer = as_("acme_editor").post("/journeys", data=huge, content_type="application/json")
    assert answer.status_code == 413 and answer.get_json()["code"] == "request_entity_too_large"


def test_draft_name_size_and_steps_are_bounded(as_):
    api = as_("acme_editor")
    answer = api.post("/journeys", json={"document": {**welcome_doc(), "name": "n" * 201}})
    assert answer.status_code == 422 and "document.name" in _errors(answer)
    steps = [{"id": f"s{i}", "type": "exit"} for i in range(50_000)]
    answer = api.post("/journeys", json={"document": {**welcome_doc(), "steps": steps}})
    assert answer.status_code in (413, 422)
    steps = [{"id": f"s{i}", "type": "exit"} for i in range(2001)]
    answer = api.post("/journeys", json={"document": {**welcome_doc(), "steps": steps}})
    assert answer.status_code == 422 and "document.steps" in _errors(answer)


@pytest.mark.parametrize("duration", ["P99999999999999W", "P999999999D", "PT99999999999999999999H"])
def test_durations_out_of_range_are_refused_at_publish_naming_the_step(as_, duration):
    api = as_("acme_editor")
    doc = welcome_doc()
    index = next(i for i, s in enumerate(doc["steps"]) if s.get("duration"))
    doc["steps"][index]["duration"] = duration
    jid = api.post("/journeys", json={"document": doc}).get_json()["id"]
    answer = api.post(f"/journeys/{jid}/publish", json={})
    assert answer.status_code == 422
    assert any(path.startswith(f"steps[{index}].duration") for path in _errors(answer)), _errors(answer)


def test_the_trigger_endpoint_of_a_draft_journey_is_refused(as_, app):
    api = as_("acme_editor")
    doc = welcome_doc()
    created = api.post("/journeys", json={"document": doc}).get_json()
    secret = created["trigger_secret"]
    answer = app.test_client().post(f"/api/journeys/{created['id']}/trigger", headers={"X-Journey-Secret": secret},
                                    json={"contact": {"email": "t@example.com"}})
    assert answer.status_code == 409 and answer.get_json()["code"] == "journey_not_live"


@pytest.mark.parametrize("service, body, field", [
    ("livechat", {"secret_key": "lc", "action": "chat_deactivated", "payload": "x"}, "payload"),
    ("livechat", {"secret_key": "lc", "action": "chat_deactivated", "payload": {"chat_id": "c"},
                  "additional_data": {"chat": {"users": "x"}}}, "users"),
    ("custom", {"trigger": "t", "contact": "x"}, "contact"),
    ("custom", {"trigger": "t", "contact": {"email": "a@b.example"}, "attributes": [1]}, "attributes"),
    ("eventbrite", {"config": "x"}, "config"),
])
def test_inbound_hooks_refuse_malformed_bodies_with_400(app, service, body, field):
    state = app.extensions["crm_journeys"]
    with state.db.unit_of_work() as s:
        tenant = create_tenant(s, f"hooks-{service}", "Hooks", state.runtime.clock.now(), credentials={
            "integrations": {"livechat": {"secret_key": "lc"}, "eventbrite": {"token": "t"}}})
        secret = tenant.webhook_secret
    answer = app.test_client().post(f"/hooks/hooks-{service}/{service}", json=body,
                                    headers={"X-Webhook-Secret": secret})
    payload = answer.get_json()
    assert answer.status_code == 400 and field in payload["message"] and payload["code"] == "hook_rejected"


def test_crm_contact_link_tells_anonymous_callers_nothing(app):
    client = app.test_client()
    tenant_slug = next(iter(app.config["TEST_TENANTS"]))  # any tenant
    with app.extensions["crm_journeys"].db.unit_of_work() as s:
        slug = s.get(Tenant, app.config["TEST_TENANTS"][tenant_slug]).slug
    known = client.get(f"/crm/contact?tenant={slug}&external_id=email:ada@example.com")
    unknown = client.get(f"/crm/contact?tenant={slug}&external_id=email:nobody@example.com")
    no_tenant = client.get("/crm/contact?tenant=nope&external_id=x")
    assert {known.status_code, unknown.status_code, no_tenant.status_code} == {302}
    assert all(a.headers["Location"].startswith("/login") for a in (known, unknown, no_tenant))


def test_a_tenant_slugged_crm_receives_integration_webhooks(app):
    state = app.extensions["crm_journeys"]
    with state.db.unit_of_work() as s:
        create_tenant(s, "crm", "Crm", state.runtime.clock.now(),
                      credentials={"integrations": {"zapier": {"secret": "zap"}}})
    answer = app.test_client().post("/hooks/crm/zapier", json={"email": "c@example.com", "zap": "z"},
                                    headers={"X-Zapier-Secret": "zap"})
    assert answer.status_code == 202, answer.get_json()
    with state.db.unit_of_work() as s, pytest.raises(ValueError, match="reserved"):
        create_tenant(s, "zapier", "Zapier", state.runtime.clock.now())


def test_cli_setting_values_stay_strings_where_the_schema_says_string(tmp_path):
    url = f"sqlite:///{tmp_path / 'cj.db'}"
    result = CliRunner().invoke(main, ["--database", url, "install", "hubspot", "--tenant", "acme",
                                       "--setting", "portal_id=62515", "--setting", "base_url=https://api.hubapi.com",
                                       "--credential", "access_token=x", "--credential", "client_secret=y",
                                       "--no-check"])
    assert result.exit_code == 0, result.output
    from crm_journeys.storage.db import Database

    db = Database(url)
    with db.unit_of_work() as s:
        assert s.scalar(select(Tenant.portal_id).where(Tenant.slug == "acme")) == "62515"
    db.dispose()


@pytest.mark.parametrize("content", [
    b"[" * 5000 + b"]" * 5000,
    json.dumps({**json.loads((__import__("pathlib").Path(__file__).parent.parent / "examples"
                              / "welcome_promo.json").read_text()),
                "steps": [{"id": "w", "type": "wait", "duration": "P99999999999999W", "next": None}],
                "first_step": "w"}).encode(),
    b"\xff\xfe not utf-8",
    json.dumps({"steps": [{"id": "c", "type": "if_then", "condition": {"op": "and", "conditions": []}}]
                * 3}).encode(),
])
def test_cli_validate_never_prints_a_traceback(tmp_path, content):
    path = tmp_path / "doc.json"
    path.write_bytes(content)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and not isinstance(result.exception, RecursionError | OverflowError
                                                                     | UnicodeDecodeError)
