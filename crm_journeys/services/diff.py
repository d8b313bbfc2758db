"""What changed between two journey documents, as a flat list of paths (for the versions page).

Lists of objects with an ``id`` (steps, starting points, goals, exit rules) are matched by
id, so moving a step is not reported as a change of every step after it.
"""

from __future__ import annotations

from typing import Any


def diff_documents(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[dict[str, Any]] = []
        for key in sorted(set(before) | set(after), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in before:
                out.append(_change(sub, "added", None, after[key]))
            elif key not in after:
                out.append(_change(sub, "removed", before[key], None))
            else:
                out += diff_documents(before[key], after[key], sub)
        return out
    if _keyed(before) and _keyed(after):
        old, new = {i["id"]: i for i in before}, {i["id"]: i for i in after}
        out = []
        for key in [*old, *(k for k in new if k not in old)]:
            sub = f"{path}[{key}]"
            if key not in new:
                out.append(_change(sub, "removed", old[key], None))
            elif key not in old:
                out.append(_change(sub, "added", None, new[key]))
            else:
                out += diff_documents(old[key], new[key], sub)
        return out
    return [] if before == after else [_change(path, "changed", before, after)]


def _keyed(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in value) \
        and len({i["id"] for i in value}) == len(value)


def _change(path: str, change: str, before: Any, after: Any) -> dict[str, Any]:
    return {"path": path, "change": change, "before": before, "after": after}
