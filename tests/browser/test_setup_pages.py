"""Workspace setup in a real Chromium: a business user creates a segment in the AND/OR
form, sees its member count and members, and starts a journey from it in the builder; an
admin declares a custom trigger and makes the Zapier secret. Screenshots go to
test-artifacts/ (setup-*.png)."""

from __future__ import annotations

from tests.browser.conftest import screenshot


def shot(page, name: str) -> None:
    screenshot(page, f"setup-{name}")


def sign_in(page, email: str) -> None:
    page.goto("/login")
    page.fill("#email", email)
    page.fill("#password", "correct-horse")
    page.click("button[type=submit]")


def tagged_contacts(page, token: str) -> None:
    """Three contacts reach the mirror through the events API, two of them tagged VIP."""
    auth = {"Authorization": f"Bearer {token}"}
    for email, tag in (("ada@example.com", "VIP"), ("bob@example.com", "VIP"), ("cy@example.com", "newsletter")):
        answer = page.request.post("/api/events", headers=auth,
                                   data={"type": "tag_added", "key": tag, "contact": {"email": email}})
        assert answer.status == 202, answer.text()
    for _ in range(60):  # the embedded worker takes them within a second or two
        contacts = page.request.get("/api/contacts", headers=auth).json()
        if sum("VIP" in c["tags"] for c in contacts) == 2:
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"the worker did not mirror the contacts: {contacts}")


def test_segment_from_the_form_to_a_journey_starting_point(server, page):
    from playwright.sync_api import expect

    tagged_contacts(page, server["token"])
    sign_in(page, "maria@shop.example")
    page.click("header >> text=Segments")
    expect(page.locator("h1")).to_have_text("Segments")
    page.click("#new-segment")
    page.fill("#f-name", "VIPs")
    page.select_option("select[name='condition.r0.op']", "has_tag")
    page.fill("input[name='condition.r0.value']", "VIP")
    shot(page, "01-new-segment-form")
    page.click("#segment-form button[type=submit]")
    expect(page.locator(".flash")).to_contain_text("2 contacts match it now")
    expect(page.locator("#member-count")).to_have_text("2 members")
    expect(page.locator("#summary")).to_contain_text("has tag “VIP”")
    expect(page.locator("#members")).to_contain_text("ada@example.com")
    expect(page.locator("#members")).not_to_contain_text("cy@example.com")
    shot(page, "02-segment-page")

    page.click("header >> text=Segments")
    expect(page.locator("tr[data-segment='VIPs'] [data-members]")).to_have_text("2")
    shot(page, "03-segment-list")

    page.click("header >> text=All journeys")
    page.click("text=New blank journey")
    page.select_option("select[name=type][aria-label='Starting point type']", "joined_segment")
    page.click("text=Add starting point")
    expect(page.locator("#picker-segments option[value='VIPs']")).to_have_count(1)
    page.fill("input[name='params.segment']", "VIPs")
    expect(page.locator("input[name='params.existing_members']")).to_be_checked()
    expect(page.locator("input[name='params.new_members']")).to_be_checked()
    shot(page, "04-segment-starting-point")
    page.click("button:has-text('Save starting point')")
    expect(page.locator(".flash")).to_contain_text("Starting point saved")
    expect(page.locator("main")).to_contain_text("segment: VIPs")
    shot(page, "05-builder-with-segment")

    page.click("header >> text=Segments")
    page.click("tr[data-segment='VIPs'] a")
    expect(page.locator("#used-by")).to_contain_text("Untitled journey")
    expect(page.locator("#used-by")).to_contain_text("in the draft only")


def test_admin_declares_a_trigger_and_makes_the_zapier_secret(server, page):
    from playwright.sync_api import expect

    sign_in(page, "olga@shop.example")
    page.click("header >> text=Custom triggers")
    page.click("#new-trigger")
    page.fill("#f-name", "vip_call")
    page.fill("input[name='attr0.name']", "Minutes!")
    page.select_option("select[name='attr0.type']", "number")
    page.click("#trigger-form button[type=submit]")
    expect(page.locator("tr[data-row='0'] .error")).to_contain_text("Use lowercase letters")
    shot(page, "06-trigger-error-next-to-field")
    page.fill("input[name='attr0.name']", "minutes")
    page.check("input[name='attr0.required']")
    page.fill("input[name='attr1.name']", "topic")
    page.click("#trigger-form button[type=submit]")
    expect(page.locator(".flash")).to_contain_text("saved")
    expect(page.locator("#example-events-api")).to_contain_text('"key": "vip_call"')
    shot(page, "07-trigger-page")
    page.click("header >> text=Custom triggers")
    shot(page, "08-trigger-list")

    page.click("header >> text=Integrations")
    expect(page.locator("#zapier [data-last-used]")).to_have_text("No delivery accepted yet")
    page.click("#make-zapier-secret")
    secret = page.locator("#new-secret").text_content()
    shot(page, "09-integrations-secret-shown-once")
    answer = page.request.post("/hooks/shop/zapier", headers={"X-Zapier-Secret": secret},
                               data={"email": "zed@example.com", "zap": "lead-form"})
    assert answer.status == 202, answer.text()
    page.click("header >> text=Integrations")
    expect(page.locator("#zapier [data-last-used]")).to_contain_text("Last delivery accepted")
    expect(page.locator("main")).not_to_contain_text(secret)
    shot(page, "10-integrations")
