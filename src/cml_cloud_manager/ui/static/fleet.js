// The fleet at a glance: totals, filters, and one row (a card on a phone) per worker, kept live.
import { createWorkerDialog, importWorkerDialog, workerButtons } from "./actions.js";
import { can } from "./auth.js";
import { fill, h, swap } from "./dom.js";
import { percent, usd } from "./format.js";
import { idleInfo, idleJobEnabled } from "./idle.js";
import { workerHref } from "./router.js";
import { on, state } from "./store.js";
import { badge, button, meter } from "./ui.js";

const STATUSES = ["pending", "starting", "running", "stopping", "stopped", "shutting-down", "terminated", "failed", "unknown"];

// Kept across navigation so coming back from a worker shows the same slice of the fleet.
const view = { q: "", region: "", status: "", sort: "name", dir: 1 };

function idleOf(worker) {
  return idleInfo(worker, { config: state.config, jobEnabled: idleJobEnabled(state.jobs) });
}

const COLUMNS = [
  { key: "name", label: "Name", value: (w) => w.name.toLowerCase(), cell: (w) => h("a", { href: workerHref(w.id), class: "worker-link", dataset: { key: `open-${w.id}` } }, w.name) },
  { key: "region", label: "Region", value: (w) => w.aws_region, cell: (w) => w.aws_region },
  { key: "instance", label: "Instance", value: (w) => w.aws_instance_id ?? "", cell: (w) => [h("span", { class: "mono" }, w.aws_instance_id ?? "–"), h("small", { class: "muted block" }, w.instance_type)] },
  { key: "status", label: "EC2", value: (w) => w.status, cell: (w) => badge(w.status, { title: w.error || undefined }) },
  { key: "service", label: "CML", value: (w) => w.service_status, cell: (w) => badge(w.service_status, { title: w.service_reason || undefined }) },
  { key: "cpu", label: "CPU", value: (w) => w.cpu_percent ?? -1, cell: (w) => meter(w.cpu_percent, "CPU") },
  { key: "memory", label: "Memory", value: (w) => w.memory_percent ?? -1, cell: (w) => meter(w.memory_percent, "Memory") },
  { key: "disk", label: "Disk", value: (w) => w.disk_percent ?? -1, cell: (w) => meter(w.disk_percent, "Disk") },
  { key: "labs", label: "Labs", value: (w) => w.labs_count, cell: (w) => String(w.labs_count), className: "num" },
  { key: "license", label: "License", value: (w) => w.license_status, cell: (w) => badge(w.license_status) },
  { key: "idle", label: "Idle", value: (w) => idleOf(w).stopAt ?? Number.MAX_SAFE_INTEGER, cell: (w) => idleCell(w) },
];

function idleCell(worker) {
  const info = idleOf(worker);
  const title = state.config.assumed ? "Assumes the default idle timeout (60 min): the server does not report it." : undefined;
  return h("span", { class: `idle idle-${info.state}`, title }, info.text);
}

function matches(worker) {
  if (view.region && worker.aws_region !== view.region) return false;
  if (view.status && worker.status !== view.status) return false;
  if (!view.q) return true;
  const q = view.q.toLowerCase();
  return [worker.name, worker.id, worker.aws_instance_id ?? ""].some((text) => text.toLowerCase().includes(q));
}

function sorted(workers) {
  const column = COLUMNS.find((c) => c.key === view.sort) ?? COLUMNS[0];
  return workers.sort((a, b) => {
    const x = column.value(a);
    const y = column.value(b);
    const order = x < y ? -1 : x > y ? 1 : 0;
    return order * view.dir || a.name.localeCompare(b.name);
  });
}

