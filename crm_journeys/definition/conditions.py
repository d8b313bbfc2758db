"""The reference evaluator of conditions: plain Python over the closed operator set.

It decides saved-segment membership and is the oracle the rules compiler is tested
against, so its semantics are the definition: a missing (or ``null``) field makes every
positive test false, and every ``not_*`` operator is exactly the negation of its
positive twin. It never evaluates user text; operators are looked up in a fixed table.

Facts::

    {"fields": {...}, "tags": [...], "groups": [...], "segments": [...],
     "activity": {"sent"|"opened"|"clicked": {email_id: epoch_seconds}},
     "event": {...}, "now": epoch_seconds}

Dates in fields and events are ISO 8601 text (a bare date is midnight UTC) or epoch seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

from crm_journeys.definition.dates import is_number as _is_number
from crm_journeys.definition.dates import to_epoch
from crm_journeys.definition.model import Condition, Group, Leaf

DAY = 86400
_MISSING = object()

Facts = Mapping[str, Any]


def evaluate(cond: Condition, facts: Facts) -> bool:
    """Whether ``cond`` holds for ``facts``. An empty ``all`` is true, an empty ``any`` false."""
    if isinstance(cond, Group):
        if cond.mode == "not":
            return not evaluate(cond.items[0], facts)
        results = (evaluate(c, facts) for c in cond.items)
        return all(results) if cond.mode == "all" else any(results)
    return _LEAF_TESTS[cond.op](cond, facts)


# --- looking values up ------------------------------------------------------------------


def lookup(name: str, facts: Facts) -> Any:
    """A field's value, ``_MISSING`` when absent or null.

    ``event.a.b`` walks the event's properties; a contact field is looked up by its full
    name first (CRM field names may hold dots), then walked.
    """
    if name.startswith("event."):
        return _walk(facts.get("event") or {}, name[6:])
    fields = facts.get("fields") or {}
    if name in fields:
        return _MISSING if fields[name] is None else fields[name]
    return _walk(fields, name)


def _walk(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, Mapping) or data.get(part) is None:
            return _MISSING
        data = data[part]
    return data


def _same(actual: Any, expected: Any) -> bool:
    """Equality that keeps true/false apart from 1/0, as JSON does."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    return actual == expected


# --- leaf tests -------------------------------------------------------------------------


def _eq(leaf: Leaf, facts: Facts) -> bool:
    actual = lookup(leaf.field or "", facts)
    return actual is not _MISSING and _same(actual, leaf.value)


def _in(leaf: Leaf, facts: Facts) -> bool:
    actual = lookup(leaf.field or "", facts)
    return actual is not _MISSING and any(_same(actual, v) for v in leaf.value or ())


def _is_set(leaf: Leaf, facts: Facts) -> bool:
    actual = lookup(leaf.field or "", facts)
    return actual is not _MISSING and actual != ""


def _is_bool(expected: bool) -> Callable[[Leaf, Facts], bool]:
    return lambda leaf, facts: lookup(leaf.field or "", facts) is expected


def _text(leaf: Leaf, facts: Facts) -> bool:
    """contains / starts_with, case-insensitive; on a list, an item equals (starts with) it."""
    actual = lookup(leaf.field or "", facts)
    if actual is _MISSING:
        return False
    needle = str(leaf.value).casefold()
    starts = leaf.op == "starts_with"
    if isinstance(actual, list | tuple):
        items = [str(item).casefold() for item in actual]
        return any(i.startswith(needle) if starts else i == needle for i in items)
    text = str(actual).casefold()
    return text.startswith(needle) if starts else needle in text


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _order(leaf: Leaf, facts: Facts) -> bool:
    """Numbers compare with numbers, ISO dates with dates; anything else is false."""
    actual = lookup(leaf.field or "", facts)
    if actual is _MISSING:
        return False
    if _is_number(leaf.value):
        return _is_number(actual) and _ORDER[leaf.op](actual, leaf.value)
    left, right = _epoch(actual), to_epoch(leaf.value)
    return left is not None and right is not None and _ORDER[leaf.op](left, right)


def _epoch(value: Any) -> float | None:
    return None if value is _MISSING else to_epoch(value)


def _date_compare(leaf: Leaf, facts: Facts) -> bool:
    stamp, bound = _epoch(lookup(leaf.field or "", facts)), to_epoch(leaf.value)
    if stamp is None or bound is None:
        return False
    return stamp < bound if leaf.op == "date_before" else stamp > bound


