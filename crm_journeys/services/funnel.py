"""The analytics funnel drawn along the journey's branches, not in document order.

From the first step (and each starting point's own entry step) it follows ``next`` and,
at a split, lists each branch (yes / no, each case and ``default``, each random path)
with how many contacts took it, then the steps down that branch one level deeper. A step
reached a second time (a branch rejoining, or a jump back) is shown once, where it was
first met, and the later branch says it joins it.
"""

from __future__ import annotations

from typing import Any


def exits(step: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    """(branch name, target) of a step; one ``(None, next)`` for a step that does not split."""
    kind = step.get("type")
    if isinstance(step.get("branches"), dict):
        order = {"yes": 0, "no": 1}  # stored JSON may come back with sorted keys
        return sorted(step["branches"].items(), key=lambda kv: (order.get(kv[0], 2), kv[0]))
    if kind == "multi_split":
        cases = [(str(c.get("name") or ""), c.get("next")) for c in step.get("cases") or [] if isinstance(c, dict)]
        return [*cases, ("default", step.get("default"))]
    if kind == "random_split":
        return [(str(p.get("name") or ""), p.get("next")) for p in step.get("paths") or [] if isinstance(p, dict)]
    return [(None, step.get("next"))] if "next" in step else []


def funnel(document: dict[str, Any], per_step: dict[str, dict[str, Any]], totals: dict[str, int]) -> list[dict[str, Any]]:
    """Rows ``{"label", "count", "depth", "branch", "step"}`` in the order of the journey's paths."""
    steps = {st["id"]: st for st in document.get("steps") or [] if isinstance(st, dict) and st.get("id")}
    rows: list[dict[str, Any]] = [_row("Entered", totals.get("entered", 0), 0)]
    seen: set[str] = set()

    def walk(sid: str | None, depth: int) -> None:
        while sid and sid in steps and sid not in seen:
            seen.add(sid)
            st, stats = steps[sid], per_step.get(sid, {})
            rows.append(_row(st.get("label") or sid, stats.get("entered", 0), depth, step=sid))
            outs = exits(st)
            if len(outs) != 1 or outs[0][0] is not None:
                for name, target in outs:
                    label = f"{name} → end" if not target else f"{name} → joins {target}" if target in seen else str(name)
                    rows.append(_row(label, (stats.get("branches") or {}).get(name or "", 0), depth + 1,
                                     step=sid, branch=name))
                    walk(target, depth + 2)
                return
            sid = outs[0][1] if outs else None

    walk(document.get("first_step"), 1)
    for sp in document.get("starting_points") or []:
        if isinstance(sp, dict):
            walk(sp.get("next"), 1)
    rows.append(_row("Completed", totals.get("completed", 0), 0))
    if document.get("goals"):
        rows.append(_row("Goal reached", totals.get("goal_reached", 0), 0))
    return rows


def _row(label: str, count: int, depth: int, *, step: str | None = None, branch: str | None = None) -> dict[str, Any]:
    return {"label": label, "count": int(count), "depth": depth, "step": step, "branch": branch}
