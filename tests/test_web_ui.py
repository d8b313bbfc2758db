# ruff: noqa: F811  -- pytest fixtures imported from test_api_journeys are redefined as arguments
"""The server-rendered UI through Flask's test client: sign-in, CSRF, the builder's forms,
errors next to fields, lifecycle, map, test mode, analytics and the sandbox CRM."""

from __future__ import annotations

import re
import time

import pytest


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


class Browser:
    def __init__(self, client):
        self.client, self.token = client, ""

    def get(self, path, **kw):
        response = self.client.get(path, **kw)
        if response.status_code == 200 and 'name="csrf_token"' in response.text:
            self.token = csrf(response.text)
        return response

    def post(self, path, data=None, **kw):
        return self.client.post(path, data={"csrf_token": self.token, **(data or {})}, **kw)


def sign_in(app, email):
    browser = Browser(app.test_client())
    browser.get("/login")
    response = browser.post("/login", {"email": email, "password": "password-123"})
    assert response.status_code == 302, response.text
    browser.get("/journeys")
    return browser


@pytest.fixture
def editor(app):
    return sign_in(app, "editor@acme.example")


def test_pages_need_sign_in_and_bad_password_is_refused(app):
    client = app.test_client()
    assert client.get("/journeys").headers["Location"].startswith("/login")
    browser = Browser(client)
    browser.get("/login")
    refused = browser.post("/login", {"email": "editor@acme.example", "password": "wrong-password"})
    assert refused.status_code == 200 and "do not match" in refused.text


def test_forms_without_csrf_are_rejected(app, editor):
    assert editor.client.post("/journeys/new", data={"template": "welcome_promo"}).status_code == 400
    assert editor.client.post("/login", data={"email": "x", "password": "y"}).status_code == 400


def test_session_cookie_is_secure_and_http_only(app):
    client = app.test_client()
    client.get("/login")
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.secure and cookie.http_only


def test_template_to_published_journey_with_errors_next_to_fields(app, editor):
    gallery = editor.get("/templates")
    assert gallery.text.count("Use this template") == 5
    created = editor.post("/journeys/new", {"template": "welcome_promo"})
    builder_url = created.headers["Location"]
    builder = editor.get(builder_url)
    assert "1 thing to fix before publishing" in builder.text and "This can" in builder.text
    assert 'class="card bad configure"' in builder.text or "card bad" in builder.text
    refused = editor.post(builder_url + "/publish")
    assert refused.status_code == 302 and "check=1" in refused.headers["Location"]
    step = editor.get(builder_url + "/steps/promo")
    field = re.search(r'<div class="field configure has-error">.*?</div>\s*</div>', step.text, re.S)
    assert field and 'name="params.body"' in field.group(0) and "This can&#39;t be empty." in field.group(0)
    saved = editor.post(builder_url + "/steps/promo", {
        "label": "Send the promo", "action": "send_email", "params.subject": "10% off",
        "params.body": "Use code WELCOME10.", "params.email_id": "promo_first_purchase", "next": ""})
    assert saved.status_code == 302
    assert "to fix before publishing" not in editor.get(builder_url).text
    assert editor.post(builder_url + "/publish").status_code == 302
    page = editor.get(builder_url)
    assert "badge live" in page.text and "Publish changes" in page.text
    journeys = editor.get("/journeys")
    assert "Welcome + promo code" in journeys.text and "badge live" in journeys.text


