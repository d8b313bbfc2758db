"""The SMS step in a real Chromium: the builder's form shows the message's character and
segment count and a preview, and both follow the text as the author types."""

from __future__ import annotations

from tests.browser.conftest import screenshot

DOC = {"format_version": 1, "name": "Text new leads", "entry": {"policy": "once"},
       "starting_points": [{"id": "go", "type": "tag_added", "params": {"tag": "lead"}, "next": None}],
       "first_step": "text",
       "steps": [{"id": "text", "type": "action", "action": "send_sms", "next": None,
                  "params": {"body": "Hi {{ contact.first_name }}, thanks!", "sms_id": "welcome"}}]}


def test_sms_step_counts_segments_and_previews_as_you_type(server, page):
    from playwright.sync_api import expect

    made = page.request.post("/api/journeys", headers={"Authorization": f"Bearer {server['token']}"},
                             data={"document": DOC})
    assert made.status == 201, made.text()
    journey_id = made.json()["id"]
    page.goto("/login")
    page.fill("#email", "maria@shop.example")
    page.fill("#password", "correct-horse")
    page.click("button[type=submit]")
    page.goto(f"/journeys/{journey_id}/steps/text")
    count = page.locator(".sms-count")
    bubble = page.locator(".sms-bubble")
    expect(bubble).to_have_text("Hi Ada, thanks!")  # merge fields previewed with sample values
    expect(count.locator("[data-part=segments]")).to_have_text("1")
    expect(count.locator("[data-part=encoding]")).to_have_text("GSM-7")
    screenshot(page, "sms-01-step-one-segment")

    area = page.locator("textarea[name='params.body']")
    area.fill("x" * 161)
    expect(count.locator("[data-part=segments]")).to_have_text("2")
    expect(count.locator("[data-part=characters]")).to_have_text("161")
    area.fill("Grüße 👋 " + "y" * 70)
    expect(count.locator("[data-part=encoding]")).to_have_text("UCS-2")
    expect(count.locator("[data-part=segments]")).to_have_text("2")
    expect(count.locator("[data-part=note]")).to_contain_text("outside GSM-7")
    screenshot(page, "sms-02-step-unicode-two-segments")
    area.fill("z" * 1531)
    expect(count.locator("[data-part=segments]")).to_have_text("11")
    expect(count).to_have_class("sms-count over")

    area.fill("Hi {{ contact.first_name }}, your table is booked. Reply STOP to opt out.")
    page.click("#step-form button:has-text('Save step')")
    page.goto(f"/journeys/{journey_id}/steps/text")
    expect(bubble).to_have_text("Hi Ada, your table is booked. Reply STOP to opt out.")
