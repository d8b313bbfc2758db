// What the side panel shows: a step's or starting point's form, the step chooser behind a
// "+", journey settings, publishing, and the "try it" tools (test mode and sandbox contacts).
import { BRANCHING, blankStep, renameStep, uniqueId } from "./model.js";
import {
  conditionEditor, durationInput, field, getPath, h, paramsForm, readDuration, setPath, stepOptions,
} from "./forms.js";
import { startType } from "./words.js";

const clone = (x) => JSON.parse(JSON.stringify(x));

function panel(app, title, ...body) {
  const close = h("button", { type: "button", class: "secondary cv-close", "aria-label": "Close the panel", text: "×",
    onclick: () => app.closePanel() });
  return [h("div", { class: "cv-panel-head" }, h("h2", { text: title, tabindex: "-1" }), close), ...body];
}

function problems(list) {
  if (!list.length) return null;
  return h("div", { class: "problems", role: "alert" }, h("strong", { text: "To fix before publishing:" }),
    h("ul", {}, ...list.map((e) => h("li", { text: e }))));
}

/** The form of one step, generated from the catalogue's step form. */
export function stepPanel(app, stepId) {
  const doc = app.doc, catalog = app.catalog;
  const original = doc.steps.find((s) => s.id === stepId);
  const step = clone(original);
  const spec = catalog.steps.find((s) => s.type === step.type) || { label: step.type, fields: [] };
  const errs = app.fresh.has(stepId) ? {} : app.errors.stepPaths[stepId] || {};  // no "required" before typing
  const errsFor = (name) => errs[name] || [];
  const form = h("form", { class: "cv-form", id: "cv-step-form", novalidate: true });
  const label = h("input", { type: "text", value: step.label || "", name: "label" });
  form.append(h("p", { class: "help", text: spec.label }), field("Name on the map", label, { errs: errsFor("label") }));
  const readers = [];
  for (const f of spec.fields) readers.push(fieldFor(app, form, step, f, errsFor));
  const other = Object.entries(errs).filter(([k]) => !spec.fields.some((f) => k === f.name || k.startsWith(f.name + ".")) && k !== "label");
  const general = problems(other.map(([k, v]) => `${k ? k + ": " : ""}${v.join(" ")}`));
  const save = h("button", { type: "submit", text: "Save step" });
  const remove = h("button", { type: "button", class: "danger", text: "Delete step" });
  const note = h("div", { class: "error", role: "alert" });
  form.append(h("div", { class: "row cv-actions" }, save, remove), note);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const bad = [];
    step.label = label.value.trim() || step.id;
    for (const read of readers) read(bad);
    if (bad.length) { note.textContent = bad.join(" "); return; }
    // A new step's id comes from its type until it has a name; on its first save it takes
    // one from the name, so timelines, analytics and exports read "webinar_invite".
    const newId = app.fresh.has(stepId) && step.label !== spec.label ? uniqueId({ steps: app.doc.steps.filter((s) => s.id !== stepId) }, step.label) : stepId;
    app.fresh.delete(stepId);
    app.commit(`Saved "${step.label}"`, (d) => {
      d.steps = d.steps.map((s) => (s.id === stepId ? step : s));
      if (newId !== stepId) renameStep(d, stepId, newId);
    }, newId);
  });
  remove.addEventListener("click", () => app.confirmThen(`Delete the step "${step.label || step.id}"? Whatever led to it will lead to its next step.`,
    () => app.removeStep(stepId)));
  return panel(app, `Step: ${step.label || step.id}`, general, form);
}

