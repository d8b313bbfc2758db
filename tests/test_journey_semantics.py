"""Journey semantics the product documents promise (issue 12), each run twice: through
``simulate`` (a throw-away world) and through ``POST /api/events`` with the worker of the
running app on its virtual clock. Both must give the same report, and the report must say
what the documents say.

1. field_changed / record_changed update the record before the journey reads it; another
   table's record is kept as the contact's related record (record.<table>.<field>).
2. A subscription stamps the signup date; the anniversary fires, and moves when the date
   changes.
3. Interaction triggers cannot end a journey (goal, exit rule) in the Dynamics 365 model.
4. The routing key comes from the properties the same way in both; fields_updated and
   contact_upserted are accepted.
5. Send times read the contact's time zone first, then the journey's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm_journeys.errors import DefinitionError
from crm_journeys.runtime.normalise import EventError, normalise
from crm_journeys.runtime.simulate import ScriptedEvent, Simulation, report
from crm_journeys.runtime.worker import Worker, advance_to
from tests.conftest import START


def journey(starting_points: list[dict[str, Any]], steps: list[dict[str, Any]], *,
            settings: dict[str, Any] | None = None, policy: str = "once", **extra: Any) -> dict[str, Any]:
    doc = {"format_version": 1, "name": "semantics",
           "settings": {"interaction_triggers_start": False, "time_zone": "UTC", **(settings or {})},
           "entry": {"policy": policy}, "starting_points": starting_points, "entry_filter": None,
           "first_step": steps[0]["id"], "steps": steps, "goals": [], "exit_rules": []}
    doc.update(extra)
    return doc


def sp(type_: str, **params: Any) -> dict[str, Any]:
    return {"id": "start", "type": type_, "params": params, "filter": None, "next": None}


def tag(step_id: str, name: str, nxt: str | None = None) -> dict[str, Any]:
    return {"id": step_id, "type": "action", "action": "add_tag", "params": {"tag": name}, "next": nxt}


def if_then(condition: dict[str, Any], yes: str, no: str, timeout: str = "P7D") -> dict[str, Any]:
    return {"id": "check", "type": "if_then", "condition": condition, "timeout": timeout,
            "branches": {"yes": yes, "no": no}}


def at(**delta: float) -> str:
    return (START + timedelta(**delta)).isoformat()


def upsert(email: str, when: str, **fields: Any) -> dict[str, Any]:
    """The host's snapshot of a contact, as an events line / body."""
    return {"at": when, "type": "contact_upserted", "email": email,
            "properties": {"email": email, "fields": fields, "tags": [], "groups": []}}


# --- running one scenario both ways -----------------------------------------------------

def via_simulate(doc: dict[str, Any], lines: list[dict[str, Any]], until: datetime) -> dict[str, Any]:
    events = [ScriptedEvent.from_json(line, START) for line in lines]
    return Simulation(doc, START, until, events=events).run()


def via_api(app: Any, as_: Any, clock: Any, doc: dict[str, Any], lines: list[dict[str, Any]],
            until: datetime) -> dict[str, Any]:
    """Publish over the API, post every line to POST /api/events at its time, and let the
    app's worker run (on the app's virtual clock) as it would live."""
    api = as_("acme_editor")
    created = api.post("/journeys", json={"document": doc})
    assert created.status_code == 201, created.json
    published = api.post(f"/journeys/{created.json['id']}/publish", json={})
    assert published.status_code == 200, published.json
    worker = Worker(app.extensions["crm_journeys"].runtime)
    for line in sorted(lines, key=lambda e: e["at"]):
        when = datetime.fromisoformat(line["at"])
        if when > clock.now():
            advance_to(worker, clock, when)
        body = {k: line[k] for k in ("type", "key", "name", "id") if k in line}
        body.update(contact={"email": line["email"]}, properties=line.get("properties", {}),
                    occurred_at=line["at"])
        sent = api.post("/events", json=body)
        assert sent.status_code == 202, sent.json
        worker.drain()
    advance_to(worker, clock, until)
    state = app.extensions["crm_journeys"]
    return report(state.db, app.config["TEST_TENANTS"]["acme"], START, clock.now())


def outcome(rep: dict[str, Any]) -> dict[str, Any]:
    """What a user compares: per contact the timeline, the actions and where each run is."""
    return {who: {"timeline": [(t["at"], t["step"], t["kind"], t["branch"]) for t in c["timeline"]],
                  "actions": [(a["step"], a["action"]) for a in c["actions"]],
                  "instances": c["instances"]}
            for who, c in rep["contacts"].items()}


