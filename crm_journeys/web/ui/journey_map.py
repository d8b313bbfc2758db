"""Lays a journey document out as boxes and arrows for the SVG map (no drawing here).

Starting points sit on the top row; each step goes one row below the lowest step that
leads to it on a forward path (breadth first), so branches spread sideways. Connections
back up the page (a jump) are drawn as side arcs by the template.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

NODE_W, NODE_H, GAP_X, GAP_Y, MARGIN = 210, 70, 40, 60, 20


@dataclass
class Node:
    id: str
    label: str
    kind: str  # "start" or the step type
    x: int = 0
    y: int = 0
    stats: dict[str, int] = field(default_factory=dict)


@dataclass
class Edge:
    source: str
    target: str
    label: str
    back: bool = False


@dataclass
class Layout:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def targets(step: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(connection name, target step) of a step document, as the map labels them."""
    out: list[tuple[str, str | None]] = []
    if "next" in step:
        out.append(("", step.get("next")))
    for name in ("yes", "no"):
        if name in (step.get("branches") or {}):
            out.append((name, step["branches"][name]))
    for case in step.get("cases") or []:
        out.append((str(case.get("name", "")), case.get("next")))
    if "cases" in step:
        out.append(("default", step.get("default")))
    for path in step.get("paths") or []:
        out.append((f"{path.get('name', '')} {path.get('percent', '')}%", path.get("next")))
    if step.get("type") == "jump":
        out.append(("back", step.get("to")))
    return out


def layout(document: dict[str, Any], stats: dict[str, dict[str, int]] | None = None) -> Layout:
    steps = {s["id"]: s for s in document.get("steps") or [] if isinstance(s, dict) and s.get("id")}
    starts = [p for p in document.get("starting_points") or [] if isinstance(p, dict)]
    depth: dict[str, int] = {}
    edges: list[Edge] = []
    queue: deque[str] = deque()
    for sp in starts:
        first = str(sp.get("next") or document.get("first_step") or "")
        if first in steps:
            edges.append(Edge(f"start:{sp.get('id')}", first, ""))
            if first not in depth:
                depth[first] = 1
                queue.append(first)
    while queue:
        current = queue.popleft()
        for name, target in targets(steps[current]):
            if target is not None and target in steps and target not in depth and name != "back":
                depth[target] = depth[current] + 1
                queue.append(target)
    for sid in steps:  # unreachable steps still appear, at the bottom
        depth.setdefault(sid, max(depth.values(), default=0) + 1)
    for sid, step in steps.items():
        for name, target in targets(step):
            if target is not None and target in steps:
                edges.append(Edge(sid, target, name, back=depth[target] <= depth[sid]))
    rows: dict[int, list[Node]] = {0: [Node(f"start:{sp.get('id')}", str(sp.get("type", "")), "start") for sp in starts]}
    for sid, step in steps.items():
        node = Node(sid, str(step.get("label") or sid), str(step.get("type", "")), stats=(stats or {}).get(sid, {}))
        rows.setdefault(depth[sid], []).append(node)
    widest = max((len(r) for r in rows.values()), default=1)
    width = MARGIN * 2 + widest * NODE_W + (widest - 1) * GAP_X + 60
    nodes = []
    for d in sorted(rows):
        row = rows[d]
        used = len(row) * NODE_W + (len(row) - 1) * GAP_X
        for i, node in enumerate(row):
            node.x = (width - 60 - used) // 2 + i * (NODE_W + GAP_X)
            node.y = MARGIN + d * (NODE_H + GAP_Y)
            nodes.append(node)
    height = MARGIN * 2 + (max(rows) + 1) * (NODE_H + GAP_Y)
    return Layout(nodes, edges, width, height)
