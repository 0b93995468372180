// A worker's event timeline: the stored events (GET /events), then every live event about the worker. Both
// are the same CloudEvents envelopes, merged by sequence number, so a replay after a reconnect fills the gap
// and nothing shows twice.
import { api, path } from "./api.js";
import { fill, h } from "./dom.js";
import { short, when } from "./format.js";
import { badge } from "./ui.js";

const LOAD = 100;
const KEEP = 300;

export function timelinePanel(workerId) {
  const events = new Map(); // sequence → envelope
  const list = h("ol", { class: "timeline", "aria-label": "Events, newest first" });
  const status = h("p", { class: "muted" }, "Loading events…");
  const node = h(
    "section",
    { class: "panel card wide", "aria-labelledby": "panel-timeline" },
    h("h2", { id: "panel-timeline" }, "Event timeline"),
    status,
    list,
  );

  async function load() {
    try {
      for (const event of (await api.get(path`/api/workers/${workerId}/events?limit=${LOAD}`)).items)
        events.set(event.sequence, event);
      render();
    } catch (error) {
      status.textContent = `Events could not be loaded: ${error.message}`;
    }
  }

  function add(event) {
    if (event.subject !== workerId || event.sequence == null || events.has(event.sequence)) return;
    events.set(event.sequence, event);
    render();
  }

  function render() {
    const ordered = [...events.values()].sort((a, b) => b.sequence - a.sequence);
    for (const old of ordered.slice(KEEP)) events.delete(old.sequence);
    status.textContent = ordered.length ? "" : "No events yet.";
    status.hidden = ordered.length > 0;
    fill(list, ordered.slice(0, KEEP).map(item));
  }

  return { node, load, add };
}

function item(event) {
  const kind = event.type.split(".")[0];
  return h(
    "li",
    { class: `event event-${kind}`, dataset: { seq: event.sequence, type: event.type } },
    h("time", { datetime: event.time, title: when(event.time) }, short(event.time)),
    h("span", { class: "event-type" }, event.type),
    h("span", { class: "event-text" }, describe(event)),
  );
}

/** One readable line per event type (GET /api/events/schemas says what each carries); others fall back to their
 * changed fields, or to their data. */
export function describe(event) {
  const d = event.data ?? {};
  switch (event.type) {
    case "worker.status.updated":
      return [badge(d.previous), " → ", badge(d.status), d.reason ? ` (${d.reason})` : ""];
    case "worker.created":
      return d.reason ?? "";
    case "worker.deleted":
      return d.instance_terminated ? "removed; instance terminated" : "removed from the fleet";
    case "worker.idle.paused":
      return `stopped for idleness (idle since ${d.idle_since ? when(d.idle_since) : "?"})`;
    case "command.queued":
    case "command.started":
      return `${d.type}${d.attempt > 1 ? ` (attempt ${d.attempt})` : ""}`;
    case "command.progress":
      return `${d.type}: ${d.message}`;
    case "command.completed":
      return `${d.type} succeeded`;
    case "command.failed":
      return `${d.type} failed: ${d.error}`;
  }
  if (event.type === "lab.state.changed") return [`${d.title} `, badge(d.previous), " → ", badge(d.state)];
  if (event.type.startsWith("lab."))
    return [d.title ?? d.cml_lab_id ?? "", d.state ? [" ", badge(d.state)] : ""];
  if (d.changes)
    return Object.entries(d.changes)
      .map(([k, v]) => `${k}: ${format(v)}`)
      .join(", ");
  return Object.entries(d)
    .filter(([k]) => k !== "name")
    .map(([k, v]) => `${k}: ${format(v)}`)
    .join(", ")
    .slice(0, 200);
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

/** Event data is plain JSON: a time is an ISO 8601 string, a nested object (tags, details) is shown as JSON. */
function format(value) {
  if (value == null || value === "") return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(1);
  if (typeof value === "object") return JSON.stringify(value).slice(0, 80);
  if (typeof value === "string" && ISO_TIME.test(value)) return when(value);
  return String(value);
}
