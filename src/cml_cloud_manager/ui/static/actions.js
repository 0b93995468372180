// Worker actions shared by the fleet and the detail view: role-gated buttons, confirmations, command tracking.
import { api, path, request } from "./api.js";
import { can } from "./auth.js";
import { track } from "./commands.js";
import { loadWorker } from "./sync.js";
import { busy, button, confirmDialog, formDialog, reportError, toast } from "./ui.js";

// From which EC2 states the server accepts each action (workers/domain.py ACTIONS).
const ALLOWED = {
  start: ["stopped"],
  stop: ["running", "pending", "starting"],
  refresh: ["pending", "starting", "running", "stopping", "stopped", "shutting-down", "failed", "unknown"],
  terminate: ["pending", "starting", "running", "stopping", "stopped", "failed", "unknown"],
  "operate-labs": ["running"],
};

export function allowed(action, worker) {
  return ALLOWED[action].includes(worker.status);
}

function why(action, worker) {
  return allowed(action, worker) ? undefined : `Not while the worker is ${worker.status}`;
}

/**
 * Send a command request and follow the command; refusals become toasts. Resolves once the server accepted it,
 * to {done} (a promise of the outcome, true when it succeeded) or null when it was refused. Buttons are busy
 * only until then: a queued command may wait for a worker for a long time.
 */
export async function runCommand(method, url, label, options = {}) {
  try {
    const accepted = await request(method, url, options);
    return { done: track(accepted, label) };
  } catch (error) {
    // 429 is "not yet" (a refresh moments after the last one), not a failure to investigate.
    if (error.status === 429) toast({ kind: "warning", title: `${label}: not yet`, message: error.message });
    else reportError(error, `${label}: refused`);
    return null;
  }
}

export function startWorker(worker, btn) {
  return busy(btn, () => runCommand("POST", path`/api/workers/${worker.id}/start`, `Start ${worker.name}`));
}

export function stopWorker(worker, btn) {
  return busy(btn, () => runCommand("POST", path`/api/workers/${worker.id}/stop`, `Stop ${worker.name}`));
}

export function refreshWorker(worker, btn) {
  return busy(btn, () => runCommand("POST", path`/api/workers/${worker.id}/refresh`, `Refresh ${worker.name}`));
}

export function setMonitoring(worker, enabled, btn) {
  const label = `${enabled ? "Enable" : "Disable"} detailed monitoring of ${worker.name}`;
  const url = path`/api/workers/${worker.id}/monitoring`;
  return busy(btn, () => runCommand("POST", url, label, { json: { enabled } }));
}

export async function terminateWorker(worker, btn) {
  const target = `${worker.name} (${worker.aws_instance_id ?? "no instance"})`;
  const ok = await confirmDialog({
    title: `Terminate worker ${worker.name}?`,
    message: `The EC2 instance of ${target} will be terminated: its disk, labs and license registration are lost for good.`,
    confirmLabel: `Terminate ${worker.name}`,
  });
  if (!ok) return false;
  return busy(btn, () =>
    runCommand("DELETE", path`/api/workers/${worker.id}` + "?terminate=true", `Terminate ${worker.name}`),
  );
}

export async function forgetWorker(worker, btn) {
  const ok = await confirmDialog({
    title: `Remove worker ${worker.name} from the fleet?`,
    message: `${worker.name} is no longer managed here; its EC2 instance ${worker.aws_instance_id ?? ""} keeps running as it is, and auto-import leaves it alone until you lift its exclusion (under the fleet table).`,
    confirmLabel: `Remove ${worker.name}`,
  });
  if (!ok) return false;
  return busy(btn, async () => {
    try {
      await api.delete(path`/api/workers/${worker.id}`);
      toast({ kind: "success", title: `${worker.name} removed from the fleet` });
      return true;
    } catch (error) {
      reportError(error, `Remove ${worker.name}: refused`);
      return false;
    }
  });
}

