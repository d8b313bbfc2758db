"""A tenant whose CRM cannot be reached, in a real Chromium: the embedded worker records the
failure on the tenant and its admin reads it on the Integrations page in plain words.
Screenshot: test-artifacts/connector-failure.png."""

from __future__ import annotations

import socket

from sqlalchemy import select

from crm_journeys.secrets import encrypt_json
from crm_journeys.storage.db import Database
from crm_journeys.storage.models import Tenant
from tests.browser.conftest import screenshot
from tests.browser.test_setup_pages import sign_in


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_admin_reads_why_the_crm_is_not_syncing(server, page, tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'app.db'}")
    with db.unit_of_work() as s:  # the workspace now points at a BottleCRM that is down
        shop = s.scalar(select(Tenant).where(Tenant.slug == "shop"))
        shop.connector = "bottlecrm"
        shop.settings = {"url": f"http://127.0.0.1:{_closed_port()}", "sync_interval_seconds": 60}
        shop.credentials = encrypt_json({"token": "bcrm_pat_" + "x" * 43})
    db.dispose()
    sign_in(page, "olga@shop.example")
    for _ in range(120):  # the worker opens a sync slot within seconds and retries it
        page.goto("/admin/integrations")
        if page.locator("[data-connector-error]").count():
            break
        page.wait_for_timeout(500)
    card = page.locator("#crm-connection")
    assert "CRM connection (bottlecrm)" in card.inner_text()
    error = page.locator("[data-connector-error]").inner_text()
    assert "sync delayed: could not reach bottlecrm at http://127.0.0.1:" in error
    assert "check the URL and that the server is running" in error
    assert "HTTPConnectionPool" not in error  # the detail is for the log, not the admin
    assert "Other workspaces are not affected" in card.inner_text()
    screenshot(page, "connector-failure")
