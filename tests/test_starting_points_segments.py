"""Saved segments (incremental membership, segment-based entry now and as members join,
use as filter and condition), manual add, interaction triggers, and entry-filter truth
tables through the runtime."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from crm_journeys.errors import DefinitionError
from crm_journeys.runtime import segments as seg_mod
from crm_journeys.runtime.segments import save_segment
from crm_journeys.runtime.starting_points import add_contacts_to_journey
from crm_journeys.storage.journey_models import Segment
from crm_journeys.storage.models import Contact
from tests.sp_helpers import entered, journey, sp

GERMANS = {"op": "eq", "field": "language", "value": "de"}


def _segment(h, name="germans", cond=GERMANS):
    with h.db.unit_of_work() as s:
        return save_segment(s, h.tenant_id, name, cond, h.clock.now()).member_count


def _members(h, name="germans"):
    with h.db.unit_of_work() as s:
        rows = s.scalars(select(Contact).where(Contact.tenant_id == h.tenant_id).order_by(Contact.id))
        count = s.scalar(select(Segment.member_count).where(Segment.tenant_id == h.tenant_id, Segment.name == name))
        return [c.email for c in rows if name in (c.segments or [])], count


def test_segment_membership_is_rebuilt_on_save_and_kept_incrementally(harness, monkeypatch):
    harness.snapshot("a", "a@example.com", 1, language="de")
    harness.snapshot("b", "b@example.com", 1, language="en")
    harness.run()
    assert _segment(harness) == 1
    _segment(harness, "vips", {"op": "has_tag", "value": "VIP"})
    calls = []
    real = seg_mod.evaluate
    monkeypatch.setattr(seg_mod, "evaluate", lambda c, f: calls.append(f["fields"].get("language")) or real(c, f))
    harness.snapshot("b", "b@example.com", 2, language="de")
    harness.run()
    assert calls == ["de", "de"]  # only the changed contact, once per segment: no rescan
    assert _members(harness) == (["a@example.com", "b@example.com"], 2)
    harness.snapshot("a", "a@example.com", 2, language="fr")
    harness.run()
    assert _members(harness) == (["b@example.com"], 1)


def test_segment_journey_current_members_now_and_new_members_later(harness):
    harness.snapshot("a", "a@example.com", 1, language="de")
    harness.snapshot("b", "b@example.com", 1, language="en")
    harness.run()
    _segment(harness)
    first = harness.publish(journey([sp("joined_segment", {"segment": "germans"})]))
    harness.run()
    assert entered(harness, first) == ["a@example.com"]
    harness.snapshot("b", "b@example.com", 2, language="de")
    harness.run()
    assert entered(harness, first) == ["a@example.com", "b@example.com"]
    # a second segment journey: its current members enter it, and only it
    second = harness.publish(journey([sp("joined_segment", {"segment": "germans", "new_members": False})]))
    harness.run()
    assert sorted(entered(harness, second)) == ["a@example.com", "b@example.com"]
    assert entered(harness, first) == ["a@example.com", "b@example.com"]
    harness.snapshot("c", "c@example.com", 1, language="de")  # new member: not for `second`
    harness.run()
    assert entered(harness, first)[-1] == "c@example.com" and len(entered(harness, second)) == 2


def test_segment_as_entry_filter(harness):
    _segment(harness)
    jid = harness.publish(journey([sp("tag_added", {"tag": "promo"},
                                      filter_={"op": "in_segment", "value": "germans"})]))
    harness.snapshot("a", "a@example.com", 1, language="de")
    harness.snapshot("b", "b@example.com", 1, language="en")
    harness.run()
    harness.event("tag_added", "a@example.com", key="promo")
    harness.event("tag_added", "b@example.com", key="promo")
    harness.run()
    assert entered(harness, jid) == ["a@example.com"]


def test_segment_as_branch_condition(harness):
    _segment(harness)
    steps = [{"id": "split", "type": "condition_split", "condition": {"op": "in_segment", "value": "germans"},
              "branches": {"yes": "de", "no": None}},
             {"id": "de", "type": "exit"}]
    harness.publish(journey([sp("tag_added", {"tag": "go"})], steps=steps))
    harness.snapshot("a", "a@example.com", 1, language="de")
    harness.snapshot("b", "b@example.com", 1, language="en")
    harness.run()
    harness.event("tag_added", "a@example.com", key="go")
    harness.event("tag_added", "b@example.com", key="go")
    harness.run()
    assert harness.branches("split") == ["yes", "no"]


def test_manual_add_one_list_or_segment(harness):
    harness.snapshot("a", "a@example.com", 1, language="de")
    harness.snapshot("b", "b@example.com", 1, language="de")
    harness.run()
    _segment(harness)
    jid = harness.publish(journey([sp("manual_add")]))
    with harness.db.unit_of_work() as s:
        assert add_contacts_to_journey(s, harness.tenant_id, jid, harness.clock.now(),
                                       emails=["New@Example.com", "new@example.com"]) == 1
    harness.run()
    harness.advance(minutes=1)
    with harness.db.unit_of_work() as s:
        assert add_contacts_to_journey(s, harness.tenant_id, jid, harness.clock.now(), segment="germans") == 2
        with pytest.raises(DefinitionError, match="either"):
            add_contacts_to_journey(s, harness.tenant_id, jid, harness.clock.now())
    harness.run()
    assert entered(harness, jid) == ["new@example.com", "a@example.com", "b@example.com"]
    other = harness.publish(journey([sp("tag_added", {"tag": "x"})]))
    with harness.db.unit_of_work() as s, pytest.raises(DefinitionError, match="Added by hand"):
        add_contacts_to_journey(s, harness.tenant_id, other, harness.clock.now(), emails=["a@example.com"])


def test_interaction_triggers_branch_inside_and_start_only_when_allowed(harness):
    with pytest.raises(DefinitionError, match="interaction_triggers_start"):
        harness.publish(journey([sp("email_delivered", {"email": "news"})]))
    steps = [{"id": "wait", "type": "react_to_event", "event": {"type": "email_delivered", "key": "news"},
              "timeout": "P1D", "branches": {"yes": "ok", "no": None}},
             {"id": "ok", "type": "exit"}]
    harness.publish(journey([sp("tag_added", {"tag": "go"})], steps=steps))
    harness.event("tag_added", "a@example.com", key="go")
    harness.run()
    harness.event("email_delivered", "a@example.com", key="news")
    harness.event("email_delivered", "b@example.com", key="news")  # starts nothing
    harness.run()
    assert harness.branches("wait") == ["yes"]
    assert entered(harness) == ["a@example.com"]


FILTER = {"all": [{"op": "has_tag", "value": "Kunde"}, {"op": "has_tag", "value": "Instagram Follower"}]}
EITHER = {"any": [{"op": "eq", "field": "language", "value": "de"},
                  {"all": [{"op": "gte", "field": "score", "value": 50}, {"op": "not_has_tag", "value": "churned"}]}]}


@pytest.mark.parametrize("tags, expected", [
    (["Kunde", "Instagram Follower"], True), (["Kunde"], False), (["Instagram Follower"], False), ([], False)])
def test_filter_truth_table_two_tags(harness, tags, expected):
    jid = harness.publish(journey([sp("form_submitted", {"form": "f"}, filter_=FILTER)]))
    harness.snapshot("x", "x@example.com", 1, tags=tags)
    harness.run()
    harness.event("form_submitted", "x@example.com", key="f")
    harness.run()
    assert bool(entered(harness, jid)) is expected


@pytest.mark.parametrize("fields, tags, expected", [
    ({"language": "de"}, [], True), ({"language": "en", "score": 70}, [], True),
    ({"language": "en", "score": 70}, ["churned"], False), ({"language": "en", "score": 10}, [], False),
    ({"score": 50}, [], True), ({}, [], False), ({"language": "de", "score": 1}, ["churned"], True)])
def test_filter_truth_table_nested_and_or(harness, fields, tags, expected):
    jid = harness.publish(journey([sp("page_visited", {"url": "u"})], entry_filter=EITHER))
    harness.snapshot("x", "x@example.com", 1, tags=tags, **fields)
    harness.run()
    harness.event("page_visited", "x@example.com", key="u")
    harness.run()
    assert bool(entered(harness, jid)) is expected
