// Jobs & health: each scheduled job's last and next run (and, unfolded, its last runs), the worker processes and
// API replicas, and the runtime overrides an admin can change.
import { runCommand } from "./actions.js";
import { api, path } from "./api.js";
import { can } from "./auth.js";
import { fill, h } from "./dom.js";
import { ago, duration, short, when } from "./format.js";
import { on, state } from "./store.js";
import { loadHealth, loadJobs } from "./sync.js";
import { badge, busy, button, definitionList, formDialog, idText, reportError } from "./ui.js";

const stamp = (iso) => (iso ? h("time", { datetime: iso, title: when(iso) }, ago(iso)) : "–");
const RUNS_SHOWN = 10;

export function jobsView(main) {
  const health = h("div");
  const processes = h("div");
  const replicas = h("div");
  const jobs = h("div");
  const overrides = h("div");
  const section = (id, title, ...body) =>
    h("section", { class: "panel card wide", "aria-labelledby": id }, h("h2", { id }, title), ...body);
  main.replaceChildren(
    h(
      "section",
      { class: "view jobs" },
      h("div", { class: "view-head" }, h("h1", { tabindex: "-1" }, "Jobs & health")),
      h(
        "div",
        { class: "panels" },
        section("health-title", "Health", health),
        section("replicas-title", "API replicas", replicas),
      ),
      section("processes-title", "Worker processes", processes),
      section("jobs-title", "Scheduled jobs", jobs),
      section("overrides-title", "Runtime overrides", overrides),
    ),
  );
  let settings = null;
  // Job name → {runs, error, seen, loading} for the jobs whose last runs are unfolded (kept across re-renders);
  // `seen` is the job's last run as it was when the runs were read.
  const history = new Map();
  const lastRunOf = (name) => {
    const run = state.jobs?.find((j) => j.name === name)?.last_run;
    return run ? `${run.id}:${run.finished_at ?? ""}` : "";
  };

  function renderHealth() {
    const hl = state.health;
    if (!hl) return fill(health, h("p", { class: "muted" }, "Loading…"));
    const c = hl.components ?? {};
    const w = c.worker ?? {};
    fill(
      health,
      definitionList([
        ["Status", badge(hl.status)],
        hl.message ? ["Note", hl.message] : null,
        ["Database", badge(c.database)],
        ["Redis", badge(c.redis)],
        ["Worker alive", badge(w.alive ? "ok" : "down", { label: w.alive ? "yes" : "no" })],
        ["Worker replicas", String(w.replicas ?? 0)],
        ["Last heartbeat", stamp(w.last_heartbeat)],
        ["Live clients here", String(c.sse_clients ?? "–")],
        ["This API's role", hl.role ?? "–"],
      ]),
    );
    const procs = w.processes ?? [];
    fill(
      processes,
      procs.length
        ? table(
            ["Process", "Role", "Last heartbeat", "Running jobs", "Commands"],
            procs.map((p) => [
              idText(p.id, { label: "process id" }),
              p.role,
              stamp(p.last_heartbeat),
              (p.jobs?.running ?? []).join(", ") || "–",
              String(p.jobs?.commands ?? 0),
            ]),
            "processes",
          )
        : h("p", { class: "empty" }, "No worker process is alive: jobs do not run and commands wait in the queue."),
    );
    const apis = c.api_replicas;
    fill(
      replicas,
      !apis
        ? h("p", { class: "muted" }, "This API does not report its replicas.")
        : apis.length
          ? table(
              ["Replica", "Last heartbeat"],
              apis.map((r) => [idText(r.id, { label: "replica id" }), stamp(r.last_heartbeat)]),
              "replicas",
            )
          : h("p", { class: "muted" }, "No replica reported."),
    );
  }

  function renderJobs() {
    if (!state.jobs) return fill(jobs, h("p", { class: "muted" }, "Loading…"));
    const admin = can("job.run");
    const head = [
      "Job",
      "Enabled",
      "Interval",
      "Last run",
      "Duration",
      "Next run",
      "History",
      ...(admin ? ["Actions"] : []),
    ];
    fill(
      jobs,
      table(
        head,
        state.jobs.map((job) => {
          const run = job.last_run;
          const outcome = run ? (run.finished_at ? run.outcome : "running") : null;
          const row = [
            [h("strong", {}, job.name), h("small", { class: "muted block" }, job.description)],
            can("settings.edit")
              ? enabledToggle(job)
              : badge(job.enabled ? "ok" : "disabled", { label: job.enabled ? "on" : "off" }),
            duration(job.interval_seconds),
            run
              ? [
                  badge(outcome),
                  " ",
                  stamp(run.started_at),
                  run.error ? h("small", { class: "form-error block" }, run.error) : null,
                ]
              : "never",
            run ? duration(run.duration_seconds) : "–",
            job.enabled ? stamp(job.next_run) : "–",
            historyToggle(job),
          ];
          if (admin)
            row.push(
              h(
                "div",
                { class: "button-row" },
                button(
                  "Run now",
                  (b) => busy(b, () => runCommand("POST", path`/api/system/jobs/${job.name}/run`, `Run ${job.name}`)),
                  { key: `run-${job.name}` },
                ),
                can("settings.edit")
                  ? button("Interval…", () => editInterval(job), { key: `interval-${job.name}`, kind: "ghost" })
                  : null,
              ),
            );
          return row;
        }),
        "jobs",
        (job) => job.name,
        state.jobs,
      ),
    );
    for (const [name, shown] of history) {
      const row = jobs.querySelector(`tr[data-name="${CSS.escape(name)}"]`);
      const runs = h("td", { colspan: head.length, dataset: { label: `Last runs of ${name}` } }, runsTable(name, shown));
      row?.after(h("tr", { class: "runs-row", id: `runs-${name}` }, runs));
    }
  }

  /** A disclosure button: the runs unfold in a row under the job's own. */
  function historyToggle(job) {
    const open = history.has(job.name);
    const unfold = () => {
      if (history.has(job.name)) history.delete(job.name);
      else {
        history.set(job.name, { runs: null, error: "", seen: null, loading: false });
        loadRuns(job.name);
      }
      renderJobs();
    };
    const toggle = button("Last runs", unfold, { key: `runs-${job.name}`, kind: "ghost", icon: open ? "▾" : "▸" });
    toggle.setAttribute("aria-expanded", String(open));
    toggle.setAttribute("aria-controls", `runs-${job.name}`);
    toggle.setAttribute("aria-label", `Last runs of ${job.name}`);
    return toggle;
  }

  async function loadRuns(name) {
    const seen = lastRunOf(name);
    history.set(name, { ...history.get(name), loading: true });
    let shown;
    try {
      const page = await api.get(path`/api/system/jobs/${name}/runs?limit=${RUNS_SHOWN}`);
      shown = { runs: page.items, error: "" };
    } catch (error) {
      shown = { runs: null, error: error.message };
    }
    if (!history.has(name)) return; // folded while loading
    history.set(name, { ...shown, seen, loading: false });
    renderJobs();
    if (lastRunOf(name) !== seen) loadRuns(name); // the job moved on while we read
  }

  /** Job events reload the jobs; an unfolded history is read again when its job's last run started or ended. */
  function refreshRuns() {
    for (const [name, shown] of history) if (!shown.loading && lastRunOf(name) !== shown.seen) loadRuns(name);
  }

  function runsTable(name, { runs, error }) {
    if (error) return h("p", { class: "form-error" }, `The runs of ${name} could not be loaded: ${error}`);
    if (!runs) return h("p", { class: "muted", role: "status" }, "Loading…");
    if (!runs.length) return h("p", { class: "muted" }, `${name} has not run yet.`);
    return table(
      ["Started", "Outcome", "Duration", "Trigger", "Summary"],
      runs.map((run) => [
        h("time", { datetime: run.started_at, title: when(run.started_at) }, short(run.started_at)),
        badge(run.finished_at ? run.outcome : "running"),
        duration(run.duration_seconds),
        run.trigger,
        [summaryText(run.summary), run.error ? h("small", { class: "form-error block" }, run.error) : null],
      ]),
      "runs",
      null,
      null,
      `Last runs of ${name}`,
    );
  }

  function enabledToggle(job) {
    const toggle = button(
      job.enabled ? "On" : "Off",
      (b) => busy(b, () => saveSettings({ [`jobs.${job.name}.enabled`]: !job.enabled })),
      {
        key: `enable-${job.name}`,
        kind: job.enabled ? "on" : "off",
        title: `${job.enabled ? "Disable" : "Enable"} ${job.name}`,
      },
    );
    toggle.setAttribute("role", "switch");
    toggle.setAttribute("aria-checked", String(job.enabled));
    toggle.setAttribute("aria-label", `${job.name} enabled`);
    return toggle;
  }

  async function editInterval(job) {
    const values = await formDialog({
      title: `Interval of ${job.name}`,
      submitLabel: "Save",
      fields: [
        {
          name: "seconds",
          label: "Seconds between runs",
          type: "number",
          min: "1",
          step: "1",
          required: true,
          value: String(job.interval_seconds),
        },
      ],
    });
    if (values) await saveSettings({ [`jobs.${job.name}.interval_seconds`]: Number(values.seconds) });
  }

  async function saveSettings(values) {
    try {
      settings = await api.put("/api/system/settings", { values });
      renderOverrides();
      await loadJobs();
    } catch (error) {
      reportError(error, "Settings not saved");
    }
  }

  async function loadSettings() {
    try {
      settings = await api.get("/api/system/settings");
    } catch (error) {
      settings = null;
      fill(overrides, h("p", { class: "form-error" }, `Settings could not be loaded: ${error.message}`));
      return;
    }
    renderOverrides();
  }

  function renderOverrides() {
    const entries = Object.entries(settings ?? {});
    fill(
      overrides,
      entries.length
        ? table(
            ["Setting", "Value", ...(can("settings.edit") ? [""] : [])],
            entries.map(([key, value]) => [
              h("span", { class: "mono" }, key),
              h("span", { class: "mono" }, JSON.stringify(value)),
              ...(can("settings.edit")
                ? [
                    button("Reset", (b) => busy(b, () => saveSettings({ [key]: null })), {
                      key: `reset-${key}`,
                      kind: "ghost",
                      title: `Back to the environment's value of ${key}`,
                    }),
                  ]
                : []),
            ]),
            "overrides",
          )
        : h("p", { class: "muted" }, "None: every setting comes from the environment."),
    );
  }

  renderHealth();
  renderJobs();
  loadSettings();
  loadHealth();
  loadJobs().catch((e) => reportError(e, "Jobs could not be loaded"));
  const ticker = on("tick", () => {
    renderJobs();
    renderHealth();
  });
  const offs = [
    on("health", renderHealth),
    on("jobs", () => {
      renderJobs();
      refreshRuns();
    }),
    ticker,
    on("event", (e) => e.type === "system.settings.updated" && loadSettings()),
  ];
  return { title: "Jobs & health", destroy: () => offs.forEach((off) => off()) };
}

/** {"workers": 5, "failed_regions": {}} → "workers: 5 · failed regions: none" */
function summaryText(summary) {
  const entries = Object.entries(summary ?? {});
  if (!entries.length) return "–";
  const text = (value) =>
    value && typeof value === "object" ? (Object.keys(value).length ? JSON.stringify(value) : "none") : value;
  return entries.map(([key, value]) => `${key.replaceAll("_", " ")}: ${text(value)}`).join(" · ");
}

function table(head, rows, name, keyOf, items, caption) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: `data-table ${name}-table` },
      caption ? h("caption", { class: "sr-only" }, caption) : null,
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          head.map((t) => h("th", { scope: "col" }, t)),
        ),
      ),
      h(
        "tbody",
        {},
        rows.map((cells, i) =>
          h(
            "tr",
            { dataset: keyOf ? { name: keyOf(items[i]) } : undefined },
            cells.map((cell, j) => h("td", { dataset: { label: head[j] } }, cell)),
          ),
        ),
      ),
    ),
  );
}
