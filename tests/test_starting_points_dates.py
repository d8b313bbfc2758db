"""Date starting points on a virtual clock: birthdays, anniversaries, recurring and
specific dates, with offsets, send times in two time zones across daylight-saving
changes and year ends, 29 February, and re-indexing when a date field changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from crm_journeys.definition.model import StartingPoint
from crm_journeys.definition.triggers import CATALOG
from crm_journeys.runtime.dates import anniversary, next_occurrence
from crm_journeys.storage.journey_models import DateSchedule
from tests.sp_helpers import entries, journey, sp

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def _utc(*args: int) -> str:
    return datetime(*args, tzinfo=UTC).isoformat()


def test_29_february_falls_on_28_february_in_other_years():
    base = datetime(2000, 2, 29).date()
    assert anniversary(base, 2027).isoformat() == "2027-02-28"
    assert anniversary(base, 2028).isoformat() == "2028-02-29"


def test_next_occurrence_crosses_year_end_with_negative_offset():
    point = StartingPoint("b", "birthday", {"offset_days": -3, "time": "09:00"})
    after = datetime(2026, 12, 1, tzinfo=UTC)
    day, due = next_occurrence(point, CATALOG["birthday"], datetime(1990, 1, 1).date(), BERLIN, after)
    assert day.isoformat() == "2026-12-29" and due.isoformat() == _utc(2026, 12, 29, 8)
    day, due = next_occurrence(point, CATALOG["birthday"], datetime(1990, 1, 1).date(), BERLIN, due)
    assert day.isoformat() == "2027-12-29"


def test_birthday_fires_at_local_time_across_dst_in_two_zones(harness):
    """Berlin switches to summer time on 29 March 2026, New York on 8 March 2026: the
    greeting stays at 09:00 local, so its UTC instant moves by an hour across the change."""
    jid = harness.publish(journey([sp("birthday", {"time": "09:00"})], tz="Europe/Berlin"))
    harness.snapshot("b1", "berlin@example.com", 1, birthday="1980-03-05", time_zone="Europe/Berlin")
    harness.snapshot("b2", "berlin2@example.com", 1, birthday="1985-04-05", time_zone="Europe/Berlin")
    harness.snapshot("n1", "ny@example.com", 1, birthday="1990-03-05", time_zone="America/New_York")
    harness.snapshot("n2", "ny2@example.com", 1, birthday="1991-03-10", time_zone="America/New_York")
    harness.snapshot("z", "nozone@example.com", 1, birthday="1970-03-04")  # journey zone: Berlin
    harness.run()
    harness.advance(days=40)
    got = {(e, at) for e, _, _, at in entries(harness, jid)}
    assert got == {
        ("berlin@example.com", _utc(2026, 3, 5, 8)),    # CET, UTC+1
        ("berlin2@example.com", _utc(2026, 4, 5, 7)),   # CEST, UTC+2
        ("ny@example.com", _utc(2026, 3, 5, 14)),       # EST, UTC-5
        ("ny2@example.com", _utc(2026, 3, 10, 13)),     # EDT, UTC-4
        ("nozone@example.com", _utc(2026, 3, 4, 8)),
    }


def test_birthday_with_offset_across_year_end_every_year(harness):
    jid = harness.publish(journey([sp("birthday", {"offset_days": -3, "time": "10:30"})]))
    harness.snapshot("c1", "jan@example.com", 1, birthday="1990-01-01", time_zone="America/New_York")
    harness.run()
    harness.advance(days=700)
    assert [at for *_, at in entries(harness, jid)] == [_utc(2026, 12, 29, 15, 30), _utc(2027, 12, 29, 15, 30)]
    assert [k for _, _, k, _ in entries(harness, jid)] == ["", ""]


def test_leap_day_birthday(harness):
    jid = harness.publish(journey([sp("birthday")]))
    harness.snapshot("l", "leap@example.com", 1, birthday="2000-02-29")
    harness.run()
    harness.advance(days=800)
    assert [at[:10] for *_, at in entries(harness, jid)] == ["2027-02-28", "2028-02-29"]


def test_signup_anniversary_skips_the_signup_day_itself(harness):
    jid = harness.publish(journey([sp("signup_anniversary", {"time": "08:00"})], tz="Europe/Berlin"))
    harness.snapshot("s1", "old@example.com", 1, signup_date="2024-06-15")
    harness.snapshot("s2", "new@example.com", 1, signup_date="2026-03-20T10:00:00Z")
    harness.run()
    harness.advance(days=400)
    assert [(e, at) for e, _, _, at in entries(harness, jid)] == [
        ("old@example.com", _utc(2026, 6, 15, 6)), ("new@example.com", _utc(2027, 3, 20, 7))]


def test_recurring_date_with_positive_offset(harness):
    jid = harness.publish(journey([sp("recurring_date", {"field": "contract_start", "offset_days": 2})]))
    harness.snapshot("r", "r@example.com", 1, contract_start="2019-12-30")
    harness.run()
    harness.advance(days=400)
    assert [at for *_, at in entries(harness, jid)] == [_utc(2027, 1, 1, 9)]


def test_specific_date_from_field_fires_once_and_follows_changes(harness):
    jid = harness.publish(journey([sp("specific_date", {"field": "renewal", "offset_days": 1})]))
    harness.snapshot("p", "p@example.com", 1, renewal="2026-04-01")
    harness.run()
    harness.advance(days=10)
    harness.snapshot("p", "p@example.com", 2, renewal="2026-05-01")  # moved before it was due
    harness.run()
    harness.advance(days=400)
    assert [at for *_, at in entries(harness, jid)] == [_utc(2026, 5, 2, 9)]
    harness.snapshot("p", "p@example.com", 3, renewal="2026-09-01")  # once means once
    harness.run()
    harness.advance(days=200)
    assert len(entries(harness, jid)) == 1


def test_specific_fixed_date_for_every_contact_in_its_zone(harness):
    harness.snapshot("a", "a@example.com", 1, time_zone="Europe/Berlin")
    harness.snapshot("b", "b@example.com", 1, time_zone="America/New_York")
    harness.run()
    jid = harness.publish(journey([sp("specific_date", {"date": "2026-03-31", "time": "12:00"})]))
    harness.snapshot("c", "c@example.com", 1)  # arrives after publish: indexed too
    harness.run()
    harness.advance(days=60)
    assert sorted((e, at) for e, _, _, at in entries(harness, jid)) == [
        ("a@example.com", _utc(2026, 3, 31, 10)), ("b@example.com", _utc(2026, 3, 31, 16)),
        ("c@example.com", _utc(2026, 3, 31, 12))]


def test_birthday_filter_and_time_zone_change_reindexes(harness):
    """The documented example: a birthday journey only for German speakers."""
    jid = harness.publish("birthday_greetings.json")
    harness.snapshot("d", "de@example.com", 1, birthday="1980-05-01", language="de")
    harness.snapshot("e", "en@example.com", 1, birthday="1980-05-01", language="en")
    harness.run()
    harness.snapshot("d", "de@example.com", 2, birthday="1980-05-01", language="de",
                     time_zone="America/New_York")
    harness.run()
    harness.advance(days=90)
    assert [(e, at) for e, _, _, at in entries(harness, jid)] == [("de@example.com", _utc(2026, 5, 1, 13))]


def test_date_index_is_one_row_per_contact_and_point(harness):
    harness.publish(journey([sp("birthday"), sp("signup_anniversary", id_="anniv")]))
    for i in range(5):
        harness.snapshot(f"x{i}", f"x{i}@example.com", 1, birthday=f"1990-07-0{i + 1}",
                         signup_date="2020-01-01")
    harness.run()
    with harness.db.unit_of_work() as s:
        assert s.scalar(select(func.count(DateSchedule.id)).where(DateSchedule.pending.is_(True))) == 10
