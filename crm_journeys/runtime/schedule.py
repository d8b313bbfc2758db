"""When a held contact wakes: durations, dates, contact date fields, times of day, weekdays.

Wall-clock rules ("09:00 on a Monday") are applied in the contact's own time zone (or the
journey's), via zoneinfo, so daylight-saving changes move the UTC instant, not the
local time.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crm_journeys.definition import model as m
from crm_journeys.definition.dates import parse_datetime

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def zone_for(contact_fields: dict[str, Any], journey: m.Journey) -> ZoneInfo:
    for name in (contact_fields.get("time_zone"), journey.settings.time_zone, "UTC"):
        if name:
            try:
                return ZoneInfo(str(name))
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def wake_time(step: m.Step, hold: dict[str, Any], now: datetime, contact_fields: dict[str, Any],
              journey: m.Journey) -> datetime:
    """The instant a contact arriving at ``step`` now is due to wake."""
    if hold["wake"] == "duration":
        return now + timedelta(seconds=float(hold.get("seconds") or 0))
    assert isinstance(step, m.WaitUntilStep)
    return wait_until(step, now, contact_fields, zone_for(contact_fields, journey))


def wait_until(step: m.WaitUntilStep, now: datetime, fields: dict[str, Any], zone: ZoneInfo) -> datetime:
    base = now
    if step.date:
        base = _localise(step.date, zone) or now
    elif step.field:
        value = _localise(fields.get(step.field), zone)
        base = (value + step.offset) if value else now
    if step.time or step.weekdays:
        base = next_wall_time(max(base, now), step.time, step.weekdays, zone)
    return max(base, now)


def next_wall_time(after: datetime, at: str | None, weekdays: tuple[str, ...], zone: ZoneInfo) -> datetime:
    """The first local ``at`` (HH:MM) on an allowed weekday at or after ``after``."""
    hh, mm = (int(p) for p in (at or "00:00").split(":")[:2])
    local = after.astimezone(zone)
    allowed = {WEEKDAYS.index(d) for d in weekdays} if weekdays else set(range(7))
    for days in range(0, 8):
        day = (local + timedelta(days=days)).date()
        if day.weekday() not in allowed:
            continue
        candidate = datetime.combine(day, time(hh, mm), tzinfo=zone)
        if at is None and days == 0 and not weekdays:
            return after
        if candidate >= local:
            return candidate.astimezone(UTC)
    raise ValueError("no matching weekday")  # unreachable: a week always has one


def _localise(value: Any, zone: ZoneInfo) -> datetime | None:
    """A date-only value means local midnight in the contact's zone."""
    if isinstance(value, str) and len(value.strip()) == 10:
        parsed = parse_datetime(value)
        if parsed is None:
            return None
        return datetime(parsed.year, parsed.month, parsed.day, tzinfo=zone).astimezone(UTC)
    return parse_datetime(value)
