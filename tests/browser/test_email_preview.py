"""An editor previews a journey email on the step page and sends a test to herself
(a real SMTP server receives it)."""

from __future__ import annotations

import sqlite3
from email import message_from_bytes

from tests.browser.conftest import screenshot
from tests.mail_fixtures import Inbox, start
from tests.test_email_tracking import WEBINAR


def test_editor_previews_and_sends_a_test(server, page, tmp_path):
    from playwright.sync_api import expect

    inbox = Inbox()
    controller = start(inbox)
    try:
        with sqlite3.connect(tmp_path / "app.db") as db:  # the tenant's SMTP server
            db.execute("UPDATE cj_tenant SET settings = ? WHERE slug = 'shop'",
                       (f'{{"smtp_url": "smtp://127.0.0.1:{controller.port}"}}',))
        auth = {"Authorization": f"Bearer {server['token']}"}
        journey = page.request.post("/api/journeys", headers=auth, data={"document": WEBINAR}).json()
        page.goto("/login")
        page.fill("#email", "maria@shop.example")
        page.fill("#password", "correct-horse")
        page.click("button[type=submit]")
        page.goto(f"/journeys/{journey['id']}/steps/mail")
        page.click("#email-preview button[value=preview]")
        expect(page.locator("#preview-subject")).to_have_text("Join us, Jane")
        frame = page.frame_locator("iframe[title='Email preview']")
        expect(frame.locator("body")).to_contain_text("https://shop.example/agenda")
        page.locator("iframe[title='Email preview']").scroll_into_view_if_needed()
        page.screenshot(path="test-artifacts/email-preview-panel.png")  # the viewport: iframes show there
        screenshot(page, "email-preview")
        page.click("#email-preview button[value=test]")
        expect(page.locator(".flash")).to_have_text("Test email sent to maria@shop.example.")
        [raw] = inbox.messages
        msg = message_from_bytes(raw)
        assert msg["To"] == "maria@shop.example" and msg["Subject"] == "[Test] Join us, Jane"
    finally:
        controller.stop()
