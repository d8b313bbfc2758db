// Plain words for technical values: durations as "2 days" (stored as ISO 8601), conditions
// and steps as short sentences. The server's loader stays the judge of what is valid.

const UNITS = [
  ["weeks", "W", 7 * 86400], ["days", "D", 86400], ["hours", "H", 3600], ["minutes", "M", 60],
];
const ALIASES = { w: "weeks", wk: "weeks", week: "weeks", weeks: "weeks", d: "days", day: "days", days: "days",
  h: "hours", hr: "hours", hrs: "hours", hour: "hours", hours: "hours", m: "minutes", min: "minutes",
  mins: "minutes", minute: "minutes", minutes: "minutes" };

/** "2 days", "3h", "1 week" or an ISO duration -> ISO ("P2D"); null when unreadable. */
export function toIso(text) {
  const t = String(text ?? "").trim().toLowerCase();
  if (!t) return null;
  if (/^-?p/i.test(t)) return t.toUpperCase();
  const m = t.match(/^(\d+)\s*([a-z]+)$/);
  if (!m || !ALIASES[m[2]]) return null;
  return isoOf(Number(m[1]), ALIASES[m[2]]);
}

export function isoOf(amount, unit) {
  const n = Math.max(0, Math.round(Number(amount) || 0));
  if (unit === "weeks") return `P${n}W`;
  if (unit === "days") return `P${n}D`;
  if (unit === "hours") return `PT${n}H`;
  return `PT${n}M`;
}

/** ISO -> {amount, unit} in the largest whole unit ("P2D" -> 2 days). */
export function fromIso(iso) {
  const m = String(iso ?? "").match(/^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/);
  if (!m) return { amount: "", unit: "days" };
  const secs = (+m[1] || 0) * 7 * 86400 + (+m[2] || 0) * 86400 + (+m[3] || 0) * 3600 + (+m[4] || 0) * 60 + (+m[5] || 0);
  for (const [unit, , size] of UNITS) {
    if (secs && secs % size === 0) return { amount: secs / size, unit };
  }
  return { amount: Math.round(secs / 60), unit: "minutes" };
}

export function durationWords(iso) {
  if (!iso) return "";
  const { amount, unit } = fromIso(iso);
  if (amount === "") return iso;
  return `${amount} ${amount === 1 ? unit.slice(0, -1) : unit}`;
}

export function unitOptions() { return UNITS.map(([u]) => u); }

/** A condition as a sentence, using the catalogue's operator labels. */
export function conditionWords(cond, catalog) {
  if (!cond) return "always";
  if (cond.all) return cond.all.map((c) => conditionWords(c, catalog)).join(" and ");
  if (cond.any) return cond.any.map((c) => conditionWords(c, catalog)).join(" or ");
  if (cond.not) return `not (${conditionWords(cond.not, catalog)})`;
  const label = opLabel(cond.op, catalog);
  const subject = cond.field ? `${cond.field} ` : "";
  const value = cond.value === undefined || cond.value === null ? "" :
    ` ${Array.isArray(cond.value) ? cond.value.join(", ") : cond.value}`;
  const days = cond.days ? ` within ${cond.days} days` : "";
  return `${subject}${label}${value}${days}`.trim();
}

export function opLabel(op, catalog) {
  const ops = catalog?.operators || {};  // the JSON arrives key-sorted: "text" reads best ("is", not "equals")
  for (const list of [ops.text || [], ...Object.values(ops)]) {
    const hit = list.find((o) => o.op === op);
    if (hit) return hit.label;
  }
  return op;
}

/** One line under a step's title: what it does, in words. */
export function stepSummary(step, catalog) {
  switch (step.type) {
    case "action": {
      const p = step.params || {};
      const action = (catalog?.actions || []).find((a) => a.name === step.action);
      const head = action ? action.label : (step.action || "choose an action");
      const detail = p.subject || p.tag || p.title || (p.points !== undefined ? `${p.points} points` : "");
      return detail ? `${head}: ${detail}` : head;
    }
    case "wait": return `Wait ${durationWords(step.duration) || "…"}`;
    case "wait_and_check": return `After ${durationWords(step.duration) || "…"}: ${conditionWords(step.condition, catalog)}?`;
    case "react_to_event": return `${(step.event || {}).type || "an event"} within ${durationWords(step.timeout) || "…"}?`;
    case "condition_split": case "if_then": return `${conditionWords(step.condition, catalog)}?`;
    case "jump": return `Back to ${step.to || "…"}`;
    case "exit": return "End the journey";
    default: return (catalog?.steps || []).find((s) => s.type === step.type)?.label || step.type;
  }
}

export function startSummary(point, catalog) {
  const type = startType(point.type, catalog);
  const params = Object.values(point.params || {}).filter((v) => v !== "" && v !== null && v !== undefined);
  const head = type ? type.label : (point.type || "choose a starting point");
  const filter = point.filter ? ` · if ${conditionWords(point.filter, catalog)}` : "";
  return `${head}${params.length ? ": " + params.join(", ") : ""}${filter}`;
}

export function startType(name, catalog) {
  for (const group of catalog?.starting_points || []) {
    const hit = group.types.find((t) => t.name === name);
    if (hit) return hit;
  }
  return null;
}
