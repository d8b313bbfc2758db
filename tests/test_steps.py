"""Every step type and entry policy through the real runtime on a virtual clock."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from crm_journeys.services.queries import timeline_entries
from crm_journeys.storage.models import StepLog, Wakeup


def journey(steps, *, first="s0", entry="every_time", goals=(), exits=(), tz="UTC", **entry_extra):  # type: ignore[no-untyped-def]
    return {"format_version": 1, "name": "steps", "entry": {"policy": entry, **entry_extra},
            "settings": {"time_zone": tz},
            "starting_points": [{"id": "f", "type": "form_submitted", "params": {"form": "go"}}],
            "first_step": first, "steps": steps, "goals": list(goals), "exit_rules": list(exits)}


def tag(step_id, tag_name, nxt=None):  # type: ignore[no-untyped-def]
    return {"id": step_id, "type": "action", "action": "add_tag", "params": {"tag": tag_name}, "next": nxt,
            "run_multiple_times": True}


def enter(h, email, **contact):  # type: ignore[no-untyped-def]
    h.event("form_submitted", email, key="go", contact=contact or None)
    h.run()


def steps_of(h, email):  # type: ignore[no-untyped-def]
    return [s for s, _ in h.actions_for(email)]


def test_wait_holds_for_its_duration(harness):
    harness.publish(journey([{"id": "s0", "type": "wait", "duration": "PT2H", "next": "t"}, tag("t", "done")]))
    enter(harness, "a@example.com")
    harness.advance(hours=1, minutes=59)
    assert steps_of(harness, "a@example.com") == []
    harness.advance(minutes=2)
    assert steps_of(harness, "a@example.com") == ["t"]
    with harness.db.unit_of_work() as s:
        lateness = s.scalars(select(Wakeup.lateness_ms)).all()
    assert lateness == [0]


def test_wait_until_time_of_day_and_weekday_in_contact_time_zone(harness):
    # Monday 2026-03-02 09:00 UTC. Wait until 08:00 on Wednesday, Vilnius time (UTC+2).
    harness.publish(journey([{"id": "s0", "type": "wait_until", "time": "08:00", "weekdays": ["wed"], "next": "t"},
                             tag("t", "done")]))
    enter(harness, "b@example.com", time_zone="Europe/Vilnius")
    with harness.db.unit_of_work() as s:
        due = s.scalar(select(Wakeup.due_at))
    assert due.isoformat() == "2026-03-04T06:00:00+00:00"


def test_wait_until_contact_date_field_with_offset(harness):
    harness.publish(journey([{"id": "s0", "type": "wait_until", "field": "renewal", "offset": "-P3D",
                              "time": "10:00", "next": "t"}, tag("t", "remind")]))
    harness.snapshot("c1", "c@example.com", 1, renewal="2026-04-20", time_zone="America/New_York")
    enter(harness, "c@example.com")
    with harness.db.unit_of_work() as s:
        due = s.scalar(select(Wakeup.due_at))
    assert due.isoformat() == "2026-04-17T14:00:00+00:00"  # 10:00 EDT


def test_if_then_becomes_true_on_a_record_update(harness):
    harness.publish(journey([
        {"id": "s0", "type": "if_then", "condition": {"op": "eq", "field": "stage", "value": "customer"},
         "timeout": "P7D", "branches": {"yes": "won", "no": "lost"}},
        tag("won", "won"), tag("lost", "lost")]))
    harness.snapshot("c1", "d@example.com", 1, stage="lead")
    enter(harness, "d@example.com")
    harness.advance(days=2)
    assert steps_of(harness, "d@example.com") == []
    harness.snapshot("c1", "d@example.com", 2, stage="customer")
    harness.run()
    assert steps_of(harness, "d@example.com") == ["won"]
    harness.advance(days=7)
    assert steps_of(harness, "d@example.com") == ["won"]


def test_if_then_times_out_to_no(harness):
    harness.publish(journey([
        {"id": "s0", "type": "if_then", "condition": {"op": "eq", "field": "stage", "value": "customer"},
         "timeout": "P7D", "branches": {"yes": "won", "no": "lost"}},
        tag("won", "won"), tag("lost", "lost")]))
    enter(harness, "e@example.com")
    harness.advance(days=7, minutes=1)
    assert steps_of(harness, "e@example.com") == ["lost"]


def test_multi_split_first_match_wins(harness):
    harness.publish(journey([
        {"id": "s0", "type": "multi_split", "cases": [
            {"name": "de", "condition": {"op": "eq", "field": "language", "value": "de"}, "next": "de"},
            {"name": "eu", "condition": {"op": "in", "field": "language", "value": ["de", "it", "lt"]}, "next": "eu"}],
         "default": "other"},
        tag("de", "de"), tag("eu", "eu"), tag("other", "other")]))
    for email, lang in [("f1@example.com", "de"), ("f2@example.com", "it"), ("f3@example.com", "en")]:
        enter(harness, email, language=lang)
    assert [steps_of(harness, e) for e in ("f1@example.com", "f2@example.com", "f3@example.com")] == \
        [["de"], ["eu"], ["other"]]


def test_random_split_is_deterministic_and_near_its_shares(harness):
    harness.publish(journey([
        {"id": "s0", "type": "random_split", "paths": [{"name": "A", "percent": 30, "next": "a"},
                                                       {"name": "B", "percent": 70, "next": "b"}]},
        tag("a", "A"), tag("b", "B")]))
    for i in range(400):
        harness.event("form_submitted", f"r{i}@example.com", key="go")
    harness.run()
    taken = Counter(harness.branches("s0"))
    assert 90 <= taken["A"] <= 150 and taken["A"] + taken["B"] == 400
    before = {e: steps_of(harness, e) for e in ("r1@example.com", "r2@example.com", "r3@example.com")}
    for e in before:
        harness.event("form_submitted", e, key="go", attempt=2)
    harness.run()
    assert {e: steps_of(harness, e)[1:] for e in before} == before


def test_jump_back_is_bounded(harness):
    harness.publish(journey([
        tag("s0", "nudge", "w"), {"id": "w", "type": "wait", "duration": "P1D", "next": "again"},
        {"id": "again", "type": "jump", "to": "s0", "max_times": 2, "next": "t"}, tag("t", "gave up")]))
    enter(harness, "g@example.com")
    harness.advance(days=5)
    assert steps_of(harness, "g@example.com") == ["s0", "s0", "s0", "t"]


def test_goal_pulls_the_contact_out(harness):
    harness.publish(journey([{"id": "s0", "type": "wait", "duration": "P3D", "next": "t"}, tag("t", "late")],
                            goals=[{"id": "bought", "event": {"type": "purchase"}, "then": None}]))
    enter(harness, "h@example.com")
    harness.event("purchase", "h@example.com", order_id="o1")
    harness.run()
    harness.advance(days=4)
    assert steps_of(harness, "h@example.com") == []
    [inst] = harness.instances()
    assert (inst.status, inst.outcome) == ("completed", "goal bought")


def test_condition_goal_moves_the_contact_forward(harness):
    harness.publish(journey([{"id": "s0", "type": "wait", "duration": "P3D", "next": "t"}, tag("t", "late"),
                             tag("vip", "vip")],
                            goals=[{"id": "vip", "condition": {"op": "gte", "field": "score", "value": 50},
                                    "then": "vip"}]))
    harness.snapshot("c1", "i@example.com", 1, score=10)
    enter(harness, "i@example.com")
    harness.snapshot("c1", "i@example.com", 2, score=60)
    harness.run()
    assert steps_of(harness, "i@example.com") == ["vip"]


def _enter_times(h, email, times, gap_days):  # type: ignore[no-untyped-def]
    for n in range(times):
        h.event("form_submitted", email, key="go", attempt=n)
        h.run()
        h.advance(days=gap_days)
    return len(steps_of(h, email))


def test_entry_policy_once(harness):
    harness.publish(journey([tag("s0", "x")], entry="once"))
    assert _enter_times(harness, "j@example.com", 3, 1) == 1


def test_entry_policy_after_exit(harness):
    harness.publish(journey([{"id": "s0", "type": "wait", "duration": "P2D", "next": "t"}, tag("t", "x")],
                            entry="after_exit"))
    assert _enter_times(harness, "k@example.com", 4, 1) == 2  # days 0 and 2 enter; 1 and 3 are inside


def test_entry_policy_cooldown(harness):
    harness.publish(journey([tag("s0", "x")], entry="cooldown", cooldown="P3D"))
    assert _enter_times(harness, "l@example.com", 7, 1) == 3  # days 0, 3, 6


def test_entry_policy_max_times(harness):
    harness.publish(journey([tag("s0", "x")], entry="max_times", max_entries=2))
    assert _enter_times(harness, "m@example.com", 5, 1) == 2


def test_every_firing_is_explained_in_the_log(harness):
    harness.publish(journey([{"id": "s0", "type": "condition_split", "condition": {"op": "has_tag", "value": "VIP"},
                              "branches": {"yes": "y", "no": "n"}}, tag("y", "y"), tag("n", "n")]))
    harness.snapshot("c1", "n@example.com", 1, tags=["VIP"])
    enter(harness, "n@example.com")
    with harness.db.unit_of_work() as s:
        entries = timeline_entries(s.scalars(select(StepLog).order_by(StepLog.at, StepLog.id)))
    branch = next(e for e in entries if e["kind"] == "branch")
    assert branch["branch"] == "yes" and branch["why"] == "condition true"
    assert branch["facts"]["tags"] == ["VIP"]  # stored once per decision, shown on each of its rows
    assert branch["facts"]["event"]["type"] == "form_submitted"
    assert [e["facts"] == branch["facts"] for e in entries if e["rule"]] == [True] * 3  # entered, branch, tag
