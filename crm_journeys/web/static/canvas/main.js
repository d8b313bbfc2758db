// The canvas editor: loads the draft and the catalogue from the JSON API, draws the map,
// and saves every edit back with PUT /api/journeys/<id> (the same document and loader the
// API and the form builder use), redrawing in place with the errors the server reports.
import { client } from "./api.js";
import { connections, insertOn, layout, removeStep, startConnection } from "./model.js";
import { el, draw } from "./render.js";
import { h } from "./forms.js";
import { insertPanel, publishPanel, settingsPanel, startPanel, stepPanel } from "./panels.js";
import { errorText, sandboxPanel, testPanel } from "./tryout.js";

const UNDO_LIMIT = 30;
const POLL_MS = 3000;

class CanvasApp {
  constructor(root) {
    this.root = root;
    this.journeyId = Number(root.dataset.journey);
    this.api = client(root.dataset.api, root.dataset.csrf);
    this.canEdit = !!root.dataset.canEdit;
    this.canPublish = !!root.dataset.canPublish;
    this.svg = root.querySelector("#cv-svg");
    this.panelEl = root.querySelector("#cv-panel");
    this.statusEl = root.querySelector("#cv-status");
    this.undoStack = [];
    this.fresh = new Set();  // just added, not yet saved from its form: no errors shown in it
    this.counts = {};
    this.selected = null;
    this.view = { k: 1, x: 0, y: 0 };
    this.autoFit = true;  // the map follows its growth until the user zooms or pans by hand
    this.owners = [];
    this.pickers = {};
  }

  async start() {
    const [catalog, journey] = await Promise.all([this.api.get("/catalog"), this.api.get(`/journeys/${this.journeyId}`)]);
    this.catalog = catalog;
    this.owners = await this.api.get("/owners").catch(() => []);
    this.showing = "draft";  // or a published version's number: read-only, with its own counts
    this.accept(journey);
    await this.loadVersions();
    this.buildSvg();
    this.wire();
    this.render();
    this.fit();
    await this.refreshCounts();
    setInterval(() => { if (!document.hidden) this.refreshCounts(); }, POLL_MS);
  }

  accept(journey) {
    this.journey = journey;
    this.doc = journey.draft;
    this.doc.steps = this.doc.steps || [];
    this.doc.starting_points = this.doc.starting_points || [];
    this.errors = this.parseErrors(journey.draft_errors || {});
  }

  parseErrors(raw) {
    const out = { steps: {}, stepPaths: {}, starts: {}, startPaths: {}, other: {}, count: 0 };
    for (const [path, messages] of Object.entries(raw)) {
      out.count += 1;
      let m = path.match(/^steps\[(\d+)\]\.?(.*)$/);
      if (m && this.doc.steps[+m[1]]) {
        const id = this.doc.steps[+m[1]].id;
        (out.steps[id] = out.steps[id] || []).push(`${words(m[2])}${messages.join(" ")}`);
        (out.stepPaths[id] = out.stepPaths[id] || {})[m[2]] = messages;
        continue;
      }
      m = path.match(/^starting_points\[(\d+)\]\.?(.*)$/);
      if (m) {
        (out.starts[+m[1]] = out.starts[+m[1]] || []).push(`${words(m[2])}${messages.join(" ")}`);
        (out.startPaths[+m[1]] = out.startPaths[+m[1]] || {})[m[2]] = messages;
        continue;
      }
      out.other[path] = messages;
    }
    return out;
  }

  // --- drawing, zoom and pan ------------------------------------------------------------

