"""An admin in a real Chromium: the CRM refuses a journey's lead (a required property is
missing), the admin finds it under "Action errors" with the host's reason, fixes the
cause and retries it from the page; the embedded worker then creates the lead once.
Screenshots go to test-artifacts/ (action-errors-*.png)."""

from __future__ import annotations

from tests.browser.conftest import screenshot
from tests.refusing_host import LEAD_JOURNEY, RefusingHost, missing_property


def shot(page, name: str) -> None:
    screenshot(page, f"action-errors-{name}")


def reload_until(page, locator, count: int) -> None:
    """The embedded worker works within a second or two: reload until it shows."""
    for _ in range(60):
        if locator.count() == count:
            return
        page.wait_for_timeout(250)
        page.reload()
    raise AssertionError(f"{locator} never reached {count} on {page.url}")


def test_admin_retries_a_refused_lead_from_the_page(server, page, monkeypatch):
    from playwright.sync_api import expect

    host = RefusingHost(monkeypatch)
    host.failure = missing_property()
    auth = {"Authorization": f"Bearer {server['token']}"}
    journey = page.request.post("/api/journeys", headers=auth, data={"document": LEAD_JOURNEY}).json()
    assert page.request.post(f"/api/journeys/{journey['id']}/publish", headers=auth, data={}).ok
    assert page.request.post("/api/events", headers=auth, data={
        "type": "form_submitted", "key": "demo", "contact": {"email": "ada@example.com"}}).status == 202

    page.goto("/login")
    page.fill("#email", "olga@shop.example")
    page.fill("#password", "correct-horse")
    page.click("button[type=submit]")
    page.click("header >> #nav-action-errors")
    expect(page.locator("h1")).to_have_text("Action errors")
    row = page.locator("#action-errors tr[data-status=dead]")
    reload_until(page, row, 1)
    expect(page.locator("#dead-count")).to_have_text("1")
    expect(row).to_contain_text("ada@example.com")
    expect(row).to_contain_text("Lead on form")
    expect(row.locator(".last-error")).to_contain_text("REQUIRED_FIELD")
    expect(row.locator(".last-error")).to_contain_text("<b>fix the form</b>")  # shown as text, not markup
    shot(page, "01-dead-lead")

    host.failure = None  # the admin fixes the portal's required property
    row.locator("button:has-text('Retry')").click()
    expect(page.locator(".flash")).to_have_text("1 action sent again.")
    expect(page.locator("#dead-count")).to_have_count(0)
    shot(page, "02-retried")
    for _ in range(60):
        leads = page.request.get("/api/sandbox/records?kind=lead").json()
        if leads:
            break
        page.wait_for_timeout(250)
    assert [lead["data"]["title"] for lead in leads] == ["Demo request"]
    reload_until(page, page.locator("#action-errors tr[data-outbox]"), 0)
    expect(page.locator("#action-errors")).to_contain_text("No failed actions.")
    assert host.calls == 2
