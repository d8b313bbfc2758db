"""How many SMS segments a body costs: GSM-7 when every character is in GSM 03.38, else UCS-2.

A carrier bills per segment, so the builder shows the count as the author types and the
action records it. The rules are those Twilio documents for its segment calculator:
GSM-7 fits 160 septets in one segment and 153 per segment once split (a 7-septet
user-data header per part); an extension-table character (``{ } [ ] ~ \\ | ^ €`` and
form feed) costs two septets and is never split across parts. UCS-2 fits 70 UTF-16 code
units, 67 once split, and a surrogate pair is never split. No maintained Python library
counts this (the candidates on PyPI are unmaintained), and the table is small and fixed
by the standard, so it is written out here; ``web/static/sms_counter.js`` mirrors it for
the live count in the builder.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


@dataclass(frozen=True)
class SegmentCount:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int  # as the reader counts them (code points)
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int

    def to_json(self) -> dict[str, object]:
        return {"encoding": self.encoding, "characters": self.characters, "units": self.units,
                "segments": self.segments}


def is_gsm7(text: str) -> bool:
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def count_segments(text: str) -> SegmentCount:
    """The encoding Twilio will use for ``text`` and the segments it is split into."""
    if is_gsm7(text):
        units = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return SegmentCount("GSM-7", len(text), sum(units), _split(units, 160, 153))
    units = [len(ch.encode("utf-16-le")) // 2 for ch in text]
    return SegmentCount("UCS-2", len(text), sum(units), _split(units, 70, 67))


def _split(units: list[int], single: int, per_part: int) -> int:
    """Parts needed when each character's units must stay together in one part."""
    total = sum(units)
    if total == 0:
        return 0
    if total <= single:
        return 1
    parts, used = 1, 0
    for size in units:
        if used + size > per_part:
            parts, used = parts + 1, 0
        used += size
    return parts
