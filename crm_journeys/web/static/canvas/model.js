// The journey document as the canvas edits it: connections, inserting and removing steps,
// and a layered auto layout. Pure functions over plain objects (the API's document).

export const BRANCHING = new Set(["wait_and_check", "react_to_event", "if_then", "condition_split"]);

/** Every outgoing connection of a step: {name, get(), set(target)}; name "" is "next". */
export function connections(step) {
  const out = [];
  if (step.type === "multi_split") {
    (step.cases || []).forEach((c, i) => out.push(slot(c.name || `case ${i + 1}`, c, "next")));
    out.push(slot("otherwise", step, "default"));
  } else if (step.type === "random_split") {
    (step.paths || []).forEach((p) => out.push(slot(`${p.name || ""} ${p.percent ?? ""}%`.trim(), p, "next")));
  } else if (BRANCHING.has(step.type)) {
    step.branches = step.branches || { yes: null, no: null };
    out.push(slot("yes", step.branches, "yes"), slot("no", step.branches, "no"));
  } else if (step.type !== "exit") {
    out.push(slot("", step, "next"));
  }
  return out;
}

function slot(name, holder, key) {
  return { name, get: () => holder[key] ?? null, set: (v) => { holder[key] = v; } };
}

/** Connections of a starting point (its own "next", else the journey's first step). */
export function startConnection(doc, point) {
  return {
    name: "",
    get: () => point.next || doc.first_step || null,
    set: (v) => { if (point.next) point.next = v; else doc.first_step = v; },
  };
}

export function uniqueId(doc, base) {
  const taken = new Set((doc.steps || []).map((s) => s.id));
  const stem = String(base).toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_|_$/g, "").slice(0, 40) || "step";
  if (!taken.has(stem)) return stem;
  let n = 2;
  while (taken.has(`${stem}_${n}`)) n += 1;
  return `${stem}_${n}`;
}

export function blankStep(doc, type, catalog) {
  const label = (catalog.steps.find((s) => s.type === type) || {}).label || type;
  const step = { id: uniqueId(doc, type), type, label };
  if (type === "action") Object.assign(step, { action: null, params: {}, next: null, run_multiple_times: false });
  if (type === "wait") Object.assign(step, { duration: "P1D", next: null });
  if (type === "wait_and_check") Object.assign(step, { duration: "P1D", condition: null, branches: { yes: null, no: null } });
  if (type === "react_to_event") Object.assign(step, { event: { type: "email_opened" }, timeout: "P1D", branches: { yes: null, no: null } });
  if (type === "condition_split") Object.assign(step, { condition: null, branches: { yes: null, no: null } });
  if (type === "if_then") Object.assign(step, { condition: null, branches: { yes: null, no: null } });
  if (type === "jump") Object.assign(step, { to: null, max_times: 1, next: null });
  if (type === "multi_split") Object.assign(step, { cases: [], default: null });
  if (type === "random_split") Object.assign(step, { paths: [{ name: "A", percent: 50, next: null }, { name: "B", percent: 50, next: null }] });
  return step;
}

/** Put ``step`` on ``conn``: it takes the connection's old target as its first way on. */
export function insertOn(doc, conn, step) {
  const old = conn.get();
  const first = connections(step)[0];
  if (first && old) first.set(old);
  doc.steps = [...(doc.steps || []), step];
  conn.set(step.id);
}

/** Remove a step; whatever led to it now leads where its first connection went. */
export function removeStep(doc, id) {
  const step = doc.steps.find((s) => s.id === id);
  const onward = step ? (connections(step)[0]?.get() ?? null) : null;
  doc.steps = doc.steps.filter((s) => s.id !== id);
  for (const s of doc.steps) for (const c of connections(s)) if (c.get() === id) c.set(onward);
  if (doc.first_step === id) doc.first_step = onward;
  for (const p of doc.starting_points || []) if (p.next === id) p.next = onward;
  doc.goals?.forEach((g) => { if (g.then === id) g.then = null; });
}

/** Rename a step everywhere it is referenced (connections, first step, starting points, goals). */
export function renameStep(doc, from, to) {
  for (const s of doc.steps) {
    if (s.id === from) s.id = to;
    for (const c of connections(s)) if (c.get() === from) c.set(to);
    if (s.type === "jump" && s.to === from) s.to = to;
  }
  if (doc.first_step === from) doc.first_step = to;
  for (const p of doc.starting_points || []) if (p.next === from) p.next = to;
  for (const g of doc.goals || []) if (g.then === from) g.then = to;
}

