// One worker in full: header with actions, fact panels, metric charts, labs and the event timeline.
import { workerButtons } from "./actions.js";
import { api, ApiError, path } from "./api.js";
import { lineChart } from "./charts.js";
import { fill, h } from "./dom.js";
import { labsPanel } from "./labs.js";
import { awsPanel, cmlPanel, idlePanel, licensePanel, tagsPanel } from "./panels.js";
import { debounced, on, state } from "./store.js";
import { loadWorker } from "./sync.js";
import { timelinePanel } from "./timeline.js";
import { badge } from "./ui.js";

const RANGES = [
  [1, "1 h"],
  [6, "6 h"],
  [24, "24 h"],
  [168, "7 d"],
];
let hours = 24; // remembered across workers: an operator comparing workers wants the same window

export function workerView(main, id) {
  const getWorker = () => state.workers.get(id);
  const title = h("h1", { tabindex: "-1" }, "Worker");
  const badges = h("div", { class: "badges" });
  const actions = h("div", { class: "toolbar actions", "aria-label": "Worker actions", role: "group" });
  const errorNote = h("p", { class: "worker-error", role: "alert", hidden: true });
  const container = h(
    "section",
    { class: "view worker" },
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/" }, "← Fleet")),
    h("div", { class: "view-head" }, h("div", {}, title, badges), actions),
    errorNote,
    h("p", { class: "muted", role: "status" }, "Loading…"),
  );
  main.replaceChildren(container);

  let built = null;
  const offs = [];

  function build(worker) {
    const idle = idlePanel(getWorker);
    const panels = [awsPanel(), cmlPanel(), licensePanel(getWorker), idle, tagsPanel(getWorker)];
    const charts = chartsPanel(id);
    const labs = labsPanel(getWorker);
    const timeline = timelinePanel(id);
    container.lastChild.remove(); // "Loading…"
    container.append(
      h(
        "div",
        { class: "panels" },
        panels.map((p) => p.node),
      ),
      charts.node,
      labs.node,
      timeline.node,
    );
    built = { panels, idle, charts, labs, timeline, shown: null };
    charts.load();
    labs.load();
    timeline.load();
    const reloadLabs = debounced(() => labs.load(), 250);
    built.reloadCharts = debounced(() => charts.load(), 1000);
    offs.push(
      on("event", (event) => {
        if (event.subject !== id) return;
        timeline.add(event);
        if (event.type.startsWith("lab.")) reloadLabs();
      }),
      on("reset", () => {
        reloadLabs();
        built.reloadCharts();
        timeline.load();
      }),
    );
    render(worker);
  }

  function render(worker) {
    // A new sample is stored with every metrics run, not only when an event says the values moved.
    if (built.shown && built.shown.metrics_at !== worker.metrics_at) built.reloadCharts();
    built.shown = worker;
    document.title = `${worker.name} · CML Cloud Manager`;
    title.textContent = worker.name;
    fill(
      badges,
      badge(worker.status, { label: `EC2 ${worker.status}` }),
      badge(worker.service_status, {
        label: `CML ${worker.service_status}`,
        title: worker.service_reason || undefined,
      }),
      badge(worker.license_status, { label: `license ${worker.license_status}` }),
    );
    fill(actions, workerButtons(worker, { detail: true }));
    errorNote.hidden = !worker.error;
    errorNote.textContent = worker.error ? `Last error: ${worker.error}` : "";
    for (const p of built.panels) p.update(worker);
    built.labs.render();
  }

  function gone() {
    offs.forEach((off) => off());
    fill(
      container,
      h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "← Fleet")),
      h("h1", { tabindex: "-1" }, "Worker not found"),
      h("p", {}, "This worker is not (or no longer) managed here. It may have been removed or terminated."),
    );
  }

  const update = (force = false) => {
    const worker = getWorker();
    if (!worker) return state.workersLoaded ? gone() : undefined;
    if (!built) build(worker);
    else if (force || worker !== built.shown) render(worker);
  };
  const refreshIdle = () => built && getWorker() && built.idle.update(getWorker());
  offs.push(
    on("workers", () => update()),
    on("tick", refreshIdle),
    on("jobs", () => update(true)),
    on("config", () => update(true)),
  );
  if (getWorker()) update();
  else
    loadWorker(id)
      .then(() => !getWorker() && gone())
      .catch((e) => (e instanceof ApiError ? gone() : null));

  return { title: "Worker", destroy: () => offs.forEach((off) => off()) };
}

function chartsPanel(id) {
  const grid = h("div", { class: "charts" });
  const status = h("p", { class: "muted", role: "status" });
  const picker = h("div", { class: "segmented", role: "group", "aria-label": "Time range" });
  const node = h(
    "section",
    { class: "panel card wide", "aria-labelledby": "panel-charts" },
    h("div", { class: "panel-head" }, h("h2", { id: "panel-charts" }, "Metrics"), picker),
    status,
    grid,
  );

  function renderPicker() {
    fill(
      picker,
      RANGES.map(([value, label]) => {
        const b = h(
          "button",
          { type: "button", class: "btn", "aria-pressed": String(value === hours), dataset: { key: `range-${value}` } },
          label,
        );
        b.addEventListener("click", () => {
          hours = value;
          renderPicker();
          load();
        });
        return b;
      }),
    );
  }

  async function load() {
    let samples;
    try {
      samples = await api.all(path`/api/workers/${id}/metrics?hours=${hours}`);
    } catch (error) {
      status.textContent = `Metrics could not be loaded: ${error.message}`;
      return;
    }
    // The axis starts at the first sample (at least a minute back), not at an empty stretch of the range.
    const to = Date.now();
    const first = samples.length ? new Date(samples[0].ts).getTime() : to;
    const from = Math.max(to - hours * 3600_000, Math.min(first, to - 60_000));
    const points = (key) => samples.map((s) => ({ t: new Date(s.ts).getTime(), v: s[key] }));
    status.textContent = samples.length ? "" : "No samples in this period yet.";
    status.hidden = samples.length > 0;
    fill(
      grid,
      lineChart({ title: "CPU", unit: "%", series: "cpu", points: points("cpu_percent"), from, to, max: 100 }),
      lineChart({ title: "Memory", unit: "%", series: "memory", points: points("memory_percent"), from, to, max: 100 }),
      lineChart({ title: "Disk", unit: "%", series: "disk", points: points("disk_percent"), from, to, max: 100 }),
      lineChart({ title: "Labs", unit: "", series: "labs", points: points("labs_count"), from, to, step: true }),
    );
  }

  renderPicker();
  return { node, load };
}
