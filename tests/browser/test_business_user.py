"""A business user in a real Chromium: sign in, build the welcome journey from its
template, fix the validation error, publish, send a signup through the events API, and
see the contact on the map and in analytics. Screenshots go to test-artifacts/."""

from __future__ import annotations

from tests.browser.conftest import screenshot


def shot(page, name: str) -> None:
    screenshot(page, f"{name}")


def test_welcome_journey_from_template_to_analytics(server, page):
    from playwright.sync_api import expect

    page.goto("/login")
    page.fill("#email", "maria@shop.example")
    page.fill("#password", "correct-horse")
    shot(page, "01-login")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Journeys")

    page.click("text=Templates")
    shot(page, "02-templates")
    page.locator("[data-template=welcome_promo] button").click()
    expect(page.locator("#problems")).to_contain_text("1 thing to fix before publishing")
    page.click("#publish-form button[type=submit]")
    expect(page.locator(".flash.error")).to_contain_text("not ready to publish")
    shot(page, "03-builder-with-error")

    page.locator("#problems a").first.click()
    body_field = page.locator(".field:has(textarea[name='params.body'])")
    expect(body_field.locator(".error")).to_have_text("This can't be empty.")
    shot(page, "04-step-error-next-to-field")
    page.fill("textarea[name='params.body']", "Use code WELCOME10 at checkout.")
    page.click("#step-form button:has-text('Save step')")
    expect(page.locator("#problems")).to_have_count(0)
    page.click("#publish-form button[type=submit]")
    expect(page.locator(".flash")).to_contain_text("Published")
    expect(page.locator(".badge.live")).to_be_visible()

    response = page.request.post("/api/events", headers={"Authorization": f"Bearer {server['token']}"},
                                 data={"type": "subscribed", "contact": {"email": "ada@example.com"},
                                       "properties": {"list": "newsletter", "first_name": "Ada"}, "id": "signup-1"})
    assert response.status == 202, response.text()

    page.click("text=Map")
    waiting = page.locator("a[data-step=opened_welcome] .counts")
    for _ in range(40):  # the embedded worker picks the event up within a second or two
        if "1 waiting" in waiting.text_content():
            break
        page.wait_for_timeout(250)
        page.reload()
    expect(waiting).to_contain_text("1 waiting")
    expect(page.locator("a[data-step=welcome] .counts")).to_contain_text("1 passed")
    shot(page, "05-map-with-contact")

    page.click("nav.tabs >> text=Analytics")
    expect(page.locator("[data-count=entered]")).to_have_text("1")
    expect(page.locator("[data-count=waiting]")).to_have_text("1")
    expect(page.locator("table").last).to_contain_text("ada@example.com")
    expect(page.locator("table").last).to_contain_text("Opened the welcome email? (check after 3 days)")
    shot(page, "06-analytics")
    page.click("text=Timeline")
    expect(page.locator(".timeline")).to_contain_text("starting point 'subscribed'")
    expect(page.locator("h2")).to_contain_text("at “Opened the welcome email? (check after 3 days)”")
    shot(page, "07-timeline")

    page.click("text=Contacts & CRM")
    expect(page.locator("#records")).to_contain_text("Welcome")
    shot(page, "08-sandbox-crm")
