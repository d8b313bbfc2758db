// Trying a journey without the API: test mode (a throw-away run on a virtual clock that
// fast-forwards through waits) and the sandbox CRM's contacts (create, tag, edit, send any
// catalogue event), both in the side panel.
import { durationInput, field, h, readDuration } from "./forms.js";
import { conditionWords, durationWords, startSummary, toIso } from "./words.js";

function fieldsFromText(text) {
  const out = {};
  for (const line of text.split(/\n|;/)) {
    const m = line.match(/^\s*([^=:]+?)\s*[=:]\s*(.*?)\s*$/);
    if (m && m[1]) out[m[1]] = m[2];
  }
  return out;
}

const fieldsToText = (fields) => Object.entries(fields || {}).map(([k, v]) => `${k} = ${v}`).join("\n");
const splitTags = (text) => text.split(",").map((t) => t.trim()).filter(Boolean);

function contactInputs(values = {}) {
  const email = h("input", { type: "email", name: "email", value: values.email || "", autocomplete: "off" });
  const first = h("input", { type: "text", name: "first_name", value: values.first_name || "" });
  const fields = h("textarea", { name: "fields", rows: "3" }, fieldsToText(values.fields));
  const tags = h("input", { type: "text", name: "tags", value: (values.tags || []).join(", ") });
  return {
    fill: (c) => {
      email.value = c.email || ""; first.value = c.first_name || "";
      fields.value = fieldsToText(c.fields); tags.value = (c.tags || []).join(", ");
    },
    els: [field("Email", email, { required: true }), field("First name", first),
      field("Fields", fields, { help: "one per line, e.g. country = DE" }), field("Tags", tags, { help: "separate with commas" })],
    read: () => ({ email: email.value.trim(), first_name: first.value.trim(), fields: fieldsFromText(fields.value), tags: splitTags(tags.value) }),
  };
}

function eventRow(app, n) {
  const after = durationInput("P1D");
  after.setAttribute("aria-label", `Event ${n}: after`);
  const type = h("select", { "aria-label": `Event ${n}: what happens` }, h("option", { value: "", text: "— no event —" }),
    ...Object.keys(app.catalog.events).map((e) => h("option", { value: e, text: e.replaceAll("_", " ") })));
  const key = h("input", { type: "text", "aria-label": `Event ${n}: for (email name, tag, …)`, placeholder: "for (email name, tag…)" });
  const row = h("div", { class: "cv-event-row" }, h("span", { text: "after" }), after, type, key);
  row.read = (bad) => (type.value ? { after: readDuration(after, bad, `Event ${n}`) || "PT0S", type: type.value, key: key.value.trim(), properties: {} } : null);
  return row;
}

export function testPanel(app) {
  const form = h("form", { class: "cv-form", id: "cv-test-form", novalidate: true });
  const who = contactInputs({ email: "test@example.com" });
  const existing = h("select", { name: "existing" }, h("option", { value: "", text: "— a made-up contact (type below) —" }));
  app.api.get("/sandbox/contacts").then((rows) => {
    for (const c of rows) existing.append(h("option", { value: String(c.id), text: c.email }));
    existing.onchange = () => { const c = rows.find((r) => String(r.id) === existing.value); if (c) who.fill(c); };
  }).catch(() => {});
  const points = app.doc.starting_points || [];
  const start = h("select", { name: "starting_point" }, ...points.map((p) => h("option", { value: p.id, text: startSummary(p, app.catalog) })));
  const events = [1, 2].map((n) => eventRow(app, n));
  const horizon = durationInput("P7D");
  const result = h("div", { id: "cv-test-result", "aria-live": "polite" });
  form.append(h("p", { class: "help", text: "Runs the draft for one made-up contact in a throw-away copy; nothing reaches the CRM." }),
    field("Start from a sandbox contact", existing, { help: "copies its fields and tags; edit them freely" }), ...who.els,
    field("Enters through", start),
    h("fieldset", { class: "cv-choices" }, h("legend", { text: "Then these happen (optional)" }), ...events),
    field("Fast-forward the clock by", horizon, { help: "waits longer than this are not passed" }),
    h("div", { class: "row cv-actions" }, h("button", { type: "submit", text: "Run test" })), result);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const bad = [];
    const contact = who.read();
    const body = { contact, starting_point: start.value || undefined, horizon: readDuration(horizon, bad, "Fast-forward") || "P30D",
      events: events.map((r) => r.read(bad)).filter(Boolean) };
    if (bad.length) { result.replaceChildren(h("p", { class: "error", text: bad.join(" ") })); return; }
    result.replaceChildren(h("p", { class: "help", text: "Running…" }));
    try {
      await app.saveNow();
      const out = await app.api.post(`/journeys/${app.journeyId}/simulate`, body);
      result.replaceChildren(...describeRun(app, out, body));
    } catch (err) {
      result.replaceChildren(h("p", { class: "error", role: "alert", text: errorText(err) }));
    }
  });
  return [h("div", { class: "cv-panel-head" }, h("h2", { text: "Test the draft", tabindex: "-1" }),
    h("button", { type: "button", class: "secondary cv-close", "aria-label": "Close the panel", text: "×", onclick: () => app.closePanel() })), form];
}

