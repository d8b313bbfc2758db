"""Installing with a pasted API key: only for a signed-in admin or the operator's install
key, and the host's answer never travels back to the caller (item 2 of the hardening)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from crm_journeys.app import create_app
from crm_journeys.storage.models import Tenant

KEY = "operator-install-key"
BODY_MARKER = "internal-admin-panel-secret-body"


@pytest.fixture
def app(tmp_path):  # type: ignore[no-untyped-def]
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "CRM_JOURNEYS_INSTALL_KEY": KEY,
                      "CRM_JOURNEYS_DATABASE_URL": f"sqlite:///{tmp_path / 'cj.db'}"})
    yield app
    app.extensions["crm_journeys"].db.dispose()


def _body(url):  # type: ignore[no-untyped-def]
    return {"tenant": "acme", "settings": {"url": url}, "credentials": {"token": "bcrm_pat_x"}}


def _tenants(app):  # type: ignore[no-untyped-def]
    with app.extensions["crm_journeys"].db.unit_of_work() as s:
        return s.scalar(select(func.count()).select_from(Tenant))


def test_anonymous_key_install_is_refused_before_the_server_calls_anything(app, httpserver):
    httpserver.expect_request("/api/contacts/").respond_with_data("{}")
    client = app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong-key"}):
        answer = client.post("/install/bottlecrm", json=_body(httpserver.url_for("/")), headers=headers)
        assert answer.status_code == 401 and "install key" in answer.get_json()["message"]
    assert httpserver.log == [] and _tenants(app) == 0


def test_the_hosts_answer_is_never_echoed(app, httpserver):
    httpserver.expect_request("/api/contacts/").respond_with_data(
        f'{{"detail": "{BODY_MARKER}"}}', status=403, content_type="application/json")
    httpserver.no_handler_status_code = 403
    client = app.test_client()
    answer = client.post("/install/bottlecrm", json=_body(httpserver.url_for("/")),
                         headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 400
    assert BODY_MARKER not in answer.get_data(as_text=True)
    assert "HTTP 403" in answer.get_json()["errors"]["credentials"]
    assert _tenants(app) == 0  # a failed install leaves nothing behind


def test_malformed_install_bodies_are_400_not_500(app):
    client = app.test_client()
    for body in ([], {"settings": "x"}, {"credentials": [1]}):
        answer = client.post("/install/bottlecrm", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 400, answer.get_data(as_text=True)


def test_an_anonymous_oauth_install_may_not_point_the_server_at_private_urls(app):
    app.config["CRM_JOURNEYS_OAUTH_CLIENTS"] = {"hubspot": {"client_id": "c", "client_secret": "s", "app_id": "1"}}
    client = app.test_client()
    body = {"tenant": "acme", "settings": {"base_url": "http://127.0.0.1:9/", "oauth_api_url": "http://169.254.169.254/",
                                           "oauth_app_url": "https://93.184.216.34"}}  # public, no DNS here
    answer = client.post("/install/hubspot", json=body)
    assert answer.status_code == 400
    errors = answer.get_json()["errors"]
    assert set(errors) == {"settings.base_url", "settings.oauth_api_url"} and "public" in errors["settings.base_url"]
    # the operator's key (or a signed-in admin) may name on-premises hosts
    answer = client.post("/install/hubspot", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 302
