"""The sync cursor the polling adapters share: windows, overlap, de-duplication."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm_journeys.connectors.base import CanonicalContact
from crm_journeys.connectors.cursor import MAX_SEEN, SyncState
from crm_journeys.errors import FatalConnectorError

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def contact(ref: str, seconds: float, version: str | None = None) -> CanonicalContact:
    at = T0 + timedelta(seconds=seconds)
    return CanonicalContact(external_id=ref, modified_at=at, version=version or at.isoformat())


def test_round_trip_and_garbage():
    state = SyncState(phase="changes", token=["x", 3], since=T0.isoformat(), extra={"a": 1})
    assert SyncState.decode(state.encode()) == state
    assert SyncState.decode(None) is None
    with pytest.raises(FatalConnectorError, match="unreadable sync cursor"):
        SyncState.decode("not-a-cursor!")


def test_versions_inside_the_overlap_are_remembered_and_filtered():
    state = SyncState(phase="changes")
    state.observe([contact("a", 0), contact("b", 100), contact("c", 200)], timedelta(seconds=150))
    assert set(state.seen) == {"b", "c"}  # "a" fell out of the window
    again = state.fresh([contact("b", 100), contact("c", 250), contact("a", 0)])
    assert [c.external_id for c in again] == ["c", "a"]


def test_full_scan_restarts_changes_from_when_it_began():
    state = SyncState(started=T0.isoformat())
    state.observe([contact("a", 3600)], timedelta(minutes=2))
    state.next_window(timedelta(minutes=2))
    assert state.phase == "changes" and state.since == (T0 - timedelta(minutes=2)).isoformat()
    state.observe([contact("a", 7200, "v2")], timedelta(minutes=2))
    state.next_window(timedelta(minutes=2))
    assert state.since == (T0 + timedelta(seconds=7200 - 120)).isoformat()


def test_a_bulk_change_does_not_grow_the_cursor_without_bound():
    state = SyncState(phase="changes")
    state.observe([contact(str(i), i / 1000) for i in range(MAX_SEEN + 500)],
                  timedelta(minutes=5))
    assert len(state.seen) == MAX_SEEN and str(MAX_SEEN + 499) in state.seen
    assert len(state.encode()) < 100_000