  buildSvg() {
    const defs = el("defs");
    const marker = el("marker", { id: "cv-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#829ab1" }));
    defs.append(marker);
    this.bg = el("rect", { class: "cv-bg", width: "100%", height: "100%" });
    this.viewport = el("g", { id: "cv-viewport" });
    this.svg.append(defs, this.bg, this.viewport);
  }

  async loadVersions() {
    this.versions = await this.api.get(`/journeys/${this.journeyId}/versions`).catch(() => []);
    const select = this.root.querySelector("#cv-version");
    const live = this.journey.version;
    select.replaceChildren(h("option", { value: "draft", text: "the draft (editable)" }),
      ...this.versions.map((v) => h("option", { value: String(v.version),
        text: `version ${v.version}${v.version === live ? " (live)" : ""}`, selected: String(v.version) === String(this.showing) })));
    select.onchange = () => this.show(select.value);
  }

  show(which) {
    this.showing = which === "draft" ? "draft" : Number(which);
    this.closePanel();
    this.autoFit = true;
    this.render();
    this.refreshCounts();
  }

  /** The document drawn: the draft, or the chosen published version. */
  shownDoc() {
    if (this.showing === "draft") return this.doc;
    return (this.versions.find((v) => v.version === this.showing) || {}).document || this.doc;
  }

  render() {
    this.lay = layout(this.shownDoc());
    const errors = this.showing === "draft" ? this.errors : this.parseErrors({});
    draw(this.viewport, this.lay, { catalog: this.catalog, counts: this.counts, errors, selected: this.selected });
    if (this.autoFit) this.fit(); else this.applyView();
    this.showStatus();
  }

  applyView() {
    const { k, x, y } = this.view;
    this.viewport.setAttribute("transform", `translate(${x},${y}) scale(${k})`);
  }

  zoom(factor, cx, cy) {
    this.autoFit = false;
    const rect = this.svg.getBoundingClientRect();
    const px = cx ?? rect.width / 2, py = cy ?? rect.height / 2;
    const k = Math.min(2.5, Math.max(0.25, this.view.k * factor));
    this.view.x = px - ((px - this.view.x) * k) / this.view.k;
    this.view.y = py - ((py - this.view.y) * k) / this.view.k;
    this.view.k = k;
    this.applyView();
  }

  fit() {
    const rect = this.svg.getBoundingClientRect();
    if (!rect.width) return;
    const k = Math.min(1.2, Math.max(0.3, Math.min(rect.width / this.lay.width, rect.height / this.lay.height)));
    this.view = { k, x: (rect.width - this.lay.width * k) / 2, y: 0 };
    this.applyView();
  }

  wire() {
    new ResizeObserver(() => { if (this.autoFit && this.lay) this.fit(); }).observe(this.svg);
    this.svg.addEventListener("click", (ev) => this.onCanvasClick(ev));
    this.svg.addEventListener("keydown", (ev) => {
      if ((ev.key === "Enter" || ev.key === " ") && ev.target.getAttribute?.("role") === "button") {
        ev.preventDefault();
        this.onCanvasClick(ev);
      }
    });
    this.svg.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const rect = this.svg.getBoundingClientRect();
      this.zoom(ev.deltaY < 0 ? 1.1 : 1 / 1.1, ev.clientX - rect.left, ev.clientY - rect.top);
    }, { passive: false });
    let drag = null;
    this.svg.addEventListener("pointerdown", (ev) => {
      if (ev.target !== this.bg && ev.target !== this.svg) return;
      drag = { x: ev.clientX, y: ev.clientY, vx: this.view.x, vy: this.view.y };
      this.autoFit = false;
      this.svg.setPointerCapture(ev.pointerId);
      this.svg.classList.add("dragging");
    });
    this.svg.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      this.view.x = drag.vx + ev.clientX - drag.x;
      this.view.y = drag.vy + ev.clientY - drag.y;
      this.applyView();
    });
    const stop = () => { drag = null; this.svg.classList.remove("dragging"); };
    this.svg.addEventListener("pointerup", stop);
    this.svg.addEventListener("pointercancel", stop);
    this.root.querySelector(".cv-toolbar").addEventListener("click", (ev) => {
      const cmd = ev.target.closest("[data-cmd]")?.dataset.cmd;
      if (cmd) this.command(cmd);
    });
    document.addEventListener("keydown", (ev) => {
      if ((ev.ctrlKey || ev.metaKey) && ev.key === "z" && !ev.target.closest("input, textarea, select")) {
        ev.preventDefault();
        this.undo();
      }
    });
  }

  onCanvasClick(ev) {
    const target = ev.target.closest("[role=button]");
    if (!target) return;
    const d = target.dataset;
    if (this.showing !== "draft") {
      this.say(`Version ${this.showing} is read-only: choose "the draft" under Show to change the journey.`);
      return;
    }
    if (d.step) this.openStep(d.step);
    else if (d.start !== undefined) this.openStart(Number(d.start));
    else if (d.insert !== undefined) this.openInsert(this.lay.edges[Number(d.insert)]);
    else if (d.end) this.openInsert(this.lay.edges.find((e) => e.to === d.end));
    else if (d.cmd) this.command(d.cmd);
  }

  command(cmd) {
    const actions = {
      "zoom-in": () => this.zoom(1.2), "zoom-out": () => this.zoom(1 / 1.2), fit: () => { this.autoFit = true; this.fit(); },
      undo: () => this.undo(), "add-start": () => this.addStart(), settings: () => this.openPanel(settingsPanel(this), "settings"),
      test: () => this.openPanel(testPanel(this), "test"), sandbox: () => this.openPanel(sandboxPanel(this), "sandbox"),
      publish: () => this.publish(),
    };
    actions[cmd]?.();
  }

  // --- the side panel -------------------------------------------------------------------

  openPanel(children, selected) {
    this.selected = selected;
    this.panelEl.replaceChildren(...children.filter(Boolean));
    this.panelEl.hidden = false;
    this.root.classList.add("with-panel");
    this.render();
    this.panelEl.querySelector("h2")?.focus();
  }

  closePanel() {
    this.panelEl.hidden = true;
    this.panelEl.replaceChildren();
    this.root.classList.remove("with-panel");
    this.selected = null;
    this.render();
  }

  openStep(id) { this.openPanel(stepPanel(this, id), id); }
  openStart(index) { this.openPanel(startPanel(this, index), `start:${index}`); }

  openInsert(edge) {
    if (!edge || !this.canEdit) return;
    const from = this.lay.placed.get(edge.from), to = this.lay.placed.get(edge.to);
    const fromName = from.kind === "step" ? `after "${from.step.label || from.step.id}"` : "after the starting point";
    const where = `${fromName}${edge.label ? ` on the ${edge.label} branch` : ""}${to?.kind === "step" ? `, before "${to.step.label || to.step.id}"` : ""}`;
    this.openPanel(insertPanel(this, edge.conn, where), null);
  }

  confirmThen(message, action) {
    const dialog = h("dialog", { class: "cv-confirm", "aria-labelledby": "cv-confirm-text" },
      h("p", { id: "cv-confirm-text", text: message }),
      h("div", { class: "row" },
        h("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => { dialog.close(); dialog.remove(); } }),
        h("button", { type: "button", class: "danger", text: "Yes, do it", onclick: () => { dialog.close(); dialog.remove(); action(); } })));
    document.body.append(dialog);
    dialog.showModal();
  }

  stepLabel(id) {
    const s = this.doc.steps.find((x) => x.id === id);
    return s ? s.label || s.id : id;
  }

  conditionCtx() {
    if (!this.fieldList) {
      const known = ["email", "first_name", "last_name", "country", "language", "owner", "phone", "city", "time_zone", "birthday"];
      this.fieldList = h("datalist", { id: "cv-fields" }, ...known.map((f) => h("option", { value: f })));
      document.body.append(this.fieldList);
    }
    return { catalog: this.catalog, fieldListId: "cv-fields" };
  }

  // --- editing: every change is one undoable save ---------------------------------------

  async commit(message, mutate, reopen) {
    if (!this.canEdit) { this.say("You can look but not edit (ask an editor)."); return; }
    this.undoStack.push(JSON.stringify(this.doc));
    if (this.undoStack.length > UNDO_LIMIT) this.undoStack.shift();
    mutate(this.doc);
    await this.save(message, reopen);
  }

  async save(message, reopen) {
    this.say("Saving…");
    try {
      this.accept(await this.api.put(`/journeys/${this.journeyId}`, { document: this.doc }));
      this.lastMessage = message;
    } catch (err) {
      this.lastMessage = `Not saved: ${errorText(err)}`;
    }
    this.render();
    if (reopen && reopen.startsWith("start:")) this.openStart(Number(reopen.slice(6)));
    else if (reopen && this.doc.steps.some((s) => s.id === reopen)) this.openStep(reopen);
    else if (reopen === null) this.closePanel();
  }

  async saveNow() { if (this.canEdit) await this.save(this.lastMessage || "Saved", undefined); }

  insert(conn, step) {
    this.fresh.add(step.id);
    return this.commit(`Added "${step.label}"`, (d) => insertOn(d, conn, step), step.id);
  }

  removeStep(id) { return this.commit("Deleted a step", (d) => removeStep(d, id), null); }

  addStart() {
    const n = this.doc.starting_points.length;
    const ids = new Set(this.doc.starting_points.map((p) => p.id));
    let i = n + 1;
    while (ids.has(`start_${i}`)) i += 1;
    this.fresh.add(`start:${n}`);
    return this.commit("Added a starting point", (d) => {
      d.starting_points.push({ id: `start_${i}`, type: "tag_added", params: {}, filter: null, next: null });
    }, `start:${n}`);
  }

  async undo() {
    const previous = this.undoStack.pop();
    if (!previous) return;
    this.doc = JSON.parse(previous);
    await this.save("Undone", null);
  }

  async publish() {
    if (!this.canPublish) { this.say("Only a publisher can publish."); return; }
    await this.saveNow();
    const inFlight = await this.waitingInOlderVersions();
    if (inFlight.length) this.openPanel(publishPanel(this, inFlight), null);
    else await this.publishWith({});
  }

  /** Contacts waiting now in any published version, per step: [{id, label, count, versions}]. */
  async waitingInOlderVersions() {
    const byStep = new Map();
    for (const v of this.versions) {
      const counts = await this.api.get(`/journeys/${this.journeyId}/versions/${v.version}/counts`).catch(() => ({ steps: [] }));
      for (const s of counts.steps.filter((x) => x.waiting)) {
        const step = (v.document.steps || []).find((x) => x.id === s.id) || {};
        const entry = byStep.get(s.id) || { id: s.id, label: step.label || s.id, count: 0, versions: [] };
        entry.count += s.waiting;
        entry.versions.push(v.version);
        byStep.set(s.id, entry);
      }
    }
    return [...byStep.values()];
  }

  async publishWith(migration) {
    try {
      const out = await this.api.post(`/journeys/${this.journeyId}/publish`, { migration });
      this.accept(out);
      const moved = Object.entries(out.moved || {}).map(([step, n]) => `${n} from “${this.stepLabel(step)}”`);
      this.lastMessage = `Published version ${this.journey.version}. New contacts enter it now.` +
        (moved.length ? ` Moved ${moved.join(", ")}.` : "");
      await this.loadVersions();
      this.closePanel();
    } catch (err) {
      if (err.body?.errors) this.errors = this.parseErrors(err.body.errors);
      this.lastMessage = `Not published: ${errorText(err)}`;
    }
    this.render();
    this.refreshCounts();
  }

  async refreshCounts() {
    try {
      const number = this.showing === "draft" ? this.journey.version : this.showing;
      if (!number) return;  // never published: nobody is in it yet
      const stats = await this.api.get(`/journeys/${this.journeyId}/versions/${number}/counts`);
      this.counts = Object.fromEntries(stats.steps.map((s) => [s.id, s]));
      for (const node of this.viewport.querySelectorAll("[data-counts]")) {
        const c = this.counts[node.dataset.counts] || {};
        node.querySelector(".waiting").textContent = `${c.waiting || 0} waiting`;
        node.querySelector(".passed").textContent = `${c.entered || 0} passed`;
      }
    } catch (_) { /* counts are a bonus: the editor keeps working without them */ }
  }

  // --- status line ----------------------------------------------------------------------

  say(text) { this.statusEl.textContent = text; }

  showStatus() {
    const j = this.journey;
    const title = document.querySelector("main h1");
    if (title && j.name) title.textContent = j.name;
    const badge = title?.parentElement.querySelector(".badge");
    if (badge) { badge.textContent = j.status; badge.className = `badge ${j.status}`; }
    const parts = [this.lastMessage || "All changes saved"];
    parts.push(j.status === "draft" ? "draft, not published yet" : `${j.status}, version ${j.version ?? "—"}`);
    if (j.status !== "draft") parts.push(j.unpublished_changes ? "unpublished changes" : "no unpublished changes");
    if (this.errors.count) parts.push(`${this.errors.count} thing${this.errors.count === 1 ? "" : "s"} to fix before publishing`);
    else if (j.unpublished_changes) parts.push("ready to publish");
    this.say(parts.join(" · "));
    this.statusEl.dataset.unpublished = j.unpublished_changes ? "1" : "";
    this.statusEl.dataset.problems = String(this.errors.count);
    const undo = this.root.querySelector("[data-cmd=undo]");
    undo.disabled = !this.undoStack.length;
    const pub = this.root.querySelector("[data-cmd=publish]");
    pub.disabled = !j.unpublished_changes;
    pub.title = j.unpublished_changes ? "" : "Nothing changed since the live version";
  }
}

function words(path) {
  if (!path) return "";
  return `${path.replace(/^params\./, "").replaceAll("_", " ").replaceAll(".", " ")}: `;
}

const root = document.getElementById("canvas-app");
if (root) {
  const app = new CanvasApp(root);
  window.cjCanvas = app;
  app.start().catch((err) => { root.querySelector("#cv-status").textContent = `The canvas could not load: ${err.message}`; });
}

export { CanvasApp, connections, startConnection };
