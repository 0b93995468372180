// The fleet table's columns (what a cell shows, what a column sorts by) and the filter/sort rules.
import { h } from "./dom.js";
import { idleInfo, idleJobEnabled } from "./idle.js";
import { workerHref } from "./router.js";
import { state } from "./store.js";
import { badge, idText, meter } from "./ui.js";

export const STATUSES = [
  "pending",
  "starting",
  "running",
  "stopping",
  "stopped",
  "shutting-down",
  "terminated",
  "failed",
  "unknown",
];

// Kept across navigation so coming back from a worker shows the same slice of the fleet.
export const view = { q: "", region: "", status: "", sort: "name", dir: 1 };

function idleOf(worker) {
  return idleInfo(worker, { config: state.config, jobEnabled: idleJobEnabled(state.jobs) });
}

export const COLUMNS = [
  {
    key: "name",
    label: "Name",
    value: (w) => w.name.toLowerCase(),
    cell: (w) => h("a", { href: workerHref(w.id), class: "worker-link", dataset: { key: `open-${w.id}` } }, w.name),
  },
  { key: "region", label: "Region", value: (w) => w.aws_region, cell: (w) => w.aws_region },
  {
    key: "instance",
    label: "Instance",
    value: (w) => w.aws_instance_id ?? "",
    cell: (w) => [
      idText(w.aws_instance_id, { label: "instance id" }),
      h("small", { class: "muted block" }, w.instance_type),
    ],
  },
  {
    key: "status",
    label: "EC2",
    value: (w) => w.status,
    cell: (w) => badge(w.status, { title: w.error || undefined }),
  },
  {
    key: "service",
    label: "CML",
    value: (w) => w.service_status,
    cell: (w) => badge(w.service_status, { title: w.service_reason || undefined }),
  },
  { key: "cpu", label: "CPU", value: (w) => w.cpu_percent ?? -1, cell: (w) => meter(w.cpu_percent, "CPU") },
  {
    key: "memory",
    label: "Memory",
    value: (w) => w.memory_percent ?? -1,
    cell: (w) => meter(w.memory_percent, "Memory"),
  },
  { key: "disk", label: "Disk", value: (w) => w.disk_percent ?? -1, cell: (w) => meter(w.disk_percent, "Disk") },
  { key: "labs", label: "Labs", value: (w) => w.labs_count, cell: (w) => String(w.labs_count), className: "num" },
  { key: "license", label: "License", value: (w) => w.license_status, cell: (w) => badge(w.license_status) },
  { key: "idle", label: "Idle", value: (w) => idleOf(w).stopAt ?? Number.MAX_SAFE_INTEGER, cell: (w) => idleCell(w) },
];

export function idleCell(worker) {
  const info = idleOf(worker);
  const title = state.config.assumed
    ? "Assumes the default idle timeout (60 min): the server does not report it."
    : undefined;
  return h("span", { class: `idle idle-${info.state}`, title }, info.text);
}

export function matches(worker) {
  if (view.region && worker.aws_region !== view.region) return false;
  if (view.status && worker.status !== view.status) return false;
  if (!view.q) return true;
  const q = view.q.toLowerCase();
  return [worker.name, worker.id, worker.aws_instance_id ?? ""].some((text) => text.toLowerCase().includes(q));
}

export function sorted(workers) {
  const column = COLUMNS.find((c) => c.key === view.sort) ?? COLUMNS[0];
  return workers.sort((a, b) => {
    const x = column.value(a);
    const y = column.value(b);
    const order = x < y ? -1 : x > y ? 1 : 0;
    return order * view.dir || a.name.localeCompare(b.name);
  });
}
