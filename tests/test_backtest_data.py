# ruff: noqa: F811  -- pytest fixtures imported from test_api_journeys are redefined as arguments
"""Backtests replay what the outside world did, over the tenant's real contacts: events the
journeys' own actions produced are left out, and the contact mirror is copied in."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import select

from crm_journeys.runtime.ingest import IncomingEvent, ingest
from crm_journeys.services.testmode import recorded_events
from crm_journeys.storage.models import Contact
from tests.web_fixtures import drain, welcome_doc


def _state(app):
    return app.extensions["crm_journeys"]


def test_events_of_the_journeys_own_actions_are_not_replayed(app, clock):
    tenant = app.config["TEST_TENANTS"]["acme"]
    start = clock.now()
    with _state(app).db.unit_of_work() as s:
        for n, dedup in enumerate(["sent:i1:welcome", "tag_added:i1:s2", "tag_removed:i1:s3", "fields:i1:s4",
                                   "add:i1:s5", "api:signup-1", "tagXadded:7", "sentinel:8"]):
            ingest(s, tenant, IncomingEvent("subscribed", {"email": f"c{n}@example.com"}, key="newsletter",
                                            dedup_key=dedup), start)
        kept = [e["dedup_key"] for e in recorded_events(s, tenant, start - timedelta(days=1))]
    assert kept == ["api:signup-1", "tagXadded:7", "sentinel:8"]  # "_" is no wildcard


def test_backtest_filters_see_the_tenants_current_contacts(as_, app, clock):
    api = as_("acme_editor")
    for n in range(3):
        api.post("/events", json={"type": "subscribed", "key": "newsletter", "contact": {"email": f"c{n}@example.com"},
                                  "id": f"signup-{n}"})
    drain(app)
    tenant = app.config["TEST_TENANTS"]["acme"]
    with _state(app).db.unit_of_work() as s:  # the CRM says two of them are in Germany (no event said so)
        for contact in s.scalars(select(Contact).where(Contact.tenant_id == tenant,
                                                       Contact.email.in_(["c0@example.com", "c2@example.com"]))):
            contact.fields = {**contact.fields, "country": "DE"}
    doc = {**welcome_doc(), "entry_filter": {"op": "eq", "field": "country", "value": "DE"}}
    jid = api.post("/journeys", json={"document": doc}).json["id"]
    clock.advance(timedelta(days=1))
    job = api.post(f"/journeys/{jid}/backtest", json={"days": 7}).json
    for _ in range(200):
        polled = api.get(f"/journeys/{jid}/backtests/{job['id']}").json
        if polled["status"] != "running":
            break
        time.sleep(0.05)
    assert polled["status"] == "done", polled
    assert polled["total"] == 3 and polled["result"]["entered"] == 2
    assert polled["result"]["records"] == {"email": 2}


def test_rewind_undoes_the_windows_memberships_and_activity():
    from datetime import UTC, datetime

    from crm_journeys.services.testmode import rewind

    start = datetime(2026, 3, 1, tzinfo=UTC)
    now = [{"external_id": "42", "email": "Ada@Example.com", "fields": {"country": "DE"}, "tags": ["vip", "welcomed"],
            "groups": ["newsletter"], "segments": [], "version": "3",
            "activity": {"opened": {"old": start.timestamp() - 5, "new": start.timestamp() + 5}}}]
    events = [{"type": "tag_removed", "key": "lead", "payload": {"contact": {"id": "42"}}, "dedup_key": "api:1"},
              {"type": "subscribed", "key": "newsletter", "payload": {"contact": {"email": "ada@example.com"}},
               "dedup_key": "api:2"},
              {"type": "tag_added", "key": "welcomed", "payload": {"contact": {"id": "42"}}, "dedup_key": "tag_added:x"}]
    then = rewind(now, events, start)[0]
    assert then["tags"] == ["vip", "lead"] and then["groups"] == []
    assert then["activity"] == {"opened": {"old": start.timestamp() - 5}}
    assert then["fields"] == {"country": "DE"} and now[0]["tags"] == ["vip", "welcomed"]  # the input is untouched
