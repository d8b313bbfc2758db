"""ISO 8601 durations (``P3D``, ``PT2H``, ``P1W``, ``-P3D``) to and from ``timedelta``.

Journeys store durations as text so a business analyst can read them; the model holds
``timedelta``. Years and months are refused on purpose: they have no fixed length, and a
wait of "one month" would silently mean different things in February and March.
"""

from __future__ import annotations

import re
from datetime import timedelta

DURATION_RE = re.compile(
    r"^(?P<sign>-)?P(?!$)"
    r"(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_CALENDAR_UNITS = re.compile(r"^-?P[^T]*\d[YM]")
# A wait longer than a century is a typo, and a far larger one overflows the date it is
# added to ("date value out of range" with the first contact, long after publish).
MAX_DURATION = timedelta(days=36500)


def parse_duration(text: str) -> timedelta:
    """Read an ISO 8601 duration in weeks, days, hours, minutes and seconds.

    Args:
        text: ``P3D``, ``PT2H30M``, ``P1W``, ``-P3D`` (a negative offset: "3 days before").

    Returns:
        The equivalent ``timedelta``.

    Raises:
        ValueError: with a message fit to show to the journey's author.
    """
    if not isinstance(text, str):
        raise ValueError("must be an ISO 8601 duration such as P3D or PT2H")
    match = DURATION_RE.fullmatch(text)
    if match is None:
        if _CALENDAR_UNITS.match(text):
            raise ValueError("years and months have no fixed length; use days or weeks (P30D)")
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as P3D, PT2H or -P1W")
    parts = {k: float(v) for k, v in match.groupdict().items() if v and k != "sign"}
    try:
        delta = timedelta(**parts)
    except OverflowError:
        delta = MAX_DURATION * 2
    if delta > MAX_DURATION:
        raise ValueError(f"{text!r} is too long: at most 100 years (P36500D)")
    return -delta if match["sign"] else delta


def format_duration(delta: timedelta) -> str:
    """Write a ``timedelta`` as the shortest ISO 8601 duration (days, never weeks).

    ``format_duration(parse_duration(s))`` reads back to the same ``timedelta``.
    """
    sign = "-" if delta < timedelta(0) else ""
    delta = abs(delta)
    days, rest = delta.days, delta.seconds
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    date_part = f"{days}D" if days else ""
    time_part = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M")) if n) + _seconds(
        seconds, delta.microseconds
    )
    if not date_part and not time_part:
        return "PT0S"
    return f"{sign}P{date_part}" + (f"T{time_part}" if time_part else "")


def _seconds(seconds: int, micros: int) -> str:
    if not seconds and not micros:
        return ""
    if not micros:
        return f"{seconds}S"
    return f"{seconds}.{micros:06d}".rstrip("0") + "S"
