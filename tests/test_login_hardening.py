"""Sign-in hardening (item 3): a safe ``next``, throttling per account and per client that
holds across processes, the same work for unknown users, sessions voided by logout and
password change, and a forced change of a temporary password."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crm_journeys.app import create_app
from tests.test_web_ui import Browser, sign_in


@pytest.mark.parametrize("target", [
    "/%09/evil.example", "/%0d%0aSet-Cookie:%20x=1", "//evil.example", "/\\evil.example",
    "https://evil.example/", "/%5Cevil.example", "javascript:alert(1)", "/%7F/evil.example",
])
def test_next_only_goes_to_a_path_on_this_site(app, target):
    browser = Browser(app.test_client())
    browser.get("/login")
    answer = browser.post(f"/login?next={target}", {"email": "editor@acme.example", "password": "password-123"})
    assert answer.status_code == 302 and answer.headers["Location"] == "/journeys"


def test_a_plain_next_path_is_kept(app):
    browser = Browser(app.test_client())
    browser.get("/login")
    answer = browser.post("/login?next=/templates?x=1", {"email": "editor@acme.example", "password": "password-123"})
    assert answer.headers["Location"] == "/templates?x=1"


def _try(app, email, password):  # type: ignore[no-untyped-def]
    browser = Browser(app.test_client())
    browser.get("/login")
    return browser.post("/login", {"email": email, "password": password})


def test_guessing_one_accounts_password_is_stopped_even_with_the_right_one(app, database, clock):
    for _ in range(10):
        assert _try(app, "admin@acme.example", "wrong-guess").status_code == 200
    blocked = _try(app, "admin@acme.example", "password-123")
    assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.text
    # another web process on the same database sees the same count
    other = create_app({"TESTING": True, "CRM_JOURNEYS_DATABASE_URL": database.url, "SECRET_KEY": "test"},
                       clock=clock)
    try:
        assert _try(other, "ADMIN@acme.example", "password-123").status_code == 429
    finally:
        other.extensions["crm_journeys"].db.dispose()
    assert _try(app, "editor@acme.example", "password-123").status_code == 302  # other accounts are fine
    clock.advance(timedelta(minutes=16))  # the window ends
    assert _try(app, "admin@acme.example", "password-123").status_code == 302


def test_one_client_spraying_many_accounts_is_stopped(app):
    for n in range(50):
        _try(app, f"user{n}@acme.example", "wrong-guess")
    assert _try(app, "viewer@acme.example", "password-123").status_code == 429


def test_an_unknown_email_costs_a_password_check_too(app, monkeypatch):
    """No timing here (never timed assertions): the refusal does the same hashing work."""
    from crm_journeys.auth import accounts

    checked = []
    real = accounts.check_password_hash
    monkeypatch.setattr(accounts, "check_password_hash", lambda h, p: checked.append(h) or real(h, p))
    _try(app, "nobody@acme.example", "whatever-123")
    assert len(checked) == 1 and checked[0].startswith("scrypt:")


def test_logout_voids_every_copy_of_the_session_cookie(app):
    browser = sign_in(app, "editor@acme.example")
    stolen = browser.client.get_cookie("session").value
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    assert thief.get("/journeys").status_code == 200
    browser.post("/logout")
    assert thief.get("/journeys").headers["Location"].startswith("/login")


def test_a_password_change_signs_out_other_sessions_and_keeps_this_one(app):
    laptop, phone = sign_in(app, "editor@acme.example"), sign_in(app, "editor@acme.example")
    laptop.get("/account/password")
    changed = laptop.post("/account/password", {"current_password": "password-123",
                                                "new_password": "new-password-456",
                                                "confirm_password": "new-password-456"})
    assert changed.status_code == 302
    assert laptop.get("/journeys").status_code == 200
    assert phone.get("/journeys").headers["Location"].startswith("/login")
    assert _try(app, "editor@acme.example", "password-123").status_code == 200  # old one refused
    assert _try(app, "editor@acme.example", "new-password-456").status_code == 302


def test_wrong_current_password_is_refused_next_to_the_field(app):
    browser = sign_in(app, "editor@acme.example")
    browser.get("/account/password")
    answer = browser.post("/account/password", {"current_password": "nope-nope", "new_password": "x" * 9,
                                               "confirm_password": "x" * 9})
    assert answer.status_code == 400 and "current_password: This is not your current password." in answer.text


def test_a_temporary_password_must_be_changed_before_anything_else(app, as_):
    invited = as_("acme_admin").post("/users", json={"email": "new@acme.example", "role": "editor"})
    temporary = invited.get_json()["temporary_password"]
    browser = Browser(app.test_client())
    browser.get("/login")
    answer = browser.post("/login", {"email": "new@acme.example", "password": temporary})
    assert answer.headers["Location"] == "/account/password"
    assert browser.get("/journeys").headers["Location"] == "/account/password"
    assert browser.client.get("/api/journeys").status_code == 403
    page = browser.get("/account/password")
    assert "temporary password" in page.text
    browser.post("/account/password", {"current_password": temporary, "new_password": "my-own-pass-1",
                                       "confirm_password": "my-own-pass-1"})
    assert browser.get("/journeys").status_code == 200