def both_ways(app: Any, as_: Any, clock: Any, doc: dict[str, Any], lines: list[dict[str, Any]],
              until: datetime) -> dict[str, Any]:
    simulated = outcome(via_simulate(doc, lines, until))
    live = outcome(via_api(app, as_, clock, doc, lines, until))
    assert simulated == live
    return simulated


def steps_of(result: dict[str, Any], who: str) -> list[tuple[str, str, str]]:
    return [(step, kind, branch) for _, step, kind, branch in result[who]["timeline"] if kind != "entered"]


# --- 1. record data changes the record ----------------------------------------------------

def test_field_changed_updates_the_record_before_the_journey_reads_it(app, as_, clock):
    doc = journey([sp("field_changed", field="lifecycle_stage", value="sql")],
                  [{"id": "is_sql", "type": "condition_split",
                    "condition": {"op": "eq", "field": "lifecycle_stage", "value": "sql"},
                    "branches": {"yes": "sql", "no": "still_mql"}},
                   tag("sql", "sales-ready"), tag("still_mql", "stale-record")])
    lines = [upsert("ada@example.com", at(), lifecycle_stage="mql"),
             {"at": at(hours=1), "type": "field_changed", "email": "ada@example.com",
              "properties": {"field": "lifecycle_stage", "before": "mql", "after": "sql"}}]
    result = both_ways(app, as_, clock, doc, lines, START + timedelta(days=1))
    assert ("is_sql", "branch", "yes") in steps_of(result, "ada@example.com")
    assert result["ada@example.com"]["actions"] == [("sql", "add_tag")]


def test_record_changed_on_the_contact_satisfies_a_held_if_then(app, as_, clock):
    doc = journey([sp("tag_added", tag="trial")],
                  [if_then({"op": "eq", "field": "lifecycle_stage", "value": "sql"}, "call", "nurture"),
                   tag("call", "call-now"), tag("nurture", "nurture")])
    lines = [upsert("bo@example.com", at(), lifecycle_stage="mql"),
             {"at": at(minutes=5), "type": "tag_added", "email": "bo@example.com", "key": "trial"},
             {"at": at(days=2), "type": "record_changed", "email": "bo@example.com",
              "properties": {"table": "contact", "change": "updated", "record_id": "bo",
                             "changed_fields": ["lifecycle_stage"], "record": {"lifecycle_stage": "sql"}}}]
    result = both_ways(app, as_, clock, doc, lines, START + timedelta(days=10))
    branch = [t for t in result["bo@example.com"]["timeline"] if t[2] == "branch"]
    assert branch == [(at(days=2), "check", "branch", "yes")]  # at once, not at the timeout
    assert result["bo@example.com"]["actions"] == [("call", "add_tag")]


def test_a_related_record_is_read_by_the_starting_point_and_the_if_then(app, as_, clock):
    doc = journey([sp("record_updated", table="order")],
                  [if_then({"op": "eq", "field": "record.order.status", "value": "paid"}, "thanks", "chase",
                           timeout="P3D"),
                   tag("thanks", "paid"), tag("chase", "unpaid")])

    def order(when: str, status: str, change: str = "updated") -> dict[str, Any]:
        return {"at": when, "type": "record_changed", "email": "cy@example.com",
                "properties": {"table": "order", "change": change, "record_id": "o-7",
                               "changed_fields": ["status"], "record": {"status": status, "total": 40}}}

    lines = [order(at(), "new", "created"), order(at(hours=2), "pending"), order(at(days=1), "paid")]
    result = both_ways(app, as_, clock, doc, lines, START + timedelta(days=5))
    assert [t[1:] for t in result["cy@example.com"]["timeline"] if t[2] == "branch"] == [("check", "branch", "yes")]
    assert result["cy@example.com"]["actions"] == [("thanks", "add_tag")]


def test_a_related_record_outlives_a_contact_snapshot(app, as_, clock):
    doc = journey([sp("record_created", table="order")],
                  [{"id": "big", "type": "wait_and_check", "duration": "P1D",
                    "condition": {"op": "gte", "field": "record.order.total", "value": 40},
                    "branches": {"yes": "vip", "no": "small"}},
                   tag("vip", "big-spender"), tag("small", "small-spender")])
    lines = [{"at": at(), "type": "record_changed", "email": "ivy@example.com",
              "properties": {"table": "order", "change": "created", "record_id": "o-9",
                             "record": {"status": "new", "total": 55}}},
             upsert("ivy@example.com", at(hours=3), city="Riga")]  # the CRM's contact, without the order
    result = both_ways(app, as_, clock, doc, lines, START + timedelta(days=2))
    assert result["ivy@example.com"]["actions"] == [("vip", "add_tag")]


