"""Date parsing shared by the compiler and the runtime: ISO text to epoch seconds, UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any


def parse_datetime(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO text, a date, a datetime or epoch seconds; else None.

    A bare date means midnight UTC; a naive datetime is taken as UTC.
    """
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def to_epoch(value: Any) -> float | None:
    """Epoch seconds from ISO text (bare date = midnight UTC, naive = UTC), a date, a
    datetime or a number (taken as epoch seconds already); None for anything else."""
    if is_number(value):
        return float(value)
    parsed = parse_datetime(value)
    return parsed.timestamp() if parsed else None


def is_number(value: Any) -> bool:
    """A JSON number: int or float, but not a boolean (which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
