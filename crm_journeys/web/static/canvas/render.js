// Draws a layout (model.js) as SVG: boxes, connections, "+" buttons and live counts.
// Every clickable shape is a focusable role=button with a name, so the canvas works by
// keyboard and screen reader as well as by mouse.
import { NODE_H, NODE_W } from "./model.js";
import { startSummary, stepSummary } from "./words.js";

const NS = "http://www.w3.org/2000/svg";
const COLORS = { action: "#2f6fde", wait: "#c77d00", wait_until: "#c77d00", wait_and_check: "#c77d00",
  react_to_event: "#c77d00", if_then: "#c77d00", exit: "#616e7c" };

export function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(attrs, label) {
  return el("g", { ...attrs, role: "button", tabindex: "0", "aria-label": label, class: `cv-btn ${attrs.class || ""}` });
}

function clip(text, n) { return text.length > n ? text.slice(0, n - 1) + "…" : text; }

export function draw(viewport, lay, { catalog, counts, errors, selected }) {
  viewport.replaceChildren();
  const edgeLayer = el("g", { class: "cv-edges" }), nodeLayer = el("g", { class: "cv-nodes" });
  viewport.append(edgeLayer, nodeLayer);
  lay.edges.forEach((e, i) => drawEdge(edgeLayer, nodeLayer, lay, e, i));
  for (const n of lay.nodes) nodeLayer.append(drawNode(n, { catalog, counts, errors, selected }));
}

function drawEdge(edgeLayer, nodeLayer, lay, e, i) {
  const a = lay.placed.get(e.from), b = lay.placed.get(e.to);
  if (!a || !b) return;
  const color = e.label === "yes" ? "#1f9d55" : e.label === "no" ? "#c53030" : "#829ab1";
  let d, mx, my;
  if (e.back) {
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x + NODE_W, y2 = b.y + NODE_H / 2;
    d = `M${x1},${y1} C${x1 + 70},${y1} ${x2 + 70},${y2} ${x2 + 2},${y2}`;
    mx = Math.max(x1, x2) + 52; my = (y1 + y2) / 2;
  } else {
    const x1 = a.x + NODE_W / 2, y1 = a.y + NODE_H, x2 = b.x + NODE_W / 2, y2 = b.y;
    d = `M${x1},${y1} C${x1},${y1 + 40} ${x2},${y2 - 40} ${x2},${y2 - 3}`;
    mx = (x1 + x2) / 2; my = (y1 + y2) / 2;
  }
  edgeLayer.append(el("path", { d, fill: "none", stroke: color, "stroke-width": 1.6,
    "stroke-dasharray": e.back || e.open ? "5 4" : null, "marker-end": "url(#cv-arrow)" }));
  if (e.label) {
    edgeLayer.append(el("text", { x: mx + 14, y: my - 10, class: "cv-edge-label", fill: color }, e.label));
  }
  if (!e.open && !e.back) {
    const g = button({ "data-insert": i, class: "cv-plus" },
      `Insert a step ${e.label ? `on the ${e.label} branch ` : ""}between ${nameOf(a)} and ${nameOf(b)}`);
    g.append(el("circle", { cx: mx, cy: my, r: 11 }), el("text", { x: mx, y: my + 5, "text-anchor": "middle" }, "+"));
    nodeLayer.append(g);
  }
}

function nameOf(n) {
  if (n.kind === "start") return `starting point ${n.index + 1}`;
  if (n.kind === "step") return `"${n.step.label || n.step.id}"`;
  return "the end";
}

function drawNode(n, { catalog, counts, errors, selected }) {
  if (n.kind === "end" || n.kind === "ghost-start") {
    const isStart = n.kind === "ghost-start";
    const label = isStart ? "Add a starting point" : `Add a step${n.label ? ` (${n.label})` : ""}`;
    const g = button(isStart ? { "data-cmd": "add-start" } : { "data-end": n.key }, label);
    g.classList.add("cv-end");
    g.append(el("rect", { x: n.x + 40, y: n.y + 14, width: NODE_W - 80, height: NODE_H - 28, rx: 25 }),
      el("text", { x: n.x + NODE_W / 2, y: n.y + NODE_H / 2 + 5, "text-anchor": "middle" }, `+ ${label}`));
    return g;
  }
  if (n.kind === "start") {
    const errs = errors.starts[n.index] || [];
    const g = button({ "data-start": n.index, class: `cv-start ${selected === `start:${n.index}` ? "on" : ""}` },
      `Starting point: ${startSummary(n.point, catalog)}${errs.length ? `, ${errs.length} problem(s)` : ""}`);
    g.append(el("rect", { x: n.x, y: n.y, width: NODE_W, height: NODE_H, rx: 36 }),
      el("text", { x: n.x + NODE_W / 2, y: n.y + 26, "text-anchor": "middle", class: "cv-kicker" }, "Starts when"),
      el("text", { x: n.x + NODE_W / 2, y: n.y + 46, "text-anchor": "middle", class: "cv-title" },
        clip(startSummary({ ...n.point, filter: null }, catalog), 30)));
    if (n.point.filter) {
      g.append(el("text", { x: n.x + NODE_W / 2, y: n.y + 63, "text-anchor": "middle", class: "cv-sub" },
        clip(`if ${startSummary({ type: "", params: {}, filter: n.point.filter }, catalog).split("· if ")[1] || ""}`, 34)));
    }
    if (errs.length) g.append(badge(n.x + NODE_W - 10, n.y + 6, errs.length));
    return g;
  }
  const step = n.step, errs = errors.steps[step.id] || [], c = counts[step.id] || {};
  const g = button({ "data-step": step.id, class: `cv-step ${selected === step.id ? "on" : ""} ${errs.length ? "bad" : ""}` },
    `Step "${step.label || step.id}": ${stepSummary(step, catalog)}. ${c.waiting || 0} waiting, ${c.entered || 0} passed` +
    `${errs.length ? `. ${errs.length} problem(s): ${errs.join("; ")}` : ""}`);
  g.append(el("rect", { x: n.x, y: n.y, width: NODE_W, height: NODE_H, rx: 8, class: "cv-box" }),
    el("rect", { x: n.x, y: n.y, width: 6, height: NODE_H, rx: 3, fill: COLORS[step.type] || "#7b61ff" }),
    el("text", { x: n.x + 16, y: n.y + 22, class: "cv-title" }, clip(step.label || step.id, 27)),
    el("text", { x: n.x + 16, y: n.y + 41, class: "cv-sub" }, clip(stepSummary(step, catalog), 34)));
  const line = el("text", { x: n.x + 16, y: n.y + 62, class: "cv-counts", "data-counts": step.id });
  line.append(el("tspan", { class: "waiting" }, `${c.waiting || 0} waiting`), el("tspan", {}, " · "),
    el("tspan", { class: "passed" }, `${c.entered || 0} passed`));
  g.append(line);
  if (errs.length) {
    const b = badge(n.x + NODE_W - 10, n.y + 6, errs.length);
    b.append(el("title", {}, errs.join("\n")));
    g.append(b);
  }
  if (n.orphan) g.append(el("text", { x: n.x + NODE_W - 12, y: n.y + 70, "text-anchor": "end", class: "cv-warn" }, "not connected"));
  return g;
}

function badge(x, y, count) {
  const g = el("g", { class: "cv-badge" });
  g.append(el("circle", { cx: x, cy: y + 6, r: 11 }), el("text", { x, y: y + 11, "text-anchor": "middle" }, `${count}!`));
  return g;
}
