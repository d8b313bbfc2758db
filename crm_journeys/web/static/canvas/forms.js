// Side-panel forms, generated from the catalogue (GET /api/catalog): the same field lists
// the server-rendered builder uses, so a step type or action added to the catalogue shows
// up here without touching the canvas. Values are plain words where the document is not
// (durations); the API's loader remains the one validator.
import { durationWords, toIso } from "./words.js";

let uid = 0;
const nextId = (stem) => `cv-${stem}-${++uid}`;

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

export function getPath(obj, path) {
  return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

export function setPath(obj, path, value) {
  const keys = path.split(".");
  let o = obj;
  for (const k of keys.slice(0, -1)) { if (o[k] == null || typeof o[k] !== "object") o[k] = {}; o = o[k]; }
  o[keys[keys.length - 1]] = value;
}

/** A labelled field wrapper; ``errs`` are shown under it (only after a save attempt). */
export function field(label, input, { help, errs = [], required } = {}) {
  const id = input.id || (input.id = nextId("f"));
  const wrap = h("div", { class: `field ${errs.length ? "has-error" : ""}` },
    h("label", { for: id, text: label + (required ? " *" : "") }), input);
  if (help) {
    const helpId = nextId("h");
    wrap.append(h("div", { class: "help", id: helpId, text: help }));
    input.setAttribute("aria-describedby", helpId);
  }
  for (const e of errs) wrap.append(h("div", { class: "error", role: "alert", text: e }));
  if (errs.length) input.setAttribute("aria-invalid", "true");
  return wrap;
}

export function stepOptions(doc, current, selfId) {
  const select = h("select", {}, h("option", { value: "", text: "— nothing: the journey ends here —" }));
  for (const s of doc.steps || []) {
    if (s.id === selfId) continue;
    select.append(h("option", { value: s.id, text: s.label || s.id, selected: s.id === current }));
  }
  return select;
}

/** Text input that takes "2 days", "3 hours", "1 week" (or ISO) and reads back ISO. */
export function durationInput(iso) {
  const input = h("input", { type: "text", value: durationWords(iso), placeholder: "e.g. 2 days", "data-duration": "1" });
  return input;
}

function readDuration(input, errors, label) {
  if (!input.value.trim()) return null;
  const iso = toIso(input.value);
  if (!iso) errors.push(`${label}: write a number and a unit, such as "2 days" or "3 hours".`);
  return iso || input.value;
}

const MERGE_TAGS = [["first name", "{{ contact.first_name }}"], ["last name", "{{ contact.last_name }}"],
  ["email", "{{ contact.email }}"], ["owner", "{{ contact.owner }}"]];

/** A "Insert merge tag" picker that writes into ``target`` at the cursor. */
export function mergeTagPicker(target) {
  const select = h("select", { "aria-label": "Insert a merge tag", class: "cv-merge" },
    h("option", { value: "", text: "Insert merge tag…" }),
    ...MERGE_TAGS.map(([label, tag]) => h("option", { value: tag, text: `contact's ${label}` })));
  select.addEventListener("change", () => {
    if (!select.value) return;
    const at = target.selectionStart ?? target.value.length;
    target.value = target.value.slice(0, at) + select.value + target.value.slice(target.selectionEnd ?? at);
    select.value = "";
    target.focus();
  });
  return select;
}

export const CONTACT_OWNER = "{{ contact.owner }}";

/** Owner chooser: nobody, the contact's owner, one of the host's owners or a typed name. */
function ownerInput(value, owners) {
  const select = h("select", {},
    h("option", { value: "", text: "Nobody (unassigned)" }),
    h("option", { value: CONTACT_OWNER, text: "The contact's owner", selected: value === CONTACT_OWNER }),
    ...owners.map((o) => h("option", { value: o.email || o.id, text: o.name || o.email, selected: value === (o.email || o.id) })),
    h("option", { value: "__other", text: "Someone else (type a name or email)…" }));
  const other = h("input", { type: "text", "aria-label": "Owner name or email", placeholder: "name or email" });
  const known = value === "" || value == null || value === CONTACT_OWNER || owners.some((o) => (o.email || o.id) === value);
  if (!known) { select.value = "__other"; other.value = value; }
  const sync = () => { other.hidden = select.value !== "__other"; };
  select.addEventListener("change", sync); sync();
  const wrap = h("span", { class: "cv-owner" }, select, other);
  wrap.read = () => (select.value === "__other" ? other.value.trim() : select.value) || null;
  wrap.focusTarget = select;
  return wrap;
}

/** One catalogue parameter as an input with a ``read()`` (``errors`` collects bad values). */
export function paramInput(spec, value, ctx) {
  const t = spec.type;
  if (spec.picker === "owners" && t === "text") {
    const w = ownerInput(value ?? "", ctx.owners || []);
    return { el: w, input: w.focusTarget, read: () => w.read() };
  }
  if (t === "bool") {
    const input = h("input", { type: "checkbox", checked: !!value });
    return { el: input, input, read: () => input.checked, checkbox: true };
  }
  if (t === "integer" || t === "number") {
    const input = h("input", { type: "number", value: value ?? "", step: t === "integer" ? "1" : "any" });
    return { el: input, input, read: () => (input.value === "" ? undefined : Number(input.value)) };
  }
  if (t === "list") {
    const input = h("input", { type: "text", value: (value || []).join(", ") });
    return { el: input, input, read: () => input.value.split(",").map((s) => s.trim()).filter(Boolean), help: "separate with commas" };
  }
  if (t === "object") {
    const input = h("textarea", {}, value ? JSON.stringify(value, null, 2) : "");
    return { el: input, input, read: (errors) => {
      if (!input.value.trim()) return undefined;
      try { return JSON.parse(input.value); } catch (_) { errors.push(`${spec.label}: not valid JSON`); return undefined; }
    } };
  }
  const multiline = spec.widget === "textarea";
  const input = multiline ? h("textarea", {}, value ?? "") : h("input", { type: t === "email" ? "email" : "text", value: value ?? "" });
  if (spec.picker && ctx.pickers?.[spec.picker]?.length) {
    const list = h("datalist", { id: nextId("dl") }, ...ctx.pickers[spec.picker].map((v) => h("option", { value: v })));
    input.setAttribute("list", list.id);
    const wrapEl = h("span", {}, input, list);
    return { el: wrapEl, input, read: () => input.value.trim() || undefined };
  }
  const mergeable = ctx.mergeTags && (multiline || /subject|title|body|description/.test(spec.name));
  const el = mergeable ? h("span", { class: "cv-with-merge" }, input, mergeTagPicker(input)) : input;
  return { el, input, read: () => (input.value === "" ? undefined : input.value) };
}

/** Fields for a parameter list; returns {el, read(errors)} reading an object. */
export function paramsForm(specs, values, errsFor, ctx) {
  const box = h("div", { class: "cv-params" });
  const readers = [];
  for (const spec of specs) {
    const p = paramInput(spec, values?.[spec.name], ctx);
    const f = field(spec.label, p.el, { help: p.help || spec.help, errs: errsFor(spec.name), required: spec.required });
    if (p.el !== p.input) f.querySelector("label").setAttribute("for", p.input.id || (p.input.id = nextId("f")));
    box.append(f);
    readers.push([spec.name, p.read]);
  }
  return { el: box, read: (errors) => Object.fromEntries(readers.map(([n, r]) => [n, r(errors)]).filter(([, v]) => v !== undefined)) };
}

// --- conditions ------------------------------------------------------------------------

const NO_VALUE = new Set(["is_set", "is_blank", "is_true", "is_false"]);
const NO_FIELD = new Set(["has_tag", "not_has_tag", "in_group", "not_in_group", "in_segment", "not_in_segment",
  "email_sent", "email_opened", "email_clicked"]);
const LISTS = new Set(["in", "not_in"]);
const NUMERIC = new Set(["gt", "gte", "lt", "lte", "within_last_days", "within_next_days"]);

/** "Match all/any of" rows of field, operator and value; reads back the condition document. */
export function conditionEditor(cond, ctx, label = "Condition") {
  const leaves = cond?.all || cond?.any || (cond ? [cond] : []);
  const mode = h("select", { "aria-label": `${label}: how rows combine` },
    h("option", { value: "all", text: "all of these are true" }),
    h("option", { value: "any", text: "any of these is true", selected: !!cond?.any }));
  const rows = h("div", { class: "cv-cond-rows" });
  const box = h("fieldset", { class: "cond" }, h("legend", { text: label }),
    h("div", { class: "row" }, h("span", { text: "Continue when" }), mode), rows);
  const add = h("button", { type: "button", class: "secondary", text: "+ Add a condition", onclick: () => rows.append(row({}, ctx, rows)) });
  box.append(add);
  leaves.forEach((leaf) => rows.append(row(leaf, ctx, rows)));
  box.read = () => {
    const list = [...rows.children].map((r) => r.read()).filter(Boolean);
    if (!list.length) return null;
    return list.length === 1 ? list[0] : { [mode.value]: list };
  };
  return box;
}

function row(leaf, ctx, rows) {
  const n = rows.children.length + 1;
  const op = h("select", { "aria-label": `Condition ${n}: test` });
  const groups = Object.entries(ctx.catalog.operators).sort(([a], [b]) => (a === "text" ? -1 : b === "text" ? 1 : 0));
  for (const [type, ops] of groups) {
    const group = h("optgroup", { label: type.replace("_", " ") });
    for (const o of ops) group.append(h("option", { value: o.op, text: o.label, selected: o.op === leaf.op }));
    op.append(group);
  }
  if (!leaf.op) op.value = "eq";
  const fieldInput = h("input", { type: "text", value: leaf.field || "", placeholder: "field, e.g. country", "aria-label": `Condition ${n}: field`, list: ctx.fieldListId || null });
  const value = h("input", { type: "text", value: Array.isArray(leaf.value) ? leaf.value.join(", ") : (leaf.value ?? ""), "aria-label": `Condition ${n}: value`, placeholder: "value" });
  const remove = h("button", { type: "button", class: "secondary", "aria-label": `Remove condition ${n}`, text: "×" });
  const r = h("div", { class: "cv-cond-row" }, fieldInput, op, value, remove);
  remove.addEventListener("click", () => r.remove());
  const sync = () => {
    fieldInput.hidden = NO_FIELD.has(op.value);
    value.hidden = NO_VALUE.has(op.value);
    value.placeholder = op.value.startsWith("email_") ? "email name" : op.value.includes("tag") ? "tag" : "value";
  };
  op.addEventListener("change", sync); sync();
  r.read = () => {
    const out = { op: op.value };
    if (!NO_FIELD.has(op.value)) out.field = fieldInput.value.trim();
    if (!NO_VALUE.has(op.value)) {
      const raw = value.value.trim();
      out.value = LISTS.has(op.value) ? raw.split(",").map((s) => s.trim()).filter(Boolean)
        : NUMERIC.has(op.value) && raw !== "" && !Number.isNaN(Number(raw)) ? Number(raw) : raw;
    }
    if (leaf.days) out.days = leaf.days;
    return out;
  };
  return r;
}

export { readDuration };
