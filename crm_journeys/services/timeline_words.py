"""A contact's timeline in sentences: "entered because tag webinar-2026 was added and
country is “DE”", "took NO: after 2 days, it was not true that opened email webinar_invite".

The step log keeps the compiler's terse reasons (``starting point 'tagged' fired``,
``checked after the wait: condition false``) with the rule name and the facts it saw; this
rewrites them against the document of the version the contact ran through, so the words
name the step by its label and say what the condition was. The original reason, rule and
facts stay available under the sentence for whoever debugs.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_journeys.definition.triggers import CATALOG
from crm_journeys.services.condition_words import describe
from crm_journeys.services.diff_words import duration_words
from crm_journeys.storage.models import Journey, JourneyVersion

_STARTED = re.compile(r"starting point '([^']+)'")
_CHECKS = ("wait_and_check", "condition_split", "if_then")


def start_words(point: dict[str, Any]) -> str:
    kind = CATALOG.get(str(point.get("type")))
    label = kind.label if kind else str(point.get("type"))
    params = ", ".join(str(v) for v in (point.get("params") or {}).values() if v not in (None, "", []))
    text = f"{label.lower()}: {params}" if params else label.lower()
    return f"{text} and {describe(point['filter'])}" if point.get("filter") else text


def _branch(step: dict[str, Any], branch: str) -> str:
    if step.get("type") in _CHECKS:
        cond = describe(step.get("condition"))
        after = f"after {duration_words(step['duration'])}, " if step.get("duration") else ""
        return f"took YES: {after}{cond}" if branch == "yes" else f"took NO: {after}it was not true that {cond}"
    if step.get("type") == "react_to_event":
        event = str((step.get("event") or {}).get("type") or "the event").replace("_", " ")
        key = (step.get("event") or {}).get("key")
        what = f"{event} “{key}”" if key else event
        return f"took YES: {what} happened" if branch == "yes" else \
            f"took NO: no {what} within {duration_words(str(step.get('timeout') or ''))}"
    return f"took {branch.upper()}"


def entry_words(entry: dict[str, Any], document: dict[str, Any] | None) -> str:
    """One timeline entry as a sentence (the raw reason when the document is unknown)."""
    why = str(entry.get("why") or "")
    if not document:
        return why
    steps = {s.get("id"): s for s in document.get("steps") or [] if isinstance(s, dict)}
    step = steps.get(entry.get("step"))
    started = _STARTED.search(why)
    if started:
        point = next((p for p in document.get("starting_points") or [] if p.get("id") == started.group(1)), None)
        return f"entered because {start_words(point)}" if point else why
    if entry.get("kind") == "branch" and step:
        return _branch(step, str(entry.get("branch") or ""))
    label = str(step.get("label") or step.get("id")) if step else ""
    if "holds the contact" in why and step:
        wait = f" for {duration_words(step['duration'])}" if step.get("duration") else ""
        return f"waits at “{label}”{wait}"
    for named in ([str(step.get("id")), label] if step else []):  # the log names a step by id or label
        if f"'{named}'" in why:
            return why.replace(f"'{named}'", f"“{label}”")
    return why


def worded(s: Session, tenant_id: int, timeline: list[dict[str, Any]],
           instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``timeline`` with a ``words`` sentence per entry, read against each run's version."""
    runs = {i["id"]: (i["journey_id"], i["version"]) for i in instances}
    documents = _documents(s, tenant_id, set(runs.values()))
    return [{**e, "words": entry_words(e, documents.get(runs.get(e.get("instance_id"), (0, 0))))} for e in timeline]


def with_step_labels(s: Session, tenant_id: int, instances: list[dict[str, Any]]) -> None:
    """Each run's ``step_label``: the step it is at, named as the author named it in the
    version it runs (its id when it has no label or the version has no such step)."""
    documents = _documents(s, tenant_id, {(i["journey_id"], i["version"]) for i in instances if i.get("step")})
    for i in instances:
        steps = (documents.get((i["journey_id"], i["version"])) or {}).get("steps") or []
        step = next((x for x in steps if isinstance(x, dict) and x.get("id") == i.get("step")), None)
        i["step_label"] = str(step.get("label") or i["step"]) if step else i.get("step")


def _documents(s: Session, tenant_id: int, wanted: set[tuple[int, int]]) -> dict[tuple[int, int], dict[str, Any]]:
    """The documents of the (journey, version) pairs wanted, in one query."""
    if not wanted:
        return {}
    rows = s.execute(select(JourneyVersion.journey_id, JourneyVersion.version, JourneyVersion.document)
                     .where(JourneyVersion.tenant_id == tenant_id,
                            JourneyVersion.journey_id.in_({j for j, _ in wanted})))
    return {(j, v): d for j, v, d in rows if (j, v) in wanted}


def journey_names(s: Session, tenant_id: int, journey_ids: set[int]) -> dict[int, str]:
    if not journey_ids:
        return {}
    rows = s.execute(select(Journey.id, Journey.name).where(Journey.tenant_id == tenant_id, Journey.id.in_(journey_ids)))
    return {jid: name for jid, name in rows}