export function fleetView(main) {
  const actions = can("worker.start") || can("worker.stop");
  const rows = new Map(); // id → {worker, tr}
  const tbody = h("tbody");
  const headRow = h("tr");
  const table = h("table", { class: "fleet-table", id: "fleet" }, h("caption", { class: "sr-only" }, "Workers"), h("thead", {}, headRow), tbody);
  const count = h("p", { class: "muted count", role: "status" });
  const empty = h("p", { class: "empty", hidden: true });
  const summary = h("section", { class: "summary", "aria-label": "Fleet totals" });
  const regionSelect = h("select", { id: "filter-region", name: "region" });
  const statusSelect = h("select", { id: "filter-status", name: "status" }, h("option", { value: "" }, "All statuses"), STATUSES.map((s) => h("option", { value: s, selected: s === view.status }, s)));
  const search = h("input", { id: "filter-q", type: "search", name: "q", value: view.q, placeholder: "Name or instance id", autocomplete: "off" });
  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter workers" },
    h("div", { class: "field" }, h("label", { for: "filter-q" }, "Search"), search),
    h("div", { class: "field" }, h("label", { for: "filter-region" }, "Region"), regionSelect),
    h("div", { class: "field" }, h("label", { for: "filter-status" }, "Status"), statusSelect),
  );
  filters.addEventListener("submit", (e) => e.preventDefault());
  filters.addEventListener("input", () => {
    view.q = search.value.trim();
    view.region = regionSelect.value;
    view.status = statusSelect.value;
    layout();
  });

  const toolbar = h("div", { class: "toolbar" });
  if (can("worker.create")) toolbar.append(button("New worker", () => createWorkerDialog(regions()), { kind: "primary", icon: "+" }));
  if (can("worker.import")) toolbar.append(button("Import", () => importWorkerDialog()));

  main.replaceChildren(
    h("section", { class: "view fleet" },
      h("div", { class: "view-head" }, h("h1", { tabindex: "-1" }, "Fleet"), toolbar),
      summary,
      filters,
      count,
      h("div", { class: "table-wrap" }, table),
      empty,
    ),
  );

  function regions() {
    return [...new Set([...state.workers.values()].map((w) => w.aws_region))].sort();
  }

  function renderHead() {
    const cols = [...COLUMNS, ...(actions ? [{ key: null, label: "Actions" }] : [])];
    fill(headRow, cols.map((c) => {
      if (!c.key) return h("th", { scope: "col" }, c.label);
      const active = view.sort === c.key;
      const sortButton = h("button", { type: "button", class: "sort", dataset: { key: `sort-${c.key}` } }, c.label, h("span", { class: "sort-mark", "aria-hidden": "true" }, active ? (view.dir > 0 ? "▲" : "▼") : ""));
      sortButton.addEventListener("click", () => {
        view.dir = active ? -view.dir : 1;
        view.sort = c.key;
        renderHead();
        layout();
      });
      return h("th", { scope: "col", "aria-sort": active ? (view.dir > 0 ? "ascending" : "descending") : undefined, class: c.className }, sortButton);
    }));
  }

  function renderRegions() {
    const options = regions();
    if (view.region && !options.includes(view.region)) options.push(view.region);
    fill(regionSelect, h("option", { value: "" }, "All regions"), options.map((r) => h("option", { value: r, selected: r === view.region }, r)));
  }

  function buildRow(worker) {
    const tr = h("tr", { dataset: { workerId: worker.id, status: worker.status } });
    for (const c of COLUMNS) tr.append(h("td", { dataset: { col: c.key, label: c.label }, class: c.className }, c.cell(worker)));
    if (actions) tr.append(h("td", { class: "row-actions", dataset: { col: "actions", label: "Actions" } }, workerButtons(worker)));
    return tr;
  }

  function upsert(worker) {
    const old = rows.get(worker.id);
    if (old?.worker === worker) return;
    const tr = buildRow(worker);
    if (old) swap(old.tr, tr);
    rows.set(worker.id, { worker, tr });
  }

  /** Order and filter the existing rows; nodes only move when their place changes (keeps focus and scroll). */
  function layout() {
    for (const [id, row] of rows) if (!state.workers.has(id)) {
      row.tr.remove();
      rows.delete(id);
    }
    for (const worker of state.workers.values()) upsert(worker);
    const visible = sorted([...state.workers.values()].filter(matches));
    const wanted = new Set(visible.map((w) => w.id));
    for (const [id, row] of rows) if (!wanted.has(id)) row.tr.remove();
    let previous = null;
    for (const worker of visible) {
      const tr = rows.get(worker.id).tr;
      const expected = previous ? previous.nextSibling : tbody.firstChild;
      if (tr !== expected) tbody.insertBefore(tr, expected);
      previous = tr;
    }
    const total = state.workers.size;
    count.textContent = state.workersLoaded ? `${visible.length} of ${total} worker${total === 1 ? "" : "s"}` : "Loading workers…";
    empty.hidden = !state.workersLoaded || visible.length > 0;
    empty.textContent = total ? "No worker matches these filters." : "No workers yet. Create or import one, or wait for auto-import.";
    table.hidden = visible.length === 0;
  }

  function renderSummary() {
    const s = state.summary ?? fallbackSummary();
    const cost = s.cost_by_type ? Object.entries(s.cost_by_type).map(([type, usdh]) => `${type}: ${usd(usdh)}/h`).join("\n") : "";
    const card = (label, value, tone, title) => h("div", { class: `stat tone-${tone}`, title, dataset: { stat: label.toLowerCase().replaceAll(/[^a-z]+/g, "-") } }, h("span", { class: "stat-value" }, value), h("span", { class: "stat-label" }, label));
    fill(summary,
      card("Workers", String(s.total ?? 0), "muted"),
      card("Running", String(s.running ?? 0), "ok"),
      card("Stopped", String(s.stopped ?? 0), "muted"),
      card("Failed", String(s.failed ?? 0), s.failed ? "bad" : "muted"),
      card("Average CPU", percent(s.avg_cpu_percent), "muted", "Average over running workers"),
      card("Estimated cost", s.hourly_cost_usd == null ? "–" : `${usd(s.hourly_cost_usd)}/h`, "muted", cost || "On-demand price of running instances"),
    );
  }

  function fallbackSummary() {
    const all = [...state.workers.values()];
    const count = (status) => all.filter((w) => w.status === status).length;
    return { total: all.length, running: count("running"), stopped: count("stopped"), failed: count("failed") };
  }

  function refreshIdle() {
    for (const { worker, tr } of rows.values()) {
      const cell = tr.querySelector('td[data-col="idle"]');
      cell?.replaceChildren(idleCell(worker));
    }
  }

  renderHead();
  renderRegions();
  renderSummary();
  layout();
  const offs = [
    on("workers", () => {
      renderRegions();
      layout();
      if (!state.summary) renderSummary();
    }),
    on("summary", renderSummary),
    on("tick", refreshIdle),
    on("jobs", refreshIdle),
    on("config", refreshIdle),
  ];
  return { title: "Fleet", destroy: () => offs.forEach((off) => off()) };
}
