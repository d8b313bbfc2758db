"""JSON text in and out of the hot paths, with CPython's C codec built once.

``json.dumps`` builds a ``JSONEncoder`` and a C encoder on every call, and ``json.loads``
scans for leading and trailing whitespace with a regular expression around the C
scanner. The rules engine turns a message into JSON several times per decision and the
database layer serialises every JSON column of every row a batch writes (bench P1, P3),
so both use these instead: the same text, a fraction of the overhead per call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import (  # type: ignore[attr-defined]
    c_make_encoder,
    encode_basestring,
    encode_basestring_ascii,
)
from typing import Any


def writer(*, ensure_ascii: bool) -> Callable[[Any], str]:
    """``json.dumps(obj, ensure_ascii=...)`` with the C encoder built once. No
    circular-reference bookkeeping: our values are trees (a cycle still fails, with
    RecursionError instead of ValueError)."""
    encoder = json.JSONEncoder(ensure_ascii=ensure_ascii, check_circular=False)
    if c_make_encoder is None:  # pragma: no cover - not CPython
        return encoder.encode
    write = c_make_encoder(None, encoder.default, encode_basestring_ascii if ensure_ascii else encode_basestring,
                           None, encoder.key_separator, encoder.item_separator, False, False, True)
    return lambda obj: "".join(write(obj, 0))


_EMPTY = frozenset({"{}", "[]"})
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def read(text: str) -> Any:
    """``json.loads`` for text we wrote ourselves (no surrounding whitespace): the C
    scanner alone. Falls back to ``json.loads`` for anything else, so errors read the same."""
    if text in _EMPTY:  # most stored containers are empty: a new one, without scanning
        return {} if text == "{}" else []
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value


dumps = writer(ensure_ascii=True)  # the text SQLAlchemy's JSON columns have always stored


def read_or_none(text: str | None) -> Any:
    """A JSON column's value as SQLite hands it back (NULL stays None)."""
    return None if text is None else read(text)