def test_a_snapshot_change_fires_record_updated_on_the_contact_table(app, as_, clock):
    doc = journey([sp("record_updated", table="contact", field="plan")], [tag("upgraded", "upgraded")],
                  policy="every_time")
    lines = [upsert("hal@example.com", at(), plan="free"),
             upsert("hal@example.com", at(hours=1), plan="free", city="Oslo"),  # another field only
             upsert("hal@example.com", at(hours=2), plan="gold", city="Oslo")]
    result = both_ways(app, as_, clock, doc, lines, START + timedelta(days=1))
    assert [t[0] for t in result["hal@example.com"]["timeline"] if t[2] == "entered"] == [at(hours=2)]


# --- 2. signup anniversary ----------------------------------------------------------------

def test_a_first_subscription_stamps_the_signup_date_and_the_anniversary_fires(app, as_, clock):
    doc = journey([sp("signup_anniversary", list="newsletter", time="10:00")], [tag("card", "anniversary")],
                  policy="every_time")
    lines = [upsert("di@example.com", at(), time_zone="Europe/Rome"),
             {"at": at(hours=1), "type": "subscribed", "email": "di@example.com",
              "properties": {"list": "newsletter"}},
             # unsubscribing and coming back does not move the first subscription's date
             {"at": at(days=40), "type": "unsubscribed", "email": "di@example.com", "key": "newsletter"},
             {"at": at(days=41), "type": "subscribed", "email": "di@example.com", "key": "newsletter"}]
    result = both_ways(app, as_, clock, doc, lines, START + timedelta(days=366))
    entered = [t[0] for t in result["di@example.com"]["timeline"] if t[2] == "entered"]
    assert entered == ["2027-03-02T09:00:00+00:00"]  # 10:00 in Rome, a year after signing up


def test_the_anniversary_moves_when_the_signup_date_changes(app, as_, clock):
    doc = journey([sp("signup_anniversary")], [tag("card", "anniversary")], policy="every_time")
    lines = [upsert("ed@example.com", at(), signup_date="2024-03-20"),
             {"at": at(days=1), "type": "field_changed", "email": "ed@example.com",
              "properties": {"field": "signup_date", "after": "2023-04-10"}}]
    result = both_ways(app, as_, clock, doc, lines, START + timedelta(days=60))
    entered = [t[0] for t in result["ed@example.com"]["timeline"] if t[2] == "entered"]
    assert entered == ["2026-04-10T09:00:00+00:00"]  # not 20 March any more


# --- 3. interaction triggers cannot end a journey --------------------------------------------

@pytest.mark.parametrize("where", ["goals", "exit_rules"])
def test_an_interaction_trigger_cannot_end_a_dynamics_journey(app, as_, where):
    end = {"id": "opened", "event": {"type": "email_opened", "key": "welcome"}}
    if where == "goals":
        end["then"] = None
    doc = journey([sp("tag_added", tag="x")], [tag("a", "y")], **{where: [end]})
    with pytest.raises(DefinitionError) as raised:
        via_simulate(doc, [], START)
    message = raised.value.errors[f"{where}[0].event.type"]
    assert "settings.interaction_triggers_start" in " ".join(message)
    created = as_("acme_editor").post("/journeys", json={"document": doc})
    published = as_("acme_editor").post(f"/journeys/{created.json['id']}/publish", json={})
    assert published.status_code == 422
    assert any("settings.interaction_triggers_start" in m
               for m in published.json["errors"][f"{where}[0].event.type"])


def test_in_the_other_model_an_open_may_end_the_journey(app, as_, clock):
    doc = journey([sp("tag_added", tag="x")],
                  [{"id": "pause", "type": "wait", "duration": "P2D", "next": "late"}, tag("late", "late")],
                  settings={"interaction_triggers_start": True},
                  goals=[{"id": "opened", "event": {"type": "email_opened", "key": "welcome"}, "then": None}])
    lines = [{"at": at(), "type": "tag_added", "email": "fa@example.com", "properties": {"tag": "x"}},
             {"at": at(days=1), "type": "email_opened", "email": "fa@example.com",
              "properties": {"email_id": "welcome"}}]
    result = both_ways(app, as_, clock, doc, lines, START + timedelta(days=3))
    assert result["fa@example.com"]["actions"] == []
    assert [i["outcome"] for i in result["fa@example.com"]["instances"]] == ["goal opened"]


