"""Integration secrets set up without code (admins only): the URL to paste per service,
secrets rotated and shown once, stored encrypted where the hooks read them, never shown
again nor logged, pasted tokens kept, and when each service last delivered."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from crm_journeys.secrets import decrypt_json
from crm_journeys.storage.models import Tenant
from tests.test_web_ui import sign_in

ZAP = {"email": "zed@example.com", "zap": "lead-form", "id": "z-1"}


def _tenant(app, slug="acme"):
    with app.extensions["crm_journeys"].db.unit_of_work() as s:
        return s.get(Tenant, app.config["TEST_TENANTS"][slug])


def _stored(app, slug="acme"):
    return decrypt_json(_tenant(app, slug).credentials).get("integrations") or {}


def _hook(app, service, body, **headers):
    return app.test_client().post(f"/hooks/{_tenant(app).slug}/{service}", json=body, headers=headers)


def test_admin_rotates_a_secret_once_and_the_hook_accepts_only_it(app, as_, clock, caplog):
    caplog.set_level(logging.DEBUG)
    api = as_("acme_admin")
    listed = {i["service"]: i for i in api.get("/integrations").json}
    assert list(listed) == ["eventbrite", "livechat", "zapier", "custom", "twilio"]
    zapier = listed["zapier"]
    assert zapier["hook_url"] == f"http://localhost/hooks/{_tenant(app).slug}/zapier"
    assert zapier["settings"][0]["is_set"] is False and zapier["last_used_at"] is None
    assert listed["custom"]["settings"][0]["is_set"] is True  # the install secret applies until rotated

    rotated = api.post("/integrations/zapier/secret", json={})
    assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
    secret = rotated.json["secret"]
    assert rotated.json["setting"] == "secret" and len(secret) >= 40
    assert _stored(app)["zapier"] == {"secret": secret}  # where the Zapier adapter reads it
    assert _hook(app, "zapier", ZAP).status_code == 401
    assert _hook(app, "zapier", ZAP, **{"X-Zapier-Secret": secret}).status_code == 202

    after = api.get("/integrations")
    assert secret not in after.text
    zapier = next(i for i in after.json if i["service"] == "zapier")
    assert zapier["settings"][0]["is_set"] is True and zapier["last_used_at"] == clock.now().isoformat()

    again = api.post("/integrations/zapier/secret", json={"setting": "secret"}).json["secret"]
    assert again != secret
    assert _hook(app, "zapier", {**ZAP, "id": "z-2"}, **{"X-Zapier-Secret": secret}).status_code == 401
    clock.advance(timedelta(minutes=5))
    assert _hook(app, "zapier", {**ZAP, "id": "z-3"}, **{"X-Zapier-Secret": again}).status_code == 202
    zapier = next(i for i in api.get("/integrations").json if i["service"] == "zapier")
    assert zapier["last_used_at"] == clock.now().isoformat()
    assert secret not in caplog.text and again not in caplog.text


def test_pasted_tokens_are_kept_not_shown_and_validated(app, as_):
    api = as_("acme_admin")
    saved = api.patch("/integrations/eventbrite", json={"settings": {"token": "eb-private-1",
                                                                     "webhook_ids": "wh1, wh2"}})
    assert saved.status_code == 200 and "eb-private-1" not in saved.text
    token, ids = saved.json["settings"]
    assert (token["is_set"], token["value"]) == (True, None) and ids["value"] == "wh1, wh2"
    assert _stored(app)["eventbrite"] == {"token": "eb-private-1", "webhook_ids": ["wh1", "wh2"]}
    api.patch("/integrations/eventbrite", json={"settings": {"webhook_ids": ""}})
    assert _stored(app)["eventbrite"] == {"token": "eb-private-1"}

    unknown = api.patch("/integrations/eventbrite", json={"settings": {"password": "x"}})
    assert unknown.status_code == 422 and list(unknown.json["errors"]) == ["settings.password"]
    not_ours = api.post("/integrations/eventbrite/secret", json={})
    assert not_ours.status_code == 422 and "paste it instead" in not_ours.json["errors"]["setting"][0]
    assert api.get("/integrations/myspace").status_code in (404, 405)
    assert api.post("/integrations/myspace/secret", json={}).json["code"] == "not_found"

    # the custom-trigger webhook: rotating replaces the install secret for that hook
    old = _tenant(app).webhook_secret
    new = api.post("/integrations/custom/secret", json={}).json["secret"]
    body = {"trigger": "nope", "contact": {"email": "a@example.com"}}
    assert _hook(app, "custom", body, **{"X-Webhook-Secret": old}).status_code == 401
    assert _hook(app, "custom", body, **{"X-Webhook-Secret": new}).status_code == 422  # past the secret check


def test_secrets_are_admin_only_and_tenant_scoped(app, as_):
    for who in ("acme_editor", "acme_viewer"):
        assert as_(who).get("/integrations").status_code == 403
        assert as_(who).post("/integrations/zapier/secret", json={}).status_code == 403
        assert as_(who).patch("/integrations/zapier", json={"settings": {"secret": "x"}}).status_code == 403
    as_("globex_admin").post("/integrations/zapier/secret", json={})
    assert "zapier" not in _stored(app, "acme") and "zapier" in _stored(app, "globex")
    globex_url = next(i for i in as_("globex_admin").get("/integrations").json if i["service"] == "zapier")["hook_url"]
    assert globex_url.endswith(f"/hooks/{_tenant(app, 'globex').slug}/zapier")


def test_integrations_page(app):
    admin = sign_in(app, "admin@acme.example")
    page = admin.get("/admin/integrations")
    assert page.status_code == 200 and 'href="/admin/integrations"' in page.text
    assert f'value="http://localhost/hooks/{_tenant(app).slug}/livechat"' in page.text
    assert page.text.count("No delivery accepted yet") == 5

    rotated = admin.post("/admin/integrations/livechat/rotate", {"setting": "secret_key"})
    assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
    secret = re.search(r'<code id="new-secret">([^<]+)</code>', rotated.text).group(1)
    assert _stored(app)["livechat"] == {"secret_key": secret}
    again = admin.get("/admin/integrations")
    assert secret not in again.text and "New secret" not in again.text
    assert 'data-setting="secret_key">' in again.text
    assert re.search(r'<section class="card integration" id="livechat">.*?<span class="badge live" data-state>set</span>',
                     again.text, re.S)

    saved = admin.post("/admin/integrations/eventbrite", {"value.token": "eb-secret-token", "value.webhook_ids": "wh9"})
    assert saved.status_code == 302 and saved.headers["Location"].endswith("#eventbrite")
    shown = admin.get("/admin/integrations").text
    assert "Eventbrite saved (private token, webhook ids (optional))." in shown
    assert "eb-secret-token" not in shown and 'value="wh9"' in shown
    assert _stored(app)["eventbrite"] == {"token": "eb-secret-token", "webhook_ids": ["wh9"]}
    admin.post("/admin/integrations/eventbrite", {"value.token": "", "value.webhook_ids": "wh9"})
    assert _stored(app)["eventbrite"]["token"] == "eb-secret-token"  # an empty box keeps the secret
    admin.post("/admin/integrations/eventbrite", {"value.token": "", "clear.token": "1", "value.webhook_ids": ""})
    assert _stored(app)["eventbrite"] == {}
    assert admin.get("/admin/integrations/nope").status_code in (404, 405)
    assert admin.post("/admin/integrations/nope", {}).status_code == 404

    editor = sign_in(app, "editor@acme.example")
    assert editor.get("/admin/integrations").status_code == 403
    assert editor.post("/admin/integrations/zapier/rotate", {"setting": "secret"}).status_code == 403
    assert 'href="/admin/integrations"' not in editor.get("/journeys").text
    assert "zapier" not in _stored(app)
