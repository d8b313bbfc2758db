# ruff: noqa: F811  -- pytest fixtures imported from test_api_journeys are redefined as arguments
"""The builder's harder forms through Flask's test client: goals and exit rules on
conditions, conditions three (and more) levels deep, errors on the exact condition row,
multi-split and random-split steps."""

from __future__ import annotations

import re

import pytest

from tests.formscrape import form_fields
from tests.test_web_ui import sign_in
from tests.web_fixtures import Api, welcome_doc

DE = {"op": "eq", "field": "country", "value": "DE"}
GOLD = {"op": "has_tag", "value": "gold"}
SILVER = {"op": "has_tag", "value": "silver"}
SCORE = {"op": "gt", "field": "score", "value": 50}


@pytest.fixture
def editor(app):
    return sign_in(app, "editor@acme.example")


@pytest.fixture
def api(app):
    return Api(app.test_client(), app.config["TEST_TOKENS"]["acme_editor"])


def _journey(api, doc=None):
    return api.post("/journeys", json={"document": doc or welcome_doc()}).json["id"]


def _draft(api, jid):
    return api.get(f"/journeys/{jid}").json


def _resubmit(browser, url, form_id, **changes):
    """Post the form exactly as rendered (plus ``changes``), like a user pressing Save."""
    fields = form_fields(browser.get(url).text, form_id)
    fields.update(changes)
    fields.pop("csrf_token", None)
    return browser.post(url, fields)


def test_goal_on_a_condition_and_exit_rule_on_event_and_condition(api, editor):
    jid = _journey(api, {**welcome_doc(), "goals": [], "exit_rules": []})
    url = f"/journeys/{jid}"
    editor.get(url)
    added = editor.post(url + "/goals", {"when": "condition", "label": "Became a customer"})
    assert added.headers["Location"].endswith(f"/journeys/{jid}/goals/0")
    page = editor.get(added.headers["Location"])
    assert page.status_code == 200 and 'value="condition" checked' in page.text
    assert "Needs a non-empty list of conditions" in page.text  # the empty condition, said next to it
    saved = editor.post(added.headers["Location"], {
        "label": "Became a customer", "when": "condition", "event.type": "email_opened", "event.key": "",
        "condition.mode": "any", "condition.r0.op": "has_tag", "condition.r0.value": "customer",
        "condition.r1.op": "gt", "condition.r1.field": "lifetime_value", "condition.r1.value": "0", "then": ""})
    assert saved.status_code == 302
    editor.get(url)
    editor.post(url + "/exit_rules", {"when": "event", "type": "unsubscribed"})
    rule_url = url + "/exit_rules/0"
    editor.get(rule_url)
    editor.post(rule_url, {"when": "both", "event.type": "unsubscribed", "event.key": "newsletter",
                           "condition.mode": "all", "condition.r0.op": "not_has_tag", "condition.r0.value": "vip"})
    doc = _draft(api, jid)
    assert doc["draft"]["goals"] == [{"id": "became_a_customer", "label": "Became a customer", "event": None, "then": None,
                                      "condition": {"any": [{"op": "has_tag", "value": "customer"},
                                                            {"op": "gt", "field": "lifetime_value", "value": 0}]}}]
    assert doc["draft"]["exit_rules"] == [{"id": "unsubscribed", "condition": {"all": [{"op": "not_has_tag", "value": "vip"}]},
                                           "event": {"type": "unsubscribed", "key": "newsletter", "where": None}}]
    assert doc["draft_errors"] == {}
    builder = editor.get(url).text
    assert "a condition" in builder and "unsubscribed (newsletter) while a condition" in builder
    # the goal round-trips through its own form unchanged
    assert _resubmit(editor, url + "/goals/0", "rule-form").status_code == 302
    assert _draft(api, jid)["draft"]["goals"] == doc["draft"]["goals"]


def test_conditions_three_levels_deep_are_edited_and_round_trip(api, editor):
    jid = _journey(api)
    step_url = f"/journeys/{jid}/steps/opened_welcome"
    editor.get(step_url)
    posted = editor.post(step_url, {
        "label": "Check", "duration": "P3D", "branches.yes": "promo", "branches.no": "reminder",
        "condition.mode": "any",
        "condition.r0.op": "eq", "condition.r0.field": "country", "condition.r0.value": "DE",
        "condition.g0.mode": "all",
        "condition.g0.r0.op": "gt", "condition.g0.r0.field": "score", "condition.g0.r0.value": "50",
        "condition.g0.g0.mode": "any",
        "condition.g0.g0.r0.op": "has_tag", "condition.g0.g0.r0.value": "gold",
        "condition.g0.g0.r1.op": "has_tag", "condition.g0.g0.r1.value": "silver"})
    assert posted.status_code == 302
    expected = {"any": [DE, {"all": [SCORE, {"any": [GOLD, SILVER]}]}]}
    assert _draft(api, jid)["draft"]["steps"][1]["condition"] == expected
    page = editor.get(step_url).text
    assert 'name="condition.g0.g0.r1.value" value="silver"' in page
    assert 'data-path="any[1].all[1].any[1]"' in page
    assert 'name="condition.g0.g0.g0.mode"' not in page  # no new fourth level offered
    assert _resubmit(editor, step_url, "step-form").status_code == 302
    assert _draft(api, jid)["draft"]["steps"][1]["condition"] == expected