/** The buttons a user may press for this worker: role decides whether a button exists, state whether it works. */
export function workerButtons(worker, { detail = false } = {}) {
  const out = [];
  const id = worker.id;
  if (can("worker.start") && (detail || worker.status === "stopped"))
    out.push(
      button("Start", (b) => startWorker(worker, b), {
        key: `start-${id}`,
        disabled: !allowed("start", worker),
        title: why("start", worker),
      }),
    );
  if (can("worker.stop") && (detail || worker.status !== "stopped"))
    out.push(
      button("Stop", (b) => stopWorker(worker, b), {
        key: `stop-${id}`,
        disabled: !allowed("stop", worker),
        title: why("stop", worker),
      }),
    );
  if (!detail) return out;
  if (can("worker.refresh"))
    out.push(
      button("Refresh", (b) => refreshWorker(worker, b), {
        key: `refresh-${id}`,
        disabled: !allowed("refresh", worker),
        title: why("refresh", worker) ?? "Read EC2 and CML state now",
      }),
    );
  if (can("worker.monitoring")) {
    const enable = !worker.detailed_monitoring;
    const text = `${enable ? "Enable" : "Disable"} detailed monitoring`;
    out.push(button(text, (b) => setMonitoring(worker, enable, b), { key: `monitoring-${id}-${enable}` }));
  }
  if (can("worker.delete"))
    out.push(button("Remove from fleet", (b) => forgetWorker(worker, b), { key: `forget-${id}`, kind: "ghost" }));
  if (can("worker.terminate"))
    out.push(
      button("Terminate", (b) => terminateWorker(worker, b), {
        key: `terminate-${id}`,
        kind: "danger",
        disabled: !allowed("terminate", worker),
        title: why("terminate", worker),
      }),
    );
  return out;
}

export async function createWorkerDialog(regions) {
  const values = await formDialog({
    title: "Create a worker",
    intro: "Launches a new EC2 instance from the CML AMI; it joins the fleet when it is running.",
    submitLabel: "Create worker",
    fields: [
      { name: "name", label: "Name", required: true, placeholder: "cml-team-a" },
      regions.length
        ? { name: "region", label: "Region", type: "select", options: regions.map((r) => [r, r]), value: regions[0] }
        : null,
      { name: "instance_type", label: "Instance type", placeholder: "default: CML_INSTANCE_TYPE" },
      { name: "ami_id", label: "AMI id", placeholder: "default: CML_AMI_ID", pattern: "ami-[0-9a-f]{8,17}" },
    ].filter(Boolean),
  });
  if (!values) return;
  const body = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== ""));
  await runCommand("POST", "/api/workers", `Create ${values.name}`, { json: body });
}

export async function importWorkerDialog() {
  const values = await formDialog({
    title: "Import workers",
    intro: "Import one EC2 instance by id, or every instance launched from AMIs whose name matches a pattern.",
    submitLabel: "Import",
    fields: [
      { name: "instance_id", label: "Instance id", placeholder: "i-0123456789abcdef0", pattern: "i-[0-9a-f]{8,17}" },
      { name: "ami_name_pattern", label: "or AMI name pattern", placeholder: "cml2*" },
      { name: "region", label: "Region (optional)", placeholder: "us-east-1" },
    ],
    validate: (v) =>
      !v.instance_id === !v.ami_name_pattern ? "Fill in exactly one of instance id or AMI name pattern." : null,
  });
  if (!values) return;
  const body = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== ""));
  await runCommand(
    "POST",
    "/api/workers/import",
    body.instance_id ? `Import ${body.instance_id}` : `Import AMIs ${body.ami_name_pattern}`,
    { json: body },
  );
}

/** PUT /idle answers with the worker itself (no command), so the store is updated from that answer. */
export async function updateIdle(worker, change, btn) {
  return busy(btn, async () => {
    try {
      await api.put(path`/api/workers/${worker.id}/idle`, change);
      await loadWorker(worker.id);
      return true;
    } catch (error) {
      reportError(error, `Idle detection of ${worker.name}: refused`);
      return false;
    }
  });
}
