"""A version comparison that reads as a list of changed steps and settings.

``diff.diff_documents`` gives JSON paths (``steps[welcome].params.subject``); this groups
them by the step, starting point or setting they belong to, names steps by their labels,
and writes values as a person would: durations as "2 days", conditions as sentences,
connections by the label of the step they lead to.
"""

from __future__ import annotations

import json
import re
from typing import Any

from crm_journeys.definition.durations import parse_duration
from crm_journeys.services.condition_words import describe

_ITEM = re.compile(r"^(steps|starting_points|goals|exit_rules)\[([^\]]+)\]\.?(.*)$")
_KINDS = {"steps": "Step", "starting_points": "Starting point", "goals": "Goal", "exit_rules": "Exit rule"}
_CONDITIONS = {"condition", "filter", "entry_filter", "where"}
_DURATIONS = {"duration", "timeout", "offset", "horizon", "cooldown"}
_CONNECTIONS = {"next", "yes", "no", "default", "to", "first_step", "then"}
_NAMES = {"params": "", "branches.yes": "the yes branch", "branches.no": "the no branch", "next": "the next step",
          "entry.policy": "who can enter again", "entry_filter": "the entry filter", "first_step": "the first step",
          "run_multiple_times": "run again when the contact comes back", "event.type": "the event"}


def duration_words(value: str) -> str:
    """``P2D`` -> "2 days" (whole weeks, days, hours or minutes); anything else as given."""
    try:
        seconds = int(parse_duration(value).total_seconds())
    except ValueError:
        return value
    for size, unit in ((604800, "week"), (86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'' if n == 1 else 's'}"
    return value


def _labels(*docs: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for doc in docs:
        for step in doc.get("steps") or []:
            if isinstance(step, dict) and step.get("id"):
                out.setdefault(str(step["id"]), str(step.get("label") or step["id"]))
    return out


def _value(key: str, value: Any, labels: dict[str, str]) -> str:
    last = key.rsplit(".", 1)[-1]
    if value is None or value == "" or value == []:
        return "nothing"
    if last in _CONDITIONS or key in _CONDITIONS:
        return describe(value)
    if last in _DURATIONS and isinstance(value, str):
        return duration_words(value)
    if last in _CONNECTIONS and isinstance(value, str):
        return f"“{labels.get(value, value)}”"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return f"“{value}”"
    if isinstance(value, dict) and value.get("type"):
        return f"a {str(value.get('type')).replace('_', ' ')} ({value.get('label') or value.get('id') or ''})".replace(" ()", "")
    return json.dumps(value, ensure_ascii=False)[:120]


def _name(key: str) -> str:
    if key in _NAMES:
        return _NAMES[key]
    return key.removeprefix("params.").replace("_", " ").replace(".", " ")


def _sentence(key: str, change: dict[str, Any], labels: dict[str, str]) -> str:
    before, after = _value(key, change["before"], labels), _value(key, change["after"], labels)
    if change["change"] == "added":
        return f"{_name(key)} set to {after}"
    if change["change"] == "removed":
        return f"{_name(key)} removed (was {before})"
    return f"{_name(key)} changed from {before} to {after}"


def changes_in_words(before: dict[str, Any], after: dict[str, Any], changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per changed thing: ``{"what": "Step “Send the invite”", "changes": [sentences]}``."""
    labels = _labels(after, before)
    grouped: dict[str, list[str]] = {}
    for change in changes:
        match = _ITEM.match(change["path"])
        if match:
            kind, item_id, rest = match.groups()
            name = labels.get(item_id, item_id) if kind == "steps" else item_id
            what = f"{_KINDS[kind]} “{name}”"
            if not rest:
                text = "added" if change["change"] == "added" else "removed" if change["change"] == "removed" else "changed"
            else:
                text = _sentence(rest, change, labels)
        else:
            what, text = "Settings", _sentence(change["path"], change, labels)
        grouped.setdefault(what, []).append(text)
    return [{"what": what, "changes": texts} for what, texts in grouped.items()]
