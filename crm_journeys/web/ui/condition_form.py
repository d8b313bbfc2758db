"""The AND/OR condition editor as a tree of any depth: render a condition into nested
groups of rows, parse the posted form back, and hang each validation error on the row
(or group) whose document path it names.

Form names for a group at prefix ``P``: ``P.mode`` (all/any), rows ``P.r<j>.field|op|
value|days``, nested groups ``P.g<k>`` (the same shape again) and parts the form cannot
show (``not`` of a group, unknown shapes) as hidden JSON in ``P.k<i>``, so any condition
survives a save unchanged in meaning. Rows come back before nested groups; inside
``all``/``any`` the order does not change the result.

Each rendered row knows its document path relative to the condition (``all[1]``,
``any[0].all[2]``), so a DefinitionError path such as
``steps[2].condition.all[1].value`` lands on exactly that row.
"""

from __future__ import annotations

import json
import re
from typing import Any

from werkzeug.datastructures import MultiDict

from crm_journeys.services.catalog import NO_FIELD, NO_VALUE
from crm_journeys.web.ui.forms import plain, scalar, show_value

EDITABLE_DEPTH = 3  # groups inside groups inside the root: new empty groups are offered up to here

# A negated test shows as its twin operator (``not has_tag`` is ``does not have tag``).
_TWIN = {"eq": "neq", "neq": "eq", "in": "not_in", "not_in": "in", "is_set": "is_blank", "is_blank": "is_set",
         "contains": "not_contains", "not_contains": "contains", "has_tag": "not_has_tag",
         "not_has_tag": "has_tag", "in_group": "not_in_group", "not_in_group": "in_group",
         "in_segment": "not_in_segment", "not_in_segment": "in_segment"}


def _row(leaf: dict[str, Any], path: str) -> dict[str, Any] | None:
    if "not" in leaf and isinstance(leaf["not"], dict) and leaf["not"].get("op") in _TWIN:
        leaf = {**leaf["not"], "op": _TWIN[leaf["not"]["op"]]}
    if "op" not in leaf:
        return None
    return {"field": str(leaf.get("field") or ""), "op": str(leaf["op"]), "value": show_value(leaf.get("value")),
            "days": show_value(leaf.get("days")), "path": path, "errors": []}


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def condition_tree(cond: Any, errors: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The condition as a root group ``{"mode", "rows", "groups", "keeps", "errors", "path", "depth"}``.

    ``errors`` are keyed by path relative to the condition (as ``forms.errors_under``
    gives them); each lands on the deepest row or group its path lies under, the rest on
    the root.
    """
    root = _group(cond, "", 1)
    if errors:
        _place_errors(root, errors)
    return root


def _group(cond: Any, path: str, depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"mode": "all", "rows": [], "groups": [], "keeps": [], "errors": [], "path": path,
                            "depth": depth}
    if not cond:
        return node
    if isinstance(cond, dict) and (row := _row(cond, path)) is not None:
        node["rows"].append(row)
        return node
    mode = next((m for m in ("all", "any") if isinstance(cond, dict) and isinstance(cond.get(m), list)), None)
    if mode is None:
        node["keeps"].append(json.dumps(cond))
        return node
    node["mode"] = mode
    for i, item in enumerate(cond[mode]):
        item_path = _join(path, f"{mode}[{i}]")
        row = _row(item, item_path) if isinstance(item, dict) else None
        if row is not None:
            node["rows"].append(row)
        elif isinstance(item, dict) and any(isinstance(item.get(m), list) for m in ("all", "any")):
            node["groups"].append(_group(item, item_path, depth + 1))
        else:
            node["keeps"].append(json.dumps(item))
    return node


def _under(path: str, prefix: str) -> bool:
    return prefix == "" or path == prefix or path.startswith((prefix + ".", prefix + "["))


def _place_errors(root: dict[str, Any], errors: dict[str, list[str]]) -> None:
    for path, msgs in errors.items():
        target = _deepest(root, path)
        target["errors"].extend(plain(m) for m in msgs)


def _deepest(node: dict[str, Any], path: str) -> dict[str, Any]:
    for row in node["rows"]:
        if row["path"] and _under(path, row["path"]):
            return row
    for group in node["groups"]:
        if _under(path, group["path"]):
            return _deepest(group, path)
    if len(node["rows"]) == 1 and node["rows"][0]["path"] == "":  # the condition is one bare test
        return node["rows"][0]
    return node


def parse_condition_tree(form: MultiDict[str, str], prefix: str) -> Any:
    """The condition posted by the editor; None when every row is empty.

    A root holding a single nested group or kept part is that part itself, so a form
    showing one group round-trips to the same document.
    """
    if form.get(f"{prefix}.keep"):  # pages rendered before the tree editor
        return json.loads(form[f"{prefix}.keep"])
    return _parse_group(form, prefix, root=True)


def _indexes(form: MultiDict[str, str], stem: str) -> list[int]:
    pattern = re.compile(re.escape(stem) + r"(\d+)(?:\.|$)")
    return sorted({int(m.group(1)) for key in form for m in [pattern.match(key)] if m})


def _parse_group(form: MultiDict[str, str], prefix: str, *, root: bool = False) -> Any:
    rows = [leaf for j in _indexes(form, f"{prefix}.r") if (leaf := _parse_leaf(form, f"{prefix}.r{j}")) is not None]
    groups = [g for k in _indexes(form, f"{prefix}.g") if (g := _parse_group(form, f"{prefix}.g{k}")) is not None]
    keeps = [json.loads(form[f"{prefix}.k{i}"]) for i in _indexes(form, f"{prefix}.k") if form.get(f"{prefix}.k{i}")]
    items = rows + groups + keeps
    if not items:
        return None
    if root and len(items) == 1 and not rows:
        return items[0]
    mode = form.get(f"{prefix}.mode", "all")
    return {mode if mode in ("all", "any") else "all": items}


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
