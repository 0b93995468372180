// Jobs & health: each scheduled job's last and next run, the worker processes and API replicas, and the
// runtime overrides an admin can change.
import { runCommand } from "./actions.js";
import { api, path } from "./api.js";
import { can } from "./auth.js";
import { fill, h } from "./dom.js";
import { ago, duration, when } from "./format.js";
import { on, state } from "./store.js";
import { loadHealth, loadJobs } from "./sync.js";
import { badge, busy, button, definitionList, formDialog, reportError } from "./ui.js";

const stamp = (iso) => (iso ? h("time", { datetime: iso, title: when(iso) }, ago(iso)) : "–");

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
              h("span", { class: "mono" }, p.id),
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
              apis.map((r) => [h("span", { class: "mono" }, r.id), stamp(r.last_heartbeat)]),
              "replicas",
            )
          : h("p", { class: "muted" }, "No replica reported."),
    );
  }

  function renderJobs() {
    if (!state.jobs) return fill(jobs, h("p", { class: "muted" }, "Loading…"));
    const admin = can("job.run");
    const head = ["Job", "Enabled", "Interval", "Last run", "Duration", "Next run", ...(admin ? ["Actions"] : [])];
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
    on("jobs", renderJobs),
    ticker,
    on("event", (e) => e.type === "system.settings.updated" && loadSettings()),
  ];
  return { title: "Jobs & health", destroy: () => offs.forEach((off) => off()) };
}

function table(head, rows, name, keyOf, items) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: `data-table ${name}-table` },
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
