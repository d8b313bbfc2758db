"""Security headers on every answer of crm_journeys, and ``no-store`` on everything dynamic.

Written as one ``after_request`` hook rather than with Flask-Talisman: Talisman would also
force HTTPS redirects and session-cookie flags that ``web.ui.pages`` already sets, and it applies
to the whole app, while crm_journeys may be mounted in a host's Flask app whose own pages
are not ours to constrain. So the headers go on our blueprints' answers, and on every
answer when the app is ours alone (``create_app`` sets ``CRM_JOURNEYS_STANDALONE``).

The CSP allows scripts and styles from this origin only: no inline ``<script>``, no event
handler attributes (the UI's behaviour lives in ``static/app.js``), no framing by other
sites. ``style-src-attr 'unsafe-inline'`` keeps the templates' ``style=""`` layout
attributes working: they cannot run script, and ``<style>`` elements stay refused.
"""

from __future__ import annotations

from flask import Flask, Response, request

CSP = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "style-src-attr 'unsafe-inline'",
    "img-src 'self' data:", "connect-src 'self'", "font-src 'self'", "object-src 'none'",
    "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
])
HSTS = "max-age=31536000; includeSubDomains"


def ours() -> bool:
    return (request.blueprint or "").startswith("crm_journeys")


def apply(response: Response) -> Response:
    from flask import current_app

    if not (ours() or current_app.config.get("CRM_JOURNEYS_STANDALONE")):
        return response
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", HSTS)
    if not (request.endpoint or "").endswith(".static"):
        # pages and answers carry tenant data, new tokens and temporary passwords: never cached
        headers["Cache-Control"] = "no-store"
        headers.setdefault("Pragma", "no-cache")
    return response


def init_app(app: Flask) -> None:
    app.after_request(apply)