function fieldFor(app, form, step, f, errsFor) {
  const value = getPath(step, f.name);
  const errs = errsFor(f.name);
  const opts = { errs, required: f.required, help: f.help && !f.help.includes("P3D") ? f.help : undefined };
  const put = (v) => setPath(step, f.name, v);
  switch (f.type) {
    case "action": {
      const select = h("select", { name: "action" }, h("option", { value: "", text: "— choose —" }),
        ...app.catalog.actions.map((a) => h("option", { value: a.name, text: a.label, selected: a.name === value })));
      const holder = h("div");
      let params = null;
      const renderParams = () => {
        const action = app.catalog.actions.find((a) => a.name === select.value);
        params = action ? paramsForm(action.params, select.value === step.action ? step.params : {},
          (name) => errsFor(`params.${name}`), { owners: app.owners, pickers: app.pickers, mergeTags: true }) : null;
        holder.replaceChildren(params ? params.el : "");
      };
      select.addEventListener("change", renderParams);
      form.append(field(f.label, select, opts), holder);
      renderParams();
      return (bad) => { step.action = select.value || null; step.params = params ? params.read(bad) : {}; };
    }
    case "action_params": return () => {};
    case "step": {
      const select = stepOptions(app.doc, value, step.id);
      select.name = f.name;
      form.append(field(f.label, select, opts));
      return () => put(select.value || null);
    }
    case "duration": {
      const input = durationInput(value);
      input.name = f.name;
      form.append(field(f.label, input, { ...opts, help: "a number and a unit: 2 days, 3 hours, 1 week" }));
      return (bad) => put(readDuration(input, bad, f.label));
    }
    case "condition": {
      const editor = conditionEditor(value, app.conditionCtx(), f.label);
      form.append(editor);
      for (const e of errs) editor.append(h("div", { class: "error", role: "alert", text: e }));
      return () => put(editor.read());
    }
    case "event_type": {
      const select = h("select", { name: f.name }, ...Object.entries(app.catalog.events).map(([name, ev]) =>
        h("option", { value: name, text: `${name.replaceAll("_", " ")} — ${ev.description}`, selected: name === value })));
      form.append(field(f.label, select, opts));
      return () => put(select.value);
    }
    case "bool": {
      const input = h("input", { type: "checkbox", checked: !!value, name: f.name });
      form.append(field(f.label, input, opts));
      return () => put(input.checked);
    }
    case "integer": {
      const input = h("input", { type: "number", value: value ?? "", name: f.name, step: "1" });
      form.append(field(f.label, input, opts));
      return () => put(input.value === "" ? null : Number(input.value));
    }
    case "date": case "time": {
      const input = h("input", { type: f.type, value: value ?? "", name: f.name });
      form.append(field(f.label, input, opts));
      return () => put(input.value || null);
    }
    case "list": {
      const boxes = (f.choices || []).map((c) => h("label", { class: "inline" },
        h("input", { type: "checkbox", value: c, checked: (value || []).includes(c) }), c));
      form.append(h("fieldset", { class: "cv-choices" }, h("legend", { text: f.label }), ...boxes));
      return () => put(boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value));
    }
    case "cases": case "paths": {
      form.append(h("p", { class: "help", text: `${f.label}: edit these on the Build tab; the canvas keeps them as they are.` }));
      return () => {};
    }
    default: {
      const input = h("input", { type: "text", value: value ?? "", name: f.name });
      form.append(field(f.label, input, opts));
      return () => put(input.value.trim() || null);
    }
  }
}

/** A starting point: its type (grouped as the catalogue groups them), parameters and filter. */
export function startPanel(app, index) {
  const point = clone(app.doc.starting_points[index]);
  const errs = app.fresh.has(`start:${index}`) ? {} : app.errors.startPaths[index] || {};
  const form = h("form", { class: "cv-form", id: "cv-start-form", novalidate: true });
  const type = h("select", { name: "type" }, h("option", { value: "", text: "— choose —" }),
    ...app.catalog.starting_points.map((g) => h("optgroup", { label: g.label },
      ...g.types.map((t) => h("option", { value: t.name, text: t.label, selected: t.name === point.type })))));
  const holder = h("div");
  let params = null;
  const renderParams = () => {
    const spec = startType(type.value, app.catalog);
    params = spec ? paramsForm(spec.params, type.value === point.type ? point.params : {},
      (n) => errs[`params.${n}`] || [], { pickers: app.pickers }) : null;
    holder.replaceChildren(spec ? h("p", { class: "help", text: spec.description }) : "", params ? params.el : "");
  };
  type.addEventListener("change", renderParams);
  const filter = conditionEditor(point.filter, app.conditionCtx(), "Only contacts who match (optional)");
  form.append(field("Starts when", type, { errs: errs.type || [], required: true }), holder, filter);
  renderParams();
  const other = Object.entries(errs).filter(([k]) => k !== "type" && !k.startsWith("params."));
  const save = h("button", { type: "submit", text: "Save starting point" });
  const remove = h("button", { type: "button", class: "danger", text: "Remove starting point" });
  const note = h("div", { class: "error", role: "alert" });
  form.append(problems(other.map(([k, v]) => `${k}: ${v.join(" ")}`)) || "", h("div", { class: "row cv-actions" }, save, remove), note);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const bad = [];
    point.type = type.value;
    point.params = params ? params.read(bad) : {};
    point.filter = filter.read();
    if (bad.length) { note.textContent = bad.join(" "); return; }
    app.fresh.delete(`start:${index}`);
    app.commit("Saved the starting point", (d) => { d.starting_points[index] = point; }, `start:${index}`);
  });
  remove.addEventListener("click", () => app.confirmThen("Remove this starting point? Contacts will no longer enter through it.",
    () => app.commit("Removed a starting point", (d) => { d.starting_points.splice(index, 1); }, null)));
  return panel(app, "Starting point", form);
}

