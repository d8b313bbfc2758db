"""The events API checks a custom trigger's attributes against its declaration on arrival."""

from __future__ import annotations

from crm_journeys.integrations.custom import declare


def _declare(app, clock):  # type: ignore[no-untyped-def]
    state = app.extensions["crm_journeys"]
    tenant_id = app.config["TEST_TENANTS"]["acme"]
    with state.db.unit_of_work() as s:
        declare(s, tenant_id, "vip_call", {"minutes": {"type": "number", "required": True}}, clock.now())


def test_custom_trigger_attributes_checked_by_the_events_api(as_, app, clock):
    _declare(app, clock)
    api = as_("acme_editor")
    bad = api.post("/events", json={"type": "custom_trigger", "key": "vip_call",
                                    "contact": {"email": "v@example.com"}, "properties": {"minutes": "ten"}})
    assert bad.status_code == 422
    assert bad.json["errors"] == {"attributes": ["attribute 'minutes' must be a number (got 'ten')"]}
    unknown = api.post("/events", json={"type": "custom_trigger", "key": "nope",
                                        "contact": {"email": "v@example.com"}, "properties": {}})
    assert unknown.status_code == 422 and "no custom trigger named 'nope'" in unknown.json["errors"]["trigger"][0]
    ok = api.post("/events", json={"type": "custom_trigger", "key": "vip_call", "id": "call-1",
                                   "contact": {"email": "v@example.com"}, "properties": {"minutes": 12}})
    assert ok.status_code == 202 and ok.json["key"] == "vip_call" and ok.json["duplicate"] is False
