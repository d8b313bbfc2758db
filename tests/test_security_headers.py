"""Security headers on every answer (item 4): CSP without inline script, no framing,
nosniff, a referrer policy, HSTS over HTTPS, and no caching of pages that show secrets."""

from __future__ import annotations

import re
from pathlib import Path

import crm_journeys
from tests.test_web_ui import sign_in

TEMPLATES = Path(crm_journeys.__file__).parent / "web" / "templates"


def _secure_headers(answer):  # type: ignore[no-untyped-def]
    csp = answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "same-origin"


def test_every_kind_of_answer_carries_the_headers(app):
    client = app.test_client()
    for path in ("/login", "/journeys", "/api/journeys", "/no/such/page", "/static/crm_journeys/app.css",
                 "/api/openapi.json"):
        _secure_headers(client.get(path))
    assert "Strict-Transport-Security" not in client.get("/login").headers
    assert client.get("/login", base_url="https://journeys.example").headers[
        "Strict-Transport-Security"].startswith("max-age=")


def test_pages_showing_a_secret_are_not_cached(app, as_):
    created = as_("acme_admin").post("/tokens", json={"name": "ci", "role": "editor"})
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    admin = sign_in(app, "admin@acme.example")
    admin.get("/admin/tokens")
    page = admin.post("/admin/tokens", {"name": "crm hooks", "role": "editor"})
    assert page.status_code == 201 and page.headers["Cache-Control"] == "no-store"
    static = app.test_client().get("/static/crm_journeys/app.css")
    assert static.headers.get("Cache-Control") != "no-store"  # static files may be cached


def test_templates_hold_no_inline_script_or_event_handlers():
    """The CSP refuses them, so a template using one would break in the browser."""
    offenders = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        for match in re.finditer(r"<script(?![^>]*\bsrc=)[^>]*>|\s(on[a-z]+)\s*=\s*[\"']|javascript:", text):
            offenders.append(f"{path.name}: {match.group(0).strip()}")
    assert offenders == []
