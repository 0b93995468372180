// The labs of one worker: state, size, owner and the operations a role allows. Lab state changes arrive as
// lab.* events; the list is refetched then, never patched.
import { allowed, runCommand } from "./actions.js";
import { api, path, request } from "./api.js";
import { can } from "./auth.js";
import { fill, h } from "./dom.js";
import { ago, when } from "./format.js";
import { badge, busy, button, confirmDialog, formDialog, idText, reportError } from "./ui.js";

// From which states CML accepts each operation (labs/domain.py ACTIONS).
const LAB_ACTIONS = {
  start: ["DEFINED_ON_CORE", "STOPPED"],
  stop: ["STARTED", "BOOTED", "QUEUED"],
  wipe: ["STOPPED"],
  delete: ["DEFINED_ON_CORE"],
};

export function labsPanel(getWorker) {
  const body = h("div", { class: "labs-body" });
  const toolbar = h("div", { class: "toolbar" });
  const refresh = can("labs.refresh") ? button("Refresh labs", (b) => refreshLabs(b), { key: "labs-refresh" }) : null;
  const upload = can("lab.import") ? button("Import YAML", () => importLab(getWorker()), { key: "labs-import" }) : null;
  toolbar.append(...[refresh, upload].filter(Boolean));
  const node = h(
    "section",
    { class: "panel card wide", "aria-labelledby": "panel-labs" },
    h("div", { class: "panel-head" }, h("h2", { id: "panel-labs" }, "Labs"), toolbar),
    body,
  );
  let labs = null;
  let error = null;

  async function load() {
    if (!getWorker()) return; // removed from the fleet while its page is open: nothing left to show
    try {
      labs = await api.all(path`/api/workers/${getWorker().id}/labs`);
      error = null;
    } catch (e) {
      error = e;
    }
    render();
  }

  function refreshLabs(btn) {
    const w = getWorker();
    return busy(btn, () => runCommand("POST", path`/api/workers/${w.id}/labs/refresh`, `Refresh labs of ${w.name}`));
  }

  function render() {
    const w = getWorker();
    if (!w) return; // removed while the labs were loading
    const running = allowed("operate-labs", w);
    for (const b of [refresh, upload])
      if (b) {
        b.disabled = !running;
        b.title = running ? "" : `Labs can be changed only while the worker is running (it is ${w.status})`;
      }
    if (error) return fill(body, h("p", { class: "form-error" }, `Labs could not be loaded: ${error.message}`));
    if (!labs) return fill(body, h("p", { class: "muted" }, "Loading labs…"));
    if (!labs.length) return fill(body, h("p", { class: "muted" }, "No labs on this worker (as of the last refresh)."));
    const withActions = ["lab.start", "lab.stop", "lab.wipe", "lab.download", "lab.delete"].some(can);
    const head = ["Title", "State", "Nodes", "Links", "Owner", "Modified", ...(withActions ? ["Actions"] : [])];
    fill(
      body,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "labs-table" },
          h("caption", { class: "sr-only" }, `Labs on ${w.name}`),
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
            labs.map((lab) => row(w, lab, running, withActions)),
          ),
        ),
      ),
    );
  }

  function row(w, lab, running, withActions) {
    const cells = [
      [
        "Title",
        [
          h("span", { class: "lab-title", title: lab.description || undefined }, lab.title),
          h("small", { class: "muted block" }, idText(lab.cml_lab_id, { label: "lab id" })),
        ],
      ],
      ["State", badge(lab.state)],
      ["Nodes", String(lab.node_count)],
      ["Links", String(lab.link_count)],
      ["Owner", lab.owner || "–"],
      [
        "Modified",
        lab.cml_modified_at
          ? h("time", { datetime: lab.cml_modified_at, title: when(lab.cml_modified_at) }, ago(lab.cml_modified_at))
          : "–",
      ],
    ];
    if (withActions) cells.push(["Actions", labButtons(w, lab, running)]);
    return h(
      "tr",
      { dataset: { labId: lab.id, state: lab.state } },
      cells.map(([label, content]) =>
        h("td", { dataset: { label }, class: label === "Actions" ? "row-actions" : undefined }, content),
      ),
    );
  }

  function labButtons(w, lab, running) {
    const url = (action) => path`/api/workers/${w.id}/labs/${lab.id}/${action}`;
    const gate = (action) => {
      if (!running) return `Only while the worker is running`;
      if (LAB_ACTIONS[action].includes(lab.state)) return undefined;
      return action === "delete" ? "Stop and wipe the lab first" : `Not while the lab is ${lab.state}`;
    };
    const make = (action, label, onclick, kind = "") =>
      button(label, onclick, {
        kind,
        key: `lab-${action}-${lab.id}`,
        disabled: Boolean(gate(action)),
        title: gate(action),
      });
    const out = [];
    if (can("lab.start"))
      out.push(
        make("start", "Start", (b) => busy(b, () => runCommand("POST", url("start"), `Start lab ${lab.title}`))),
      );
    if (can("lab.stop"))
      out.push(make("stop", "Stop", (b) => busy(b, () => runCommand("POST", url("stop"), `Stop lab ${lab.title}`))));
    if (can("lab.wipe"))
      out.push(
        make(
          "wipe",
          "Wipe",
          async (b) => {
            const ok = await confirmDialog({
              title: `Wipe lab ${lab.title}?`,
              message: `Every node of "${lab.title}" on ${w.name} loses its disk and configuration state. The topology stays.`,
              confirmLabel: `Wipe ${lab.title}`,
            });
            if (ok) await busy(b, () => runCommand("POST", url("wipe"), `Wipe lab ${lab.title}`));
          },
          "ghost",
        ),
      );
    if (can("lab.download"))
      out.push(
        button("Download", (b) => busy(b, () => download(w, lab)), {
          key: `lab-download-${lab.id}`,
          disabled: !running,
          title: running ? "Topology as YAML" : "Only while the worker is running",
        }),
      );
    if (can("lab.delete"))
      out.push(
        make(
          "delete",
          "Delete",
          async (b) => {
            const ok = await confirmDialog({
              title: `Delete lab ${lab.title}?`,
              message: `"${lab.title}" (owner ${lab.owner || "unknown"}) is removed from ${w.name} for good. Download its YAML first to keep a copy.`,
              confirmLabel: `Delete ${lab.title}`,
            });
            if (ok)
              await busy(b, () =>
                runCommand("DELETE", path`/api/workers/${w.id}/labs/${lab.id}`, `Delete lab ${lab.title}`),
              );
          },
          "danger",
        ),
      );
    return h("div", { class: "button-row" }, out);
  }

  return { node, load, render };
}

