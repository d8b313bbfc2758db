# ruff: noqa: F811  -- pytest fixtures imported from test_api_journeys are redefined as arguments
"""Users and API tokens: the REST endpoints, the admin pages and the CLI commands."""

from __future__ import annotations

import re

from click.testing import CliRunner

from crm_journeys.auth import authenticate
from crm_journeys.cli import main
from tests.test_web_ui import sign_in
from tests.web_fixtures import Api


def test_admin_manages_users_over_the_api(as_, app):
    api = as_("acme_admin")
    emails = [u["email"] for u in api.get("/users").json]
    assert emails == ["admin@acme.example", "editor@acme.example", "viewer@acme.example"]
    created = api.post("/users", json={"email": "New@Acme.example", "role": "viewer"})
    assert created.status_code == 201 and created.json["email"] == "new@acme.example"
    temporary = created.json["temporary_password"]
    assert temporary and len(temporary) >= 12
    with app.extensions["crm_journeys"].db.unit_of_work() as s:
        assert authenticate(s, "new@acme.example", temporary) is not None
    uid = created.json["id"]
    assert api.post("/users", json={"email": "new@acme.example", "role": "viewer"}).status_code == 409
    chosen = api.post("/users", json={"email": "pw@acme.example", "role": "editor", "password": "long-enough"})
    assert chosen.json["temporary_password"] is None
    assert api.post("/users", json={"email": "x@acme.example", "role": "owner"}).json["errors"] == \
        {"role": ["Must be one of: admin, editor, viewer."]}
    assert api.patch(f"/users/{uid}", json={"role": "editor"}).json["role"] == "editor"
    assert api.delete(f"/users/{uid}").json == {"deleted": uid}
    assert "new@acme.example" not in [u["email"] for u in api.get("/users").json]


def test_last_admin_cannot_step_down_or_leave(as_):
    api = as_("acme_admin")
    admin_id = next(u["id"] for u in api.get("/users").json if u["role"] == "admin")
    demoted = api.patch(f"/users/{admin_id}", json={"role": "viewer"})
    assert demoted.status_code == 409 and demoted.json["code"] == "last_admin"
    assert api.delete(f"/users/{admin_id}").status_code == 409
    second = api.post("/users", json={"email": "boss2@acme.example", "role": "admin"}).json["id"]
    assert api.patch(f"/users/{admin_id}", json={"role": "editor"}).status_code == 200
    assert api.delete(f"/users/{second}").status_code == 409


def test_tokens_created_once_listed_and_revoked(as_, app):
    api = as_("acme_admin")
    created = api.post("/tokens", json={"name": "website", "role": "editor"})
    assert created.status_code == 201 and created.json["token"].startswith("cjt_")
    secret = created.json["token"]
    listed = {t["name"]: t for t in api.get("/tokens").json}
    assert "token" not in listed["website"] and secret.startswith(listed["website"]["prefix"])
    website = Api(app.test_client(), secret)
    assert website.post("/events", json={"type": "subscribed", "key": "news",
                                         "contact": {"email": "a@b.example"}}).status_code == 202
    revoked = api.delete(f"/tokens/{created.json['id']}")
    assert revoked.json["revoked"] is True
    assert website.get("/journeys").status_code == 401


def test_admin_endpoints_are_admin_only_and_tenant_scoped(as_):
    for who in ("acme_editor", "acme_viewer"):
        assert as_(who).get("/users").status_code == 403
        assert as_(who).post("/tokens", json={"name": "x"}).status_code == 403
    acme = as_("acme_admin")
    globex = as_("globex_admin")
    uid = acme.get("/users").json[1]["id"]
    tid = acme.get("/tokens").json[0]["id"]
    assert globex.patch(f"/users/{uid}", json={"role": "viewer"}).status_code == 404
    assert globex.delete(f"/users/{uid}").status_code == 404
    assert globex.delete(f"/tokens/{tid}").status_code == 404
    assert "admin@acme.example" not in [u["email"] for u in globex.get("/users").json]