def _within(leaf: Leaf, facts: Facts) -> bool:
    """within_last_days: now - days <= date <= now; within_next_days: now <= date <= now + days."""
    stamp, now = _epoch(lookup(leaf.field or "", facts)), float(facts["now"])
    if stamp is None:
        return False
    span = (leaf.days or 0) * DAY
    if leaf.op == "within_last_days":
        return now - span <= stamp <= now
    return now <= stamp <= now + span


def _member(kind: str) -> Callable[[Leaf, Facts], bool]:
    return lambda leaf, facts: leaf.value in (facts.get(kind) or ())


_ACTIVITY_KIND = {"email_sent": "sent", "email_opened": "opened", "email_clicked": "clicked"}


def _activity(leaf: Leaf, facts: Facts) -> bool:
    """The email was sent/opened/clicked, within the last ``days`` when given."""
    kind = _ACTIVITY_KIND[leaf.op]
    stamp = ((facts.get("activity") or {}).get(kind) or {}).get(leaf.value)
    if stamp is None:
        return False
    return leaf.days is None or float(stamp) >= float(facts["now"]) - leaf.days * DAY


def _negated(test: Callable[[Leaf, Facts], bool]) -> Callable[[Leaf, Facts], bool]:
    return lambda leaf, facts: not test(leaf, facts)


_POSITIVE: dict[str, Callable[[Leaf, Facts], bool]] = {
    "eq": _eq,
    "in": _in,
    "is_set": _is_set,
    "is_true": _is_bool(True),
    "is_false": _is_bool(False),
    "contains": _text,
    "starts_with": _text,
    "gt": _order,
    "gte": _order,
    "lt": _order,
    "lte": _order,
    "date_before": _date_compare,
    "date_after": _date_compare,
    "within_last_days": _within,
    "within_next_days": _within,
    "has_tag": _member("tags"),
    "in_group": _member("groups"),
    "in_segment": _member("segments"),
    "email_sent": _activity,
    "email_opened": _activity,
    "email_clicked": _activity,
}

# Operators defined as the exact negation of a twin: missing fields make them true.
COMPLEMENTS = {
    "neq": "eq",
    "not_in": "in",
    "is_blank": "is_set",
    "not_contains": "contains",
    "not_has_tag": "has_tag",
    "not_in_group": "in_group",
    "not_in_segment": "in_segment",
}


def _twin(op: str) -> Callable[[Leaf, Facts], bool]:
    """``not_contains`` must run ``contains`` on a leaf that says ``contains``."""
    positive = _POSITIVE[COMPLEMENTS[op]]
    return lambda leaf, facts: (
        not positive(Leaf(COMPLEMENTS[op], leaf.field, leaf.value, leaf.days), facts)
    )


_LEAF_TESTS: dict[str, Callable[[Leaf, Facts], bool]] = {
    **_POSITIVE,
    **{op: _twin(op) for op in COMPLEMENTS},
}


# --- transformations --------------------------------------------------------------------

_FLIP = {**COMPLEMENTS, **{v: k for k, v in COMPLEMENTS.items()}}


def negate(cond: Condition) -> Condition:
    """The exact negation, pushed down to the leaves by De Morgan.

    A leaf with a defined twin (eq/neq, in/not_in, is_set/is_blank, contains/not_contains,
    the set operators) flips to it; the others (gt, dates, activity, is_true) are wrapped
    in ``not``, because e.g. ``lte`` is false on a missing field where ``not gt`` is true.
    """
    if isinstance(cond, Group):
        if cond.mode == "not":
            return cond.items[0]
        flipped: Literal["all", "any"] = "any" if cond.mode == "all" else "all"
        return Group(flipped, tuple(negate(c) for c in cond.items))
    if cond.op in _FLIP:
        return Leaf(_FLIP[cond.op], cond.field, cond.value, cond.days)
    return Group("not", (cond,))


def leaves(cond: Condition) -> Iterator[Leaf]:
    """Every leaf of a condition, depth first."""
    if isinstance(cond, Leaf):
        yield cond
        return
    for item in cond.items:
        yield from leaves(item)


def referenced_fields(cond: Condition) -> set[str]:
    """The contact fields and ``event.*`` properties a condition reads."""
    return {leaf.field for leaf in leaves(cond) if leaf.field}