export function errorText(err) {
  const fields = Object.entries(err.body?.errors || {}).map(([k, v]) => `${k}: ${v.join(" ")}`);
  return [err.message, ...fields].join(" ");
}

function describeRun(app, out, body) {
  firstAt = null;
  const label = (id) => app.stepLabel(id);
  const done = {};
  for (const a of out.actions) (done[a.step] = done[a.step] || []).push(a);
  const items = out.timeline.map((t) => h("li", {}, h("strong", { text: `${when(t.at, body)} · ${t.step ? label(t.step) : "journey"}` }),
    " ", h("span", { class: "why", text: sentence(app, t, done, body) })));
  const records = out.records.map((r) => h("li", { text: recordWords(r) }));
  return [
    h("p", { class: `cv-outcome ${out.status}`, text: `Result: ${out.status === "not_entered" ? "did not enter" : out.status} — ${out.outcome || ""}` }),
    h("h3", { text: "What happened" }), h("ol", { class: "timeline", "data-test-timeline": "1" }, ...items),
    records.length ? h("h3", { text: "What the CRM would get" }) : "", h("ul", { class: "cv-records" }, ...records),
  ];
}

/** One timeline entry as a sentence built from the step it concerns (not the rule's name). */
function sentence(app, t, done, body) {
  const step = app.doc.steps.find((s) => s.id === t.step);
  const why = t.why || "";
  if (t.kind === "branch" && step && (step.type === "wait_and_check" || step.type === "condition_split" || step.type === "if_then")) {
    const cond = conditionWords(step.condition, app.catalog);
    const after = step.duration ? `after ${durationWords(step.duration)}, ` : "";
    return t.branch === "yes" ? `took YES: ${after}${cond}` : `took NO: ${after}it was not true that the contact ${cond}`;
  }
  if (t.kind === "branch" && step?.type === "react_to_event") {
    const ev = (step.event?.type || "the event").replaceAll("_", " ");
    return t.branch === "yes" ? `took YES: ${ev} happened` : `took NO: no ${ev} within ${durationWords(step.timeout)}`;
  }
  if (t.kind === "branch") return `took ${String(t.branch).toUpperCase()}${why ? `: ${why}` : ""}`;
  if (!t.step && /entered|fired/.test(why)) {
    const point = app.doc.starting_points.find((p) => p.id === body.starting_point) || app.doc.starting_points[0];
    return point ? `entered because ${startSummary(point, app.catalog).replace(" · if ", " and ")}` : why;
  }
  if (step?.type === "action" && done[t.step]?.length) {
    const a = done[t.step].shift();
    return `${a.summary || a.action} (${a.status})`;
  }
  if (step && /holds/.test(why)) return `waits here${step.duration ? ` (${durationWords(step.duration)})` : ""}`;
  return why || t.kind.replaceAll("_", " ");
}

let firstAt = null;
function when(at, _body) {
  const t = new Date(at);
  if (firstAt === null || t < firstAt) firstAt = t;
  const mins = Math.round((t - firstAt) / 60000);
  if (mins < 1) return "at the start";
  if (mins % 1440 === 0) return `after ${mins / 1440} day${mins === 1440 ? "" : "s"}`;
  if (mins % 60 === 0) return `after ${mins / 60} hour${mins === 60 ? "" : "s"}`;
  return `after ${mins} minutes`;
}