def test_admin_pages(app):
    admin = sign_in(app, "admin@acme.example")
    page = admin.get("/admin/users")
    assert page.status_code == 200 and "editor@acme.example" in page.text and "Users &amp; tokens" in page.text
    assert admin.client.post("/admin/users", data={"email": "z@acme.example", "role": "viewer"}).status_code == 400
    bad = admin.post("/admin/users", {"email": "nope", "role": "viewer"})
    assert bad.status_code == 422 and "Enter an email address." in bad.text
    invited = admin.post("/admin/users", {"email": "zoe@acme.example", "role": "viewer", "password": ""})
    assert invited.status_code == 201
    temporary = re.search(r'id="temporary-password">([^<]+)<', invited.text).group(1)
    zoe = sign_in_with(app, "zoe@acme.example", temporary)
    assert zoe.get("/admin/users").headers["Location"] == "/account/password"  # temporary: change it first
    zoe.get("/account/password")
    zoe.post("/account/password", {"current_password": temporary, "new_password": "zoe-own-pass",
                                   "confirm_password": "zoe-own-pass"})
    assert zoe.get("/admin/users").status_code == 403
    users = admin.get("/admin/users").text
    uid = re.search(r'data-user="zoe@acme.example">.*?/admin/users/(\d+)/role', users, re.S).group(1)
    assert admin.post(f"/admin/users/{uid}/role", {"role": "editor"}).status_code == 302
    assert "zoe@acme.example is now editor." in admin.get("/admin/users").text
    assert admin.post(f"/admin/users/{uid}/delete").status_code == 302
    assert "zoe@acme.example" not in admin.get("/admin/users").text.split('id="users"')[1].split("</table>")[0]
    assert zoe.get("/journeys").status_code == 302  # signed out: the user is gone

    tokens = admin.post("/admin/tokens", {"name": "crm hooks", "role": "editor"})
    assert tokens.status_code == 201
    secret = re.search(r'id="token-secret">([^<]+)<', tokens.text).group(1)
    listing = admin.get("/admin/tokens").text
    assert "crm hooks" in listing and secret not in listing
    tid = re.search(r'data-token="crm hooks".*?/admin/tokens/(\d+)/revoke', listing, re.S).group(1)
    assert admin.post(f"/admin/tokens/{tid}/revoke").status_code == 302
    assert Api(app.test_client(), secret).get("/journeys").status_code == 401
    assert admin.post("/admin/tokens", {"name": "", "role": "editor"}).status_code == 422


def sign_in_with(app, email, password):
    from tests.test_web_ui import Browser

    browser = Browser(app.test_client())
    browser.get("/login")
    assert browser.post("/login", {"email": email, "password": password}).status_code == 302
    browser.get("/journeys")
    return browser


def test_editor_cannot_open_admin_pages(app):
    editor = sign_in(app, "editor@acme.example")
    assert editor.get("/admin/users").status_code == 403
    assert editor.post("/admin/tokens", {"name": "x", "role": "admin"}).status_code == 403
    assert "Users &amp; tokens" not in editor.get("/journeys").text


def test_cli_user_and_token_create(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    made = runner.invoke(main, ["--database", url, "user", "create", "Ops@Shop.example", "--role", "admin",
                                "--tenant", "shop", "--password", "correct-horse"])
    assert made.exit_code == 0, made.output
    assert "ops@shop.example: admin of shop" in made.output
    again = runner.invoke(main, ["--database", url, "user", "create", "ops@shop.example", "--tenant", "shop",
                                 "--password", "correct-horse"])
    assert again.exit_code == 1 and "already a user" in again.output
    prompted = runner.invoke(main, ["--database", url, "user", "create", "v@shop.example", "--role", "viewer",
                                    "--tenant", "shop"], input="short\nshort\n")
    assert prompted.exit_code == 1 and "at least 8" in prompted.output
    tok = runner.invoke(main, ["--database", url, "token", "create", "website", "--role", "editor", "--tenant", "shop"])
    assert tok.exit_code == 0 and tok.output.strip().startswith("cjt_")
    from crm_journeys.auth import token_principal
    from crm_journeys.storage.db import Database

    db = Database(url)
    with db.unit_of_work() as s:
        principal = token_principal(s, tok.output.strip())
        assert principal is not None and principal.role == "editor"
        assert authenticate(s, "ops@shop.example", "correct-horse") is not None
    db.dispose()