async function download(worker, lab) {
  try {
    const response = await request("GET", path`/api/workers/${worker.id}/labs/${lab.id}/download`, { raw: true });
    const blob = await response.blob();
    const disposition = response.headers.get("content-disposition") ?? "";
    const name = disposition.match(/filename="([^"]+)"/)?.[1] ?? `${lab.title}.yaml`;
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: name, class: "sr-only" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (error) {
    reportError(error, `Download of ${lab.title} failed`);
  }
}

async function importLab(worker) {
  const values = await formDialog({
    title: `Import a lab into ${worker.name}`,
    intro: "Upload a CML topology file (YAML, as exported by CML or downloaded here).",
    submitLabel: "Import lab",
    fields: [
      {
        name: "file",
        label: "Topology file",
        type: "file",
        required: true,
        accept: ".yaml,.yml,application/x-yaml,text/yaml",
      },
      { name: "title", label: "Title (optional)", placeholder: "keep the title in the file" },
    ],
    validate: (v) => (v.file instanceof File && v.file.size > 5 * 1024 * 1024 ? "The file is larger than 5 MB." : null),
  });
  if (!values) return;
  const text = await values.file.text();
  const query = values.title ? `?title=${encodeURIComponent(values.title)}` : "";
  const label = `Import ${values.title || values.file.name} into ${worker.name}`;
  await runCommand("POST", path`/api/workers/${worker.id}/labs/import` + query, label, {
    body: text,
    contentType: "application/x-yaml",
  });
}
