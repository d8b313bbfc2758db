"""Every page, as an admin sees it, passes axe-core (no serious or critical violation) and
fits a 390 px wide phone without sideways scrolling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser.test_canvas_builder import assert_accessible

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "welcome_promo.json"


def overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_is_accessible_and_fits(server, page, width):
    page.set_viewport_size({"width": width, "height": 900})
    page.goto("/login")
    assert_accessible(page, "login")
    page.fill("#email", "olga@shop.example")
    page.fill("#password", "correct-horse")
    page.click("button[type=submit]")
    page.locator("h1").wait_for()
    created = page.request.post("/api/journeys", data={"document": json.loads(EXAMPLE.read_text())},
                                headers={"X-CSRF-Token": page.evaluate(
                                    "document.querySelector('input[name=csrf_token]').value")})
    assert created.status == 201, created.text()
    jid = created.json()["id"]
    published = page.request.post(f"/api/journeys/{jid}/publish", data={}, headers={"X-CSRF-Token": page.evaluate(
        "document.querySelector('input[name=csrf_token]').value")})
    assert published.status == 200, published.text()
    pages = ["/journeys", "/templates", "/contacts", "/segments", "/custom-triggers", "/admin/users",
             "/admin/integrations", "/admin/action-errors", f"/journeys/{jid}/canvas", f"/journeys/{jid}", f"/journeys/{jid}/starting-points/0", "/segments/new", "/custom-triggers/new", "/admin/tokens",
             f"/journeys/{jid}/map", f"/journeys/{jid}/test", f"/journeys/{jid}/analytics",
             f"/journeys/{jid}/versions?from=1&to=draft"]
    problems = []
    for path in pages:
        response = page.goto(path)
        assert response.status == 200, path
        if "/canvas" in path:
            page.locator("#cv-status").filter(has_text="version").wait_for()
        try:
            assert_accessible(page, path)
        except AssertionError as exc:
            problems.append(str(exc))
        if overflow(page) > 1:
            problems.append(f"{path}: {overflow(page)}px of sideways scrolling at {width}px")
    assert not problems, "\n".join(problems)
