"""Between web forms and the journey document: parse posted fields into document parts,
turn conditions into AND/OR groups of rows and back, and put each validation error next
to the form field it concerns, in plain words.

Form field names are the document paths relative to the element being edited
(``params.subject``, ``branches.yes``, ``condition.g0.r1.op``), so a DefinitionError path
maps to a field by dropping the element's prefix.
"""

from __future__ import annotations

import json
import re
from typing import Any

from werkzeug.datastructures import MultiDict

from crm_journeys.web.catalog import NO_FIELD, NO_VALUE

PLAIN = {
    "Shorter than minimum length 1.": "This can't be empty.",
    "Missing data for required field.": "This is required.",
    "Field may not be null.": "This is required.",
    "Not a valid integer.": "Enter a whole number.",
    "Not a valid number.": "Enter a number.",
    "Not a valid email address.": "Enter an email address.",
    "Unknown field.": "This is not used here.",
    "required": "This is required.",
}
_NUMBER = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?$")
MAX_ROWS_EXTRA = 2


def plain(message: str) -> str:
    return PLAIN.get(message, message[:1].upper() + message[1:])


def errors_under(errors: dict[str, list[str]], prefix: str) -> dict[str, list[str]]:
    """Errors of one element, keyed by the path inside it ('' for the element itself)."""
    out: dict[str, list[str]] = {}
    for path, msgs in errors.items():
        if path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "["):
            rel = path[len(prefix):].lstrip(".")
            out.setdefault(rel, []).extend(plain(m) for m in msgs)
    return out


def field_errors(errors: dict[str, list[str]], name: str) -> list[str]:
    """Messages for a field and anything below it (``condition`` gets ``condition.all[0].value``)."""
    return [m for path, msgs in errors.items() if path == name or path.startswith(name + ".")
            or path.startswith(name + "[") for m in msgs]


# --- scalar values ----------------------------------------------------------------------

def parse_value(kind: str, raw: str | None, *, present: bool = False) -> Any:
    """A posted text as the parameter type wants it; ``None`` when left empty.

    Wrong input is kept as text so validation reports it next to the field.
    """
    text = (raw or "").strip()
    if kind == "bool":
        return present
    if text == "":
        return None
    if kind == "integer":
        return int(text) if re.fullmatch(r"-?\d+", text) else text
    if kind == "number":
        return float(text) if _NUMBER.match(text) else text
    if kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()]
    if kind == "object":
        try:
            return json.loads(text)
        except ValueError:
            return text
    if kind == "value":
        return scalar(text)
    return text


def scalar(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if _NUMBER.match(text):
        return float(text) if "." in text else int(text)
    return text


def show_value(value: Any) -> str:
    """A document value as form text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def parse_params(specs: list[dict[str, Any]], form: MultiDict[str, str], prefix: str) -> dict[str, Any]:
    out = {}
    for spec in specs:
        name = f"{prefix}.{spec['name']}"
        if spec.get("type") == "list" and spec.get("choices"):
            value: Any = form.getlist(name) or None
        else:
            value = parse_value(spec.get("type", "text"), form.get(name), present=name in form)
        if value is not None and not (spec.get("type") == "bool" and value is False and not spec.get("required")):
            out[spec["name"]] = value
    return out


# --- conditions -------------------------------------------------------------------------

_TWIN = {"eq": "neq", "neq": "eq", "in": "not_in", "not_in": "in", "is_set": "is_blank", "is_blank": "is_set",
         "contains": "not_contains", "not_contains": "contains", "has_tag": "not_has_tag",
         "not_has_tag": "has_tag", "in_group": "not_in_group", "not_in_group": "in_group",
         "in_segment": "not_in_segment", "not_in_segment": "in_segment"}


def _leaf_row(leaf: dict[str, Any]) -> dict[str, str] | None:
    if "not" in leaf and isinstance(leaf["not"], dict) and leaf["not"].get("op") in _TWIN:
        leaf = {**leaf["not"], "op": _TWIN[leaf["not"]["op"]]}
    if "op" not in leaf:
        return None
    return {"field": str(leaf.get("field") or ""), "op": str(leaf["op"]), "value": show_value(leaf.get("value")),
            "days": show_value(leaf.get("days"))}


def condition_groups(cond: Any) -> dict[str, Any] | None:
    """A condition as ``{"mode", "groups": [{"mode", "rows": [...]}]}``; None if it is deeper
    than the form shows (it is then kept as it is)."""
    if not cond:
        return {"mode": "all", "groups": []}
    if not isinstance(cond, dict):
        return None
    row = _leaf_row(cond)
    if row is not None:
        return {"mode": "all", "groups": [{"mode": "all", "rows": [row]}]}
    mode = "all" if "all" in cond else "any" if "any" in cond else None
    if mode is None or not isinstance(cond[mode], list):
        return None
    items = cond[mode]
    rows = [_leaf_row(i) if isinstance(i, dict) else None for i in items]
    if all(r is not None for r in rows):
        return {"mode": "all", "groups": [{"mode": mode, "rows": rows}]}
    groups = []
    for item in items:
        inner = condition_groups(item)
        if inner is None or len(inner["groups"]) != 1:
            return None
        groups.append(inner["groups"][0])
    return {"mode": mode, "groups": groups}


def parse_condition_form(form: MultiDict[str, str], prefix: str) -> Any:
    """The condition posted by the AND/OR editor (None when every row is empty)."""
    if form.get(f"{prefix}.keep"):
        return json.loads(form[f"{prefix}.keep"])
    groups = []
    for g in range(_count(form, f"{prefix}.g")):
        rows = [leaf for r in range(_count(form, f"{prefix}.g{g}.r"))
                if (leaf := _parse_leaf(form, f"{prefix}.g{g}.r{r}")) is not None]
        if rows:
            groups.append({form.get(f"{prefix}.g{g}.mode", "all"): rows})
    if not groups:
        return None
    if len(groups) == 1:
        return groups[0]
    return {form.get(f"{prefix}.mode", "all"): groups}


def _count(form: MultiDict[str, str], stem: str) -> int:
    found = [int(m.group(1)) for key in form for m in [re.match(re.escape(stem) + r"(\d+)\.", key)] if m]
    return max(found) + 1 if found else 0


def _parse_leaf(form: MultiDict[str, str], prefix: str) -> dict[str, Any] | None:
    op = form.get(f"{prefix}.op", "").strip()
    if not op:
        return None
    leaf: dict[str, Any] = {"op": op}
    field = form.get(f"{prefix}.field", "").strip()
    if op not in NO_FIELD:
        leaf["field"] = field
    raw = form.get(f"{prefix}.value", "").strip()
    if op not in NO_VALUE:
        if op in ("in", "not_in"):
            leaf["value"] = [scalar(v.strip()) for v in raw.split(",") if v.strip()]
        elif op in ("has_tag", "not_has_tag", "in_group", "not_in_group", "in_segment", "not_in_segment",
                    "email_sent", "email_opened", "email_clicked", "contains", "not_contains", "starts_with",
                    "date_before", "date_after"):
            leaf["value"] = raw
        elif op not in ("within_last_days", "within_next_days"):
            leaf["value"] = scalar(raw) if raw else None
    days = form.get(f"{prefix}.days", "").strip()
    if days:
        leaf["days"] = int(days) if days.isdigit() else days
    elif op in ("within_last_days", "within_next_days"):
        leaf["days"] = None
    return leaf