export const NODE_W = 230, NODE_H = 78, GAP_X = 50, GAP_Y = 70, MARGIN = 40;

/**
 * Layered layout: starting points on row 0, each step one row below the first step that
 * reaches it (breadth first); every open end ("+ add a step here") gets its own slot so
 * branches stay visible even before they lead anywhere. Columns are centred per row by the
 * mean column of their parents, which keeps yes/no branches side by side under their split.
 */
export function layout(doc) {
  const steps = new Map((doc.steps || []).map((s) => [s.id, s]));
  const nodes = [], edges = [], placed = new Map();
  const starts = (doc.starting_points || []).map((p, i) => ({ key: `start:${i}`, kind: "start", point: p, index: i, row: 0 }));
  starts.forEach((n) => { nodes.push(n); placed.set(n.key, n); });
  if (!starts.length) {
    const n = { key: "start:new", kind: "ghost-start", row: 0 };
    nodes.push(n); placed.set(n.key, n);
  }
  const queue = [];
  const visit = (from, conn, label, sourceKey) => {
    const target = conn.get();
    if (target && steps.has(target)) {
      const known = placed.get(target);
      if (!known) {
        const n = { key: target, kind: "step", step: steps.get(target), row: from.row + 1, parents: [from] };
        nodes.push(n); placed.set(target, n); queue.push(n);
      } else if (known.row > from.row) known.parents.push(from);
      edges.push({ from: sourceKey, to: target, label, conn, back: placed.get(target).row <= from.row });
    } else {
      const key = `end:${sourceKey}:${label}`;
      const n = { key, kind: "end", row: from.row + 1, parents: [from], conn, label };
      nodes.push(n); placed.set(key, n);
      edges.push({ from: sourceKey, to: key, label, conn, open: true });
    }
  };
  starts.forEach((n, i) => {
    if (i === 0 || n.point.next) visit(n, startConnection(doc, n.point), "", n.key);
    else if (doc.first_step) edges.push({ from: n.key, to: doc.first_step, label: "", conn: startConnection(doc, n.point) });
  });
  if (!starts.length) visit(placed.get("start:new"), startConnection(doc, {}), "", "start:new");
  while (queue.length) {
    const n = queue.shift();
    for (const c of connections(n.step)) visit(n, c, c.name, n.key);
  }
  let bottom = Math.max(0, ...nodes.map((n) => n.row));
  for (const s of doc.steps || []) {  // unreachable steps: shown on their own row, at the bottom
    if (!placed.has(s.id)) {
      bottom += 1;
      const n = { key: s.id, kind: "step", step: s, row: bottom, parents: [], orphan: true };
      nodes.push(n); placed.set(s.id, n);
    }
  }
  const rows = new Map();
  for (const n of nodes) rows.set(n.row, [...(rows.get(n.row) || []), n]);
  for (const [row, list] of [...rows.entries()].sort((a, b) => a[0] - b[0])) {
    list.forEach((n, i) => { n.order = row === 0 ? i : i; });
    if (row > 0) {
      list.forEach((n) => { n.want = n.parents.length ? avg(n.parents.map((p) => p.col + branchShift(n, p))) : 0; });
      list.sort((a, b) => a.want - b.want);
      let last = -Infinity;
      list.forEach((n) => { n.col = Math.max(n.want, last + 1); last = n.col; });
    } else {
      list.forEach((n, i) => { n.col = i - (list.length - 1) / 2; });
    }
  }
  const minCol = Math.min(...nodes.map((n) => n.col));
  for (const n of nodes) {
    n.x = MARGIN + (n.col - minCol) * (NODE_W + GAP_X);
    n.y = MARGIN + n.row * (NODE_H + GAP_Y);
  }
  const width = Math.max(...nodes.map((n) => n.x)) + NODE_W + MARGIN;
  const height = Math.max(...nodes.map((n) => n.y)) + NODE_H + MARGIN;
  return { nodes, edges, placed, width, height };
}

function branchShift(node, parent) {
  const edge = node.label ?? "";
  if (parent.kind === "step" && BRANCHING.has(parent.step.type)) {
    const name = node.kind === "end" ? node.label : branchNameTo(parent.step, node.key);
    return name === "yes" ? -0.5 : name === "no" ? 0.5 : 0;
  }
  return edge ? 0 : 0;
}

function branchNameTo(step, id) {
  const b = step.branches || {};
  return b.yes === id ? "yes" : b.no === id ? "no" : "";
}

function avg(xs) { return xs.reduce((a, b) => a + b, 0) / xs.length; }
