"""A condition in plain words for lists and summaries: ``has tag “VIP” and (country is
“DE” or score is at least 50)``. For reading only: nothing parses these words back, and
operator names come from the same labels the condition editor shows (``catalog.OPERATORS``).
"""

from __future__ import annotations

from typing import Any

from crm_journeys.services.catalog import NO_FIELD, NO_VALUE, OPERATORS

# The first label of an operator wins: ``eq`` reads "is" (text) rather than "equals" (number).
LABELS: dict[str, str] = {}
for _ops in OPERATORS.values():
    for _op in _ops:
        LABELS.setdefault(_op["op"], _op["label"])

_JOINERS = {"all": " and ", "any": " or "}


def describe(cond: Any) -> str:
    """``cond`` (a condition document) as one sentence fragment; "no condition" when empty."""
    if not cond:
        return "no condition"
    return _describe(cond, nested=False)


def _describe(cond: Any, *, nested: bool) -> str:
    if not isinstance(cond, dict):
        return str(cond)
    for mode, joiner in _JOINERS.items():
        if isinstance(cond.get(mode), list):
            parts = [_describe(item, nested=True) for item in cond[mode]]
            if not parts:
                return "everyone" if mode == "all" else "no one"
            text = joiner.join(parts)
            return f"({text})" if nested and len(parts) > 1 else text
    if "not" in cond:
        return f"not ({_describe(cond['not'], nested=False)})"
    return _leaf(cond)


def _leaf(leaf: dict[str, Any]) -> str:
    op = str(leaf.get("op") or "")
    label = LABELS.get(op, op.replace("_", " "))
    field = str(leaf.get("field") or "")
    if op in NO_FIELD:
        return f"{label} {_value(leaf.get('value'))}"
    if op in NO_VALUE:
        return f"{field} {label}"
    if op in ("within_last_days", "within_next_days"):
        direction = "last" if op == "within_last_days" else "next"
        return f"{field} is within the {direction} {_value(leaf.get('days'))} days"
    return f"{field} {label} {_value(leaf.get('value'))}"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "(nothing)"
    return f"“{value}”"