@pytest.mark.parametrize("where", ["goals", "exit_rules"])
def test_any_event_ends_the_journey_on_the_contacts_next_event(app, as_, clock, where):
    end: dict[str, Any] = {"id": "active", "event": {"type": "any"}}
    if where == "goals":
        end["then"] = None
    doc = journey([sp("tag_added", tag="x")],
                  [{"id": "pause", "type": "wait", "duration": "P2D", "next": "late"}, tag("late", "late")],
                  **{where: [end]})
    lines = [{"at": at(), "type": "tag_added", "email": "fa@example.com", "properties": {"tag": "x"}},
             {"at": at(days=1), "type": "purchase", "email": "fa@example.com",
              "properties": {"order_id": "o-1", "total": 10}}]
    result = both_ways(app, as_, clock, doc, lines, START + timedelta(days=3))
    assert result["fa@example.com"]["actions"] == []  # it never reached the tag after the wait
    outcome = result["fa@example.com"]["instances"][0]["outcome"]
    assert outcome == ("goal active" if where == "goals" else "exit rule active"), outcome


# --- 4. one normalisation -------------------------------------------------------------------

def test_the_routing_key_comes_from_the_properties_both_ways(app, as_, clock):
    doc = journey([sp("tag_added", tag="VIP")], [tag("welcome_vip", "vip-welcomed")])
    lines = [{"at": at(), "type": "tag_added", "email": "gu@example.com", "properties": {"tag": "VIP"}},
             {"at": at(minutes=1), "type": "fields_updated", "email": "gu@example.com",
              "properties": {"fields": {"plan": "gold"}}}]
    result = both_ways(app, as_, clock, doc, lines, START + timedelta(days=1))
    assert result["gu@example.com"]["actions"] == [("welcome_vip", "add_tag")]


def test_normalise_reads_key_contact_and_time_once() -> None:
    event = normalise(type_="tag_added", key="VIP", contact={"email": " Ada@Example.COM "},
                      occurred_at="2026-03-02T10:00:00+01:00", event_id="e1")
    assert (event.key, event.properties, event.contact) == ("VIP", {"tag": "VIP"}, {"email": "ada@example.com"})
    assert event.occurred_at == datetime(2026, 3, 2, 9, 0, tzinfo=UTC) and event.dedup_key == "api:e1"
    assert normalise(type_="subscribed", contact={"id": "7"}, properties={"list": "news"}).key == "news"
    with pytest.raises(EventError) as raised:
        normalise(type_="tag_added", contact={}, occurred_at="yesterday")
    assert set(raised.value.errors) == {"contact"}
    with pytest.raises(EventError) as raised:
        normalise(type_="tag_added", contact={"email": "a@b.example"}, occurred_at="yesterday")
    assert set(raised.value.errors) == {"occurred_at"}


def test_an_unknown_type_is_refused_the_same_way(as_):
    with pytest.raises(ValueError, match="unknown event type 'tag_addded'"):
        ScriptedEvent.from_json({"type": "tag_addded", "email": "x@example.com"}, START)
    sent = as_("acme_editor").post("/events", json={"type": "tag_addded", "contact": {"email": "x@example.com"}})
    assert sent.status_code == 422
    assert "unknown event type 'tag_addded'" in sent.json["errors"]["type"][0]


# --- 5. time zones: the contact's first, then the journey's ----------------------------------

@pytest.mark.parametrize(("journey_zone", "fallback"), [("Europe/Rome", "2026-03-03T08:00:00+00:00"),
                                                        ("UTC", "2026-03-03T09:00:00+00:00")])
def test_send_times_read_the_contact_zone_first(app, as_, clock, journey_zone, fallback):
    """The worked examples of docs/journey-format.md, "Time zones"."""
    doc = journey([sp("tag_added", tag="go")],
                  [{"id": "morning", "type": "wait_until", "time": "09:00", "next": "hello"}, tag("hello", "hi")],
                  settings={"time_zone": journey_zone}, policy="every_time")
    zones = {"ny@example.com": "America/New_York", "tokyo@example.com": "Asia/Tokyo",
             "plain@example.com": None, "mars@example.com": "Mars/Olympus"}
    lines = [upsert(who, at(), **({"time_zone": zone} if zone else {})) for who, zone in zones.items()]
    lines += [{"at": at(hours=1), "type": "tag_added", "email": who, "key": "go"} for who in zones]
    result = both_ways(app, as_, clock, doc, lines, START + timedelta(days=2))
    woke = {who: next(t[0] for t in c["timeline"] if t[1] == "hello") for who, c in result.items()}
    # tagged on 2 March 2026 at 10:00 UTC; New York is then UTC-5, Tokyo UTC+9, Rome UTC+1
    assert woke == {"ny@example.com": "2026-03-02T14:00:00+00:00",
                    "tokyo@example.com": "2026-03-03T00:00:00+00:00",
                    "plain@example.com": fallback, "mars@example.com": fallback}
