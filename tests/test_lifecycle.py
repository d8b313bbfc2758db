"""Publishing, pausing, resuming, archiving and versioning journeys with contacts in flight."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from crm_journeys.errors import DefinitionError
from crm_journeys.runtime.versions import publish, set_status

WELCOME = json.loads((Path(__file__).resolve().parent.parent / "examples" / "welcome_promo.json").read_text())


def _status(harness, journey_id, status):  # type: ignore[no-untyped-def]
    with harness.db.unit_of_work() as s:
        set_status(s, harness.tenant_id, journey_id, status, harness.clock.now())


def test_paused_journey_takes_no_entries_and_holds_waits(harness):
    jid = harness.publish(WELCOME)
    harness.event("subscribed", "amy@example.com", key="newsletter")
    harness.run()
    _status(harness, jid, "paused")
    harness.event("subscribed", "ben@example.com", key="newsletter")
    harness.advance(days=4)
    assert harness.actions_for("ben@example.com") == []
    assert harness.actions_for("amy@example.com") == [("welcome", "send_email")]  # wait not fired
    _status(harness, jid, "live")
    harness.run()
    assert [s for s, _ in harness.actions_for("amy@example.com")] == ["welcome", "reminder"]


def test_archive_exits_contacts_in_flight(harness):
    jid = harness.publish(WELCOME)
    harness.event("subscribed", "cal@example.com", key="newsletter")
    harness.run()
    _status(harness, jid, "archived")
    harness.advance(days=4)
    assert [(i.status, i.outcome) for i in harness.instances()] == [("exited", "journey archived")]


def _republish(harness, jid, document, migration=None):  # type: ignore[no-untyped-def]
    from crm_journeys.actions.registry import installed_actions
    from crm_journeys.runtime.versions import get_journey

    with harness.db.unit_of_work() as s:
        get_journey(s, harness.tenant_id, jid).draft = document
        return publish(s, harness.tenant_id, jid, harness.clock.now(), actions=installed_actions(),
                       migration=migration).version


def test_new_version_keeps_contacts_in_flight_on_theirs(harness):
    jid = harness.publish(WELCOME)
    harness.event("subscribed", "dan@example.com", key="newsletter")
    harness.run()
    v2 = copy.deepcopy(WELCOME)
    v2["steps"][3]["params"]["subject"] = "We miss you (v2)"
    assert _republish(harness, jid, v2) == 2
    harness.event("subscribed", "eli@example.com", key="newsletter")
    harness.run()
    harness.advance(days=4)
    subjects = sorted(r.data["subject"] for r in harness.crm_records("email") if "miss" in r.data["subject"])
    assert subjects == ["Did you miss our welcome?", "We miss you (v2)"]
    assert len({i.version_id for i in harness.instances()}) == 2


def test_migration_map_moves_contacts_to_the_new_version(harness):
    jid = harness.publish(WELCOME)
    harness.event("subscribed", "fox@example.com", key="newsletter")
    harness.run()
    v2 = copy.deepcopy(WELCOME)
    v2["steps"][1]["id"] = "opened_check"
    v2["steps"][0]["next"] = "opened_check"
    _republish(harness, jid, v2, migration={"opened_welcome": "opened_check"})
    [inst] = harness.instances()
    assert inst.step == "opened_check"
    with pytest.raises(DefinitionError) as err:
        _republish(harness, jid, v2, migration={"opened_check": "no_such_step"})
    assert "migration.opened_check" in err.value.errors


def test_a_version_stored_by_an_older_compiler_runs_what_the_current_one_makes(harness):
    """A version published before a compiler fix keeps its document, and the runtime
    compiles that again: here a goal waiting for ``any`` event, whose stored rules (as an
    older compiler made them) listened to no event, ends the run on the contact's next
    event without a republish."""
    from sqlalchemy import select

    from crm_journeys.runtime.services import Runtime
    from crm_journeys.runtime.worker import Worker
    from crm_journeys.storage.models import JourneyVersion

    jid = harness.publish({
        "format_version": 1, "name": "Any event ends it", "entry": {"policy": "every_time"},
        "starting_points": [{"id": "tagged", "type": "tag_added", "params": {"tag": "x"}}],
        "first_step": "pause",
        "steps": [{"id": "pause", "type": "wait", "duration": "P2D", "next": "late"},
                  {"id": "late", "type": "action", "action": "add_tag", "params": {"tag": "late"}, "next": None}],
        "goals": [{"id": "active", "event": {"type": "any"}, "then": None}]})
    with harness.db.unit_of_work() as s:  # what the compiler before the fix stored
        version = s.scalar(select(JourneyVersion).where(JourneyVersion.journey_id == jid))
        old = dict(version.compiled)
        old.pop("compiler")
        old["listens"] = [t for t in old["listens"] if t != "*"]
        version.compiled = old
    harness.runtime = Runtime(db=harness.db, clock=harness.clock)  # a process started after the upgrade
    harness.worker = Worker(harness.runtime)
    harness.event("tag_added", "old@example.com", key="x")
    harness.run()
    harness.event("purchase", "old@example.com", key="o-1")
    harness.advance(days=3)
    assert harness.actions_for("old@example.com") == []
    assert [i.outcome for i in harness.instances()] == ["goal active"]