/** What the "+" offers: every step type of the catalogue. */
export function insertPanel(app, conn, where) {
  const list = h("ul", { class: "cv-choose" });
  for (const s of app.catalog.steps) {
    list.append(h("li", {}, h("button", { type: "button", class: "secondary", "data-step-type": s.type, text: s.label,
      onclick: () => {
        const step = blankStep(app.doc, s.type, app.catalog);
        app.insert(conn, step);
      } })));
  }
  return panel(app, "Add a step", h("p", { class: "help", text: `Adding ${where}.` }), list);
}

/** Name, re-entry policy and the journey-wide entry filter. */
export function settingsPanel(app) {
  const doc = app.doc;
  const form = h("form", { class: "cv-form", id: "cv-settings-form", novalidate: true });
  const name = h("input", { type: "text", value: doc.name || "", name: "name" });
  const policy = h("select", { name: "entry.policy" }, ...app.catalog.entry_policies.map((p) =>
    h("option", { value: p, text: POLICY_WORDS[p] || p, selected: (doc.entry || {}).policy === p })));
  const filter = conditionEditor(doc.entry_filter, app.conditionCtx(), "Every contact must match (optional)");
  const errs = app.errors.other;
  form.append(field("Journey name", name, { errs: errs.name || [] }),
    field("Who can enter again", policy, { errs: errs["entry.policy"] || [] }), filter,
    h("div", { class: "row cv-actions" }, h("button", { type: "submit", text: "Save settings" })));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    app.commit("Saved the settings", (d) => {
      d.name = name.value.trim() || d.name;
      d.entry = { ...(d.entry || {}), policy: policy.value };
      d.entry_filter = filter.read();
    }, null);
  });
  return panel(app, "Journey settings", form);
}

/** Before publishing over contacts in flight: where each waiting group goes (or stays). */
export function publishPanel(app, inFlight) {
  const form = h("form", { class: "cv-form", id: "cv-publish-form", novalidate: true });
  form.append(h("p", { class: "help", text: "Contacts in flight stay on their version unless you move them to a step of the new one." }));
  const choices = inFlight.map((g) => {
    const select = h("select", { name: `move.${g.id}` }, h("option", { value: "", text: "keep them where they are" }),
      ...app.doc.steps.map((s) => h("option", { value: s.id, text: `move to “${s.label || s.id}”` })));
    const versions = g.versions.map((v) => `version ${v}`).join(", ");
    form.append(field(`${g.count} waiting at “${g.label}” (${versions})`, select));
    return [g.id, select];
  });
  form.append(h("div", { class: "row cv-actions" }, h("button", { type: "submit", text: "Publish" })));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const migration = Object.fromEntries(choices.filter(([, s]) => s.value).map(([id, s]) => [id, s.value]));
    app.publishWith(migration);
  });
  return panel(app, "Publish", form);
}

const POLICY_WORDS = { once: "Only once, ever", every_time: "Every time the starting point happens",
  after_exit: "Again after leaving the journey", cooldown: "Again after a cool-down", max_times: "Up to a number of times" };

export { BRANCHING };
