"""Why a contact did not enter a journey, in words: which starting point was tried, which
filter failed and on which values, or that the re-entry policy kept it out.

Test mode answers "the contact did not enter" with this instead of "check the starting
point and filters". The filters are judged by the reference condition evaluator
(``definition.conditions``), the oracle the compiled rules are tested against, so the
explanation and the engine cannot disagree about a filter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crm_journeys.definition.conditions import evaluate, referenced_fields
from crm_journeys.definition.schema import parse_condition
from crm_journeys.definition.triggers import CATALOG
from crm_journeys.services.condition_words import describe

POLICY_WORDS = {"once": "enter only once, ever", "every_time": "enter every time",
                "after_exit": "enter again only after leaving", "cooldown": "enter again only after a cool-down",
                "max_times": "enter a limited number of times"}


def facts_of(contact: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A test contact as the evaluator's facts (no email activity yet: it just arrived)."""
    fields = {"email": contact.get("email"), "first_name": contact.get("first_name") or None,
              "last_name": contact.get("last_name") or None, **(contact.get("fields_") or contact.get("fields") or {})}
    return {"fields": {k: v for k, v in fields.items() if v is not None}, "tags": list(contact.get("tags") or []),
            "groups": list(contact.get("groups") or []), "segments": [], "activity": {}, "event": {},
            "now": now.timestamp()}


def _failed(label: str, cond: Any, facts: dict[str, Any]) -> str | None:
    """A sentence when ``cond`` does not hold, naming the values it looked at."""
    if not cond:
        return None
    parsed = parse_condition(cond)
    if evaluate(parsed, facts):
        return None
    seen = [f"{name} is {facts['fields'][name]!r}" if name in facts["fields"] else f"{name} is not set"
            for name in sorted(referenced_fields(parsed))]
    tags = f"; its tags are {', '.join(facts['tags'])}" if facts["tags"] else "; it has no tags"
    return f"{label} did not match: it asks for {describe(cond)}, and the contact's {', '.join(seen) or 'data'}{tags}."


def why_not_entered(document: dict[str, Any], contact: dict[str, Any], starting_point: str | None,
                    now: datetime) -> str:
    points = [p for p in document.get("starting_points") or [] if isinstance(p, dict)]
    chosen = next((p for p in points if p.get("id") == starting_point), points[0] if points else None)
    if chosen is None:
        return "The contact did not enter: the journey has no starting point."
    kind = CATALOG.get(str(chosen.get("type")))
    name = kind.label if kind else str(chosen.get("type"))
    facts = facts_of(contact, now)
    for label, cond in ((f"The filter of the starting point “{name}”", chosen.get("filter")),
                        ("The journey's entry filter", document.get("entry_filter"))):
        reason = _failed(label, cond, facts)
        if reason:
            return f"The contact did not enter. {reason}"
    policy = str((document.get("entry") or {}).get("policy") or "once")
    return (f"The contact did not enter, although the starting point “{name}” fired and the filters matched: "
            f"the re-entry policy lets a contact {POLICY_WORDS.get(policy, policy)}, or the journey is not live "
            f"in this run.")


def why_not_in_journey(document: dict[str, Any], contact: dict[str, Any], entered_at: list[datetime],
                       now: datetime) -> list[str]:
    """For a real contact and a journey's live version: each starting point with whether its
    filter holds for the contact today, the entry filter, and the re-entry policy."""
    facts = facts_of(contact, now)
    lines = []
    policy = str((document.get("entry") or {}).get("policy") or "once")
    if entered_at and policy == "once":
        lines.append(f"It entered on {min(entered_at):%Y-%m-%d %H:%M}; the journey lets a contact "
                     f"{POLICY_WORDS['once']}.")
    reason = _failed("The journey's entry filter", document.get("entry_filter"), facts)
    if reason:
        lines.append(reason)
    for point in document.get("starting_points") or []:
        kind = CATALOG.get(str(point.get("type")))
        name = kind.label if kind else str(point.get("type"))
        failed = _failed(f"The filter of the starting point “{name}”", point.get("filter"), facts)
        lines.append(failed or f"The starting point “{name}” would let it in: it has not happened for this "
                               f"contact since the journey went live ({describe_start(point)}).")
    return lines


def describe_start(point: dict[str, Any]) -> str:
    params = ", ".join(f"{k} {v}" for k, v in (point.get("params") or {}).items() if v not in (None, "", []))
    return params or "no parameters"
