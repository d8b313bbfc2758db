"""The real-browser tests' shared set-up: the app with its embedded worker served on
127.0.0.1, a tenant with an editor, an admin and a website token, and a Chromium tab
(Debian's /usr/bin/chromium driven by Playwright). Screenshots go to test-artifacts/."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from crm_journeys.app import create_app
from crm_journeys.auth import create_api_token, create_user
from crm_journeys.runtime.tenants import create_tenant

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder drives a real Chromium, and is skipped without one."""
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.skipif(not CHROMIUM.exists(),
                                               reason="Debian's chromium is not installed at /usr/bin/chromium"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The app with its embedded worker, served by werkzeug on 127.0.0.1 in a thread; tenant
    "shop" with an editor (maria), an admin (olga) and a website API token."""
    app = create_app({"CRM_JOURNEYS_DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}", "SECRET_KEY": uuid.uuid4().hex,
                      "CRM_JOURNEYS_RUN_WORKER": True})
    state = app.extensions["crm_journeys"]
    with state.db.unit_of_work() as s:
        tenant = create_tenant(s, "shop", "Shop", state.runtime.clock.now())
        create_user(s, tenant.id, "maria@shop.example", "correct-horse", "editor")
        create_user(s, tenant.id, "olga@shop.example", "correct-horse", "admin")
        token = create_api_token(s, tenant.id, "website")
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{httpd.server_port}", "token": token}
    httpd.shutdown()
    state.stop_worker()
    state.db.dispose()


@pytest.fixture
def page(server: dict[str, str]) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(base_url=server["url"], viewport={"width": 1280, "height": 900})
        tab = context.new_page()
        tab.set_default_timeout(15_000)
        yield tab
        context.close()
        browser.close()


def screenshot(page: object, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]