def test_deeper_and_negated_conditions_are_shown_and_kept(api, editor):
    doc = welcome_doc()
    deep = {"all": [DE, {"any": [GOLD, {"all": [SCORE, {"any": [SILVER, {"op": "is_set", "field": "phone"}]}]}]},
                    {"not": {"any": [GOLD, SILVER]}}]}
    doc["steps"][1]["condition"] = deep
    jid = _journey(api, doc)
    step_url = f"/journeys/{jid}/steps/opened_welcome"
    page = editor.get(step_url).text
    assert 'name="condition.g0.g0.g0.r1.field" value="phone"' in page  # the fourth level is shown
    assert 'name="condition.k0"' in page  # a negated group the form cannot show is kept
    assert _resubmit(editor, step_url, "step-form").status_code == 302
    saved = _draft(api, jid)["draft"]["steps"][1]["condition"]
    assert saved == {"all": [DE, {"any": [GOLD, {"all": [SCORE, {"any": [SILVER, {"op": "is_set", "field": "phone"}]}]}]},
                             {"not": {"any": [GOLD, SILVER]}}]}


def _row_html(page: str, path: str) -> str:
    match = re.search(rf'<div class="row cond-row has-error" data-path="{re.escape(path)}">.*?</div>\s*'
                      r'<div class="row-errors">(.*?)</div>\s*</div>', page, re.S)
    assert match, f"no error row {path}"
    return match.group(1)


def test_errors_land_on_the_exact_condition_row(api, editor):
    doc = welcome_doc()
    doc["steps"][1]["condition"] = {"all": [DE, {"any": [GOLD, {"op": "gt", "field": "score", "value": "abc"}]},
                                            {"op": "within_last_days", "field": "signed_up"}]}
    jid = _journey(api, doc)
    assert set(_draft(api, jid)["draft_errors"]) == {"steps[1].condition.all[1].any[1].value",
                                                     "steps[1].condition.all[2].days"}
    page = editor.get(f"/journeys/{jid}/steps/opened_welcome").text
    assert "needs a number or an ISO date" in _row_html(page, "all[1].any[1]")
    assert "needs days" in _row_html(page, "all[2]")
    assert 'data-path="all[0]"' in page and 'class="row cond-row " data-path="all[0]"' in page  # no error there


def test_multi_split_form(api, editor):
    jid = _journey(api)
    url = f"/journeys/{jid}"
    editor.get(url)
    created = editor.post(url + "/steps", {"type": "multi_split", "label": "By country"})
    step_url = created.headers["Location"]
    page = editor.get(step_url).text
    assert 'name="cases.0.name"' in page and 'name="cases.0.condition.g0.r0.op"' in page
    editor.post(step_url, {"label": "By country", "cases.count": "3", "default": "reminder",
                           "cases.0.name": "germany", "cases.0.next": "promo", "cases.0.condition.r0.op": "eq",
                           "cases.0.condition.r0.field": "country", "cases.0.condition.r0.value": "DE",
                           "cases.1.name": "vip", "cases.1.next": "welcome", "cases.1.condition.mode": "any",
                           "cases.1.condition.r0.op": "has_tag", "cases.1.condition.r0.value": "gold",
                           "cases.1.condition.r1.op": "eq", "cases.1.condition.r1.field": "country",
                           "cases.2.name": ""})
    body = _draft(api, jid)
    split = body["draft"]["steps"][-1]
    assert split == {"id": "by_country", "type": "multi_split", "label": "By country", "default": "reminder",
                     "cases": [{"name": "germany", "condition": {"all": [DE]}, "next": "promo"},
                               {"name": "vip", "condition": {"any": [GOLD, {"op": "eq", "field": "country", "value": None}]},
                                "next": "welcome"}]}
    assert list(body["draft_errors"]) == ["steps[4].cases[1].condition.any[1].value"]
    page = editor.get(step_url).text
    assert "needs a value" in _row_html(page, "any[1]")
    assert _resubmit(editor, step_url, "step-form").status_code == 302
    assert _draft(api, jid)["draft"]["steps"][-1] == split


def test_random_split_form(api, editor):
    jid = _journey(api)
    url = f"/journeys/{jid}"
    editor.get(url)
    step_url = editor.post(url + "/steps", {"type": "random_split", "label": "A/B"}).headers["Location"]
    page = editor.get(step_url).text
    assert 'name="paths.0.percent" value="50"' in page and 'name="paths.2.name" value=""' in page
    editor.post(step_url, {"label": "A/B", "paths.count": "3", "paths.0.name": "A", "paths.0.percent": "60",
                           "paths.0.next": "promo", "paths.1.name": "B", "paths.1.percent": "forty",
                           "paths.1.next": "reminder", "paths.2.name": ""})
    body = _draft(api, jid)
    assert body["draft"]["steps"][-1]["paths"] == [{"name": "A", "percent": 60, "next": "promo"},
                                                   {"name": "B", "percent": "forty", "next": "reminder"}]
    assert "steps[4].paths[1].percent" in body["draft_errors"]
    page = editor.get(step_url).text
    assert 'data-path="paths[1].percent"' in page and "Enter a whole number." in page
    editor.post(step_url, {"label": "A/B", "paths.count": "2", "paths.0.name": "A", "paths.0.percent": "60",
                           "paths.0.next": "promo", "paths.1.name": "B", "paths.1.percent": "40",
                           "paths.1.next": "reminder"})
    assert not [p for p in _draft(api, jid)["draft_errors"] if p.startswith("steps[4].")]
