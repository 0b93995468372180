// The fleet at a glance: totals, filters, and one row (a card on a phone) per worker, kept live.
import { createWorkerDialog, importWorkerDialog, workerButtons } from "./actions.js";
import { can } from "./auth.js";
import { COLUMNS, idleCell, matches, sorted, STATUSES, view } from "./columns.js";
import { fill, h, swap } from "./dom.js";
import { exclusionsPanel } from "./exclusions.js";
import { on, state } from "./store.js";
import { renderSummary } from "./summary.js";
import { button } from "./ui.js";

export function fleetView(main) {
  const actions = can("worker.start") || can("worker.stop");
  const rows = new Map(); // id → {worker, tr}
  const tbody = h("tbody");
  const headRow = h("tr");
  const table = h(
    "table",
    { class: "fleet-table", id: "fleet" },
    h("caption", { class: "sr-only" }, "Workers"),
    h("thead", {}, headRow),
    tbody,
  );
  const count = h("p", { class: "muted count", role: "status" });
  const empty = h("p", { class: "empty", hidden: true });
  const summary = h("section", { class: "summary", "aria-label": "Fleet totals" });
  const regionSelect = h("select", { id: "filter-region", name: "region" });
  const statusSelect = h(
    "select",
    { id: "filter-status", name: "status" },
    h("option", { value: "" }, "All statuses"),
    STATUSES.map((s) => h("option", { value: s, selected: s === view.status }, s)),
  );
  const search = h("input", {
    id: "filter-q",
    type: "search",
    name: "q",
    value: view.q,
    placeholder: "Name or instance id",
    autocomplete: "off",
  });
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
  if (can("worker.create"))
    toolbar.append(
      button("New worker", () => createWorkerDialog(state.config.aws_regions ?? regions()), {
        kind: "primary",
        icon: "+",
      }),
    );
  if (can("worker.import")) toolbar.append(button("Import", () => importWorkerDialog()));
  const exclusions = exclusionsPanel();

  main.replaceChildren(
    h(
      "section",
      { class: "view fleet" },
      h("div", { class: "view-head" }, h("h1", { tabindex: "-1" }, "Fleet"), toolbar),
      summary,
      filters,
      count,
      h("div", { class: "table-wrap" }, table),
      empty,
      exclusions.node,
    ),
  );

  function regions() {
    return [...new Set([...state.workers.values()].map((w) => w.aws_region))].sort();
  }

  function renderHead() {
    const cols = [...COLUMNS, ...(actions ? [{ key: null, label: "Actions" }] : [])];
    fill(
      headRow,
      cols.map((c) => {
        if (!c.key) return h("th", { scope: "col" }, c.label);
        const active = view.sort === c.key;
        const sortButton = h(
          "button",
          { type: "button", class: "sort", dataset: { key: `sort-${c.key}` } },
          c.label,
          h("span", { class: "sort-mark", "aria-hidden": "true" }, active ? (view.dir > 0 ? "▲" : "▼") : ""),
        );
        sortButton.addEventListener("click", () => {
          view.dir = active ? -view.dir : 1;
          view.sort = c.key;
          renderHead();
          layout();
        });
        return h(
          "th",
          {
            scope: "col",
            "aria-sort": active ? (view.dir > 0 ? "ascending" : "descending") : undefined,
            class: c.className,
          },
          sortButton,
        );
      }),
    );
  }

  let shownRegions = null;
  function renderRegions() {
    const options = state.config.aws_regions ?? regions();
    if (view.region && !options.includes(view.region)) options.push(view.region);
    // Rebuilding an open <select> on every live update would close it under the user's pointer.
    if (shownRegions === options.join()) return;
    shownRegions = options.join();
    fill(
      regionSelect,
      h("option", { value: "" }, "All regions"),
      options.map((r) => h("option", { value: r, selected: r === view.region }, r)),
    );
  }

  function buildRow(worker) {
    const tr = h("tr", { dataset: { workerId: worker.id, status: worker.status } });
    for (const c of COLUMNS)
      tr.append(h("td", { dataset: { col: c.key, label: c.label }, class: c.className }, c.cell(worker)));
    if (actions)
      tr.append(
        h("td", { class: "row-actions", dataset: { col: "actions", label: "Actions" } }, workerButtons(worker)),
      );
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
    for (const [id, row] of rows)
      if (!state.workers.has(id)) {
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
    count.textContent = state.workersLoaded
      ? `${visible.length} of ${total} worker${total === 1 ? "" : "s"}`
      : "Loading workers…";
    empty.hidden = !state.workersLoaded || visible.length > 0;
    empty.textContent = total
      ? "No worker matches these filters."
      : "No workers yet. Create or import one, or wait for auto-import.";
    table.hidden = visible.length === 0;
  }

  function refreshIdle() {
    for (const { worker, tr } of rows.values()) {
      const cell = tr.querySelector('td[data-col="idle"]');
      cell?.replaceChildren(idleCell(worker));
    }
  }

  renderHead();
  renderRegions();
  renderSummary(summary);
  layout();
  const offs = [
    on("workers", () => {
      renderRegions();
      layout();
      if (!state.summary) renderSummary(summary);
    }),
    on("summary", () => renderSummary(summary)),
    on("tick", refreshIdle),
    on("jobs", refreshIdle),
    on("config", () => {
      renderRegions();
      refreshIdle();
    }),
  ];
  return {
    title: "Fleet",
    destroy: () => {
      offs.forEach((off) => off());
      exclusions.destroy();
    },
  };
}
