// The fleet totals above the table: counts, average CPU and estimated cost (GET /api/workers/summary).
import { fill, h } from "./dom.js";
import { percent, usd } from "./format.js";
import { state } from "./store.js";

/** Until the summary has loaded, the counts come from the workers the page already has. */
function fromWorkers() {
  const all = [...state.workers.values()];
  const count = (status) => all.filter((w) => w.status === status).length;
  return { total: all.length, running: count("running"), stopped: count("stopped"), failed: count("failed") };
}

function card(label, value, tone, title) {
  const key = label.toLowerCase().replaceAll(/[^a-z]+/g, "-");
  return h(
    "div",
    { class: `stat tone-${tone}`, title, dataset: { stat: key } },
    h("span", { class: "stat-value" }, value),
    h("span", { class: "stat-label" }, label),
  );
}

export function renderSummary(container) {
  const s = state.summary ?? fromWorkers();
  const costLines = Object.entries(s.cost_by_type ?? {}).map(([type, usdh]) => `${type}: ${usd(usdh)}/h`);
  if (s.unpriced_types?.length) costLines.push(`No price known for ${s.unpriced_types.join(", ")}`);
  fill(
    container,
    card("Workers", String(s.total ?? 0), "muted"),
    card("Running", String(s.running ?? 0), "ok"),
    card("Stopped", String(s.stopped ?? 0), "muted"),
    card("Failed", String(s.failed ?? 0), s.failed ? "bad" : "muted"),
    card("Average CPU", percent(s.avg_cpu_percent), "muted", "Average over running workers"),
    card(
      "Estimated cost",
      s.hourly_cost_usd == null ? "–" : `${usd(s.hourly_cost_usd)}/h`,
      "muted",
      costLines.join("\n") || "On-demand price of running instances",
    ),
  );
}