function recordWords(r) {
  const d = r.data || {};
  if (r.kind === "task") return `Task "${d.subject}" for ${d.owner || "nobody"}, due ${String(d.due_at || "").slice(0, 10)}`;
  if (r.kind === "email") return `Email "${d.subject}" to ${r.contact_email}`;
  if (r.kind === "tag" || r.kind === "tag_added") return `Tag "${d.tag}" on ${r.contact_email}`;
  return `${r.kind.replaceAll("_", " ")}: ${Object.values(d).filter((v) => typeof v === "string").slice(0, 2).join(", ")}`;
}

/** The sandbox CRM's contacts: create, edit (fields and tags) and send events. */
export function sandboxPanel(app) {
  const list = h("ul", { class: "cv-sandbox-list", id: "cv-sandbox-list" });
  const form = h("form", { class: "cv-form", id: "cv-sandbox-form", novalidate: true });
  const note = h("div", { "aria-live": "polite", class: "cv-note" });
  let editing = null;
  let inputs = contactInputs({});
  const holder = h("div", {}, ...inputs.els);
  const submit = h("button", { type: "submit", text: "Create contact" });
  form.append(h("p", { class: "help", text: "Contacts of the built-in sandbox CRM. Their changes reach live journeys like a real CRM's would." }),
    holder, h("div", { class: "row cv-actions" }, submit), note);
  const refresh = async () => {
    const rows = await app.api.get("/sandbox/contacts");
    list.replaceChildren(...rows.map((c) => contactRow(app, c, (row) => {
      editing = row;
      inputs = contactInputs(row);
      holder.replaceChildren(...inputs.els);
      submit.textContent = `Save ${row.email}`;
      holder.querySelector("input").focus();
    }, note, refresh)));
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const body = inputs.read();
      const row = editing ? await app.api.put(`/sandbox/contacts/${editing.id}`, body) : await app.api.post("/sandbox/contacts", body);
      note.textContent = `${editing ? "Saved" : "Created"} ${row.email}. Live journeys see the change in a moment.`;
      editing = null;
      inputs = contactInputs({});
      holder.replaceChildren(...inputs.els);
      submit.textContent = "Create contact";
      await refresh();
      app.refreshCounts();
    } catch (err) { note.textContent = errorText(err); }
  });
  refresh().catch((err) => { note.textContent = errorText(err); });
  return [h("div", { class: "cv-panel-head" }, h("h2", { text: "Sandbox contacts", tabindex: "-1" }),
    h("button", { type: "button", class: "secondary cv-close", "aria-label": "Close the panel", text: "×", onclick: () => app.closePanel() })),
  form, h("h3", { text: "Contacts" }), list];
}

function contactRow(app, c, onEdit, note, refresh) {
  const type = h("select", { "aria-label": `Event for ${c.email}` },
    ...Object.keys(app.catalog.events).map((e) => h("option", { value: e, text: e.replaceAll("_", " ") })));
  const key = h("input", { type: "text", "aria-label": `Event for ${c.email}: for (email name, tag, …)`, placeholder: "for (email name…)" });
  const send = h("button", { type: "button", class: "secondary", text: "Send event" });
  send.addEventListener("click", async () => {
    try {
      await app.api.post(`/sandbox/contacts/${c.id}/events`, { type: type.value, key: key.value.trim() });
      note.textContent = `Sent "${type.value.replaceAll("_", " ")}" for ${c.email}.`;
      app.refreshCounts();
      await refresh();
    } catch (err) { note.textContent = errorText(err); }
  });
  const facts = [c.first_name, ...Object.entries(c.fields).map(([k, v]) => `${k}: ${v}`),
    c.tags.length ? `tags: ${c.tags.join(", ")}` : ""].filter(Boolean).join(" · ");
  return h("li", { "data-sandbox": c.email }, h("strong", { text: c.email }), " ", h("span", { class: "help", text: facts }),
    h("div", { class: "row" }, h("button", { type: "button", class: "secondary", text: "Edit", onclick: () => onEdit(c) }), type, key, send));
}

export { toIso };