def test_builder_forms_edit_the_draft(app, editor):
    url = editor.post("/journeys/new", {"name": "Built by hand"}).headers["Location"]
    jid = int(url.rsplit("/", 1)[1])
    editor.get(url)
    sp = editor.post(url + "/starting-points", {"type": "tag_added"})
    sp_form = editor.get(sp.headers["Location"])
    assert 'name="params.tag"' in sp_form.text
    editor.post(sp.headers["Location"], {"params.tag": "vip", "filter.mode": "all", "filter.g0.mode": "any",
                                         "filter.g0.r0.op": "eq", "filter.g0.r0.field": "country",
                                         "filter.g0.r0.value": "DE", "filter.g0.r1.op": "has_tag",
                                         "filter.g0.r1.value": "gold", "next": ""})
    editor.get(url)
    first = editor.post(url + "/steps", {"type": "action", "action": "add_tag", "label": "Tag them"})
    editor.get(first.headers["Location"])
    editor.post(first.headers["Location"], {"label": "Tag them", "action": "add_tag", "params.tag": "welcomed",
                                            "next": ""})
    editor.get(url)
    split = editor.post(url + "/steps", {"type": "condition_split", "label": "Is German", "after": "tag_them"})
    editor.get(split.headers["Location"])
    editor.post(split.headers["Location"], {"label": "Is German", "condition.g0.mode": "all",
                                            "condition.g0.r0.op": "eq", "condition.g0.r0.field": "country",
                                            "condition.g0.r0.value": "DE", "branches.yes": "", "branches.no": ""})
    api = app.test_client()
    from tests.web_fixtures import Api
    doc = Api(api, app.config["TEST_TOKENS"]["acme_viewer"]).get(f"/journeys/{jid}").json
    draft = doc["draft"]
    assert draft["starting_points"][0]["params"] == {"tag": "vip"}
    assert draft["starting_points"][0]["filter"] == {"any": [{"op": "eq", "field": "country", "value": "DE"},
                                                             {"op": "has_tag", "value": "gold"}]}
    assert [s["id"] for s in draft["steps"]] == ["tag_them", "is_german"]
    assert draft["steps"][0]["next"] == "is_german" and draft["first_step"] == "tag_them"
    assert draft["steps"][1]["condition"] == {"all": [{"op": "eq", "field": "country", "value": "DE"}]}
    assert doc["draft_errors"] == {}


def test_map_test_mode_backtest_analytics_and_contacts(app, editor):
    url = editor.post("/journeys/new", {"template": "birthday"}).headers["Location"]
    jid = url.rsplit("/", 1)[1]
    editor.get(url)
    editor.post(url + "/publish")
    svg = editor.get(url + "/map").text
    assert "<svg" in svg and 'data-step="greeting"' in svg and "0 waiting" in svg
    welcome = editor.post("/journeys/new", {"template": "lead_nurture"}).headers["Location"]
    editor.get(welcome + "/test")
    result = editor.post(welcome + "/test", {"email": "ada@example.com", "first_name": "Ada", "starting_point": "prospects",
                                             "event0.after": "P1D", "event0.type": "email_clicked",
                                             "event0.key": "contoso_espresso_launch", "horizon": "P3D"})
    assert result.status_code == 200 and "Result:" in result.text and "react_to_event" not in result.text
    started = editor.post(welcome + "/backtest", {"days": "7"})
    progress_url = started.headers["Location"]
    for _ in range(100):
        page = editor.get(progress_url)
        if "Backtest: running" not in page.text:
            break
        time.sleep(0.05)
    assert "Backtest: done" in page.text and "<progress" in page.text
    analytics = editor.get(f"/journeys/{jid}/analytics")
    assert "Funnel" in analytics.text and 'data-count="entered"' in analytics.text
    assert editor.get("/contacts").status_code == 200
    assert "Not published yet" in editor.get(welcome + "/versions").text
    assert "v1" in editor.get(url + "/versions?from=1&to=draft").text


def test_viewer_sees_but_cannot_change(app):
    editor = sign_in(app, "editor@acme.example")
    url = editor.post("/journeys/new", {"template": "birthday"}).headers["Location"]
    viewer = sign_in(app, "viewer@acme.example")
    page = viewer.get(url)
    assert page.status_code == 200 and "Publish" not in page.text
    assert viewer.post(url + "/publish").status_code == 403
    assert viewer.post(url + "/settings", {"name": "x"}).status_code == 403
    other = sign_in(app, "editor@globex.example")
    assert other.get(url).status_code == 404
    assert other.post(url + "/settings", {"name": "x"}).status_code == 404
