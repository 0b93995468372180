// Follows the commands this browser started: a progress toast per command, ended by the command.completed or
// command.failed event with the same command_id. Events can beat the 202 answer, so recent ones are kept.
import { api, path } from "./api.js";
import { state } from "./store.js";
import { toast } from "./ui.js";

const pending = new Map(); // command_id → {label, toast, poll}
const early = new Map(); // command_id → events seen before track() was called
const EARLY_LIMIT = 200;
const POLL_MS = 10_000;

/** Start following `accepted` ({command_id, status, worker_alive, message}); resolves when it ends. */
export function track(accepted, label) {
  const queuedMessage = accepted.worker_alive
    ? "Queued…"
    : accepted.message || "Queued: no worker process is alive, so it will run when one starts.";
  const entry = {
    label,
    toast: toast({
      kind: accepted.worker_alive ? "progress" : "warning",
      title: label,
      message: queuedMessage,
      sticky: true,
    }),
    poll: null,
  };
  entry.toast.node.dataset.commandId = accepted.command_id;
  const done = new Promise((resolve) => (entry.resolve = resolve));
  pending.set(accepted.command_id, entry);
  // A safety net for a lost stream: the command's own state is always one GET away.
  entry.poll = setInterval(() => state.live !== "live" && poll(accepted.command_id), POLL_MS);
  for (const event of early.get(accepted.command_id) ?? []) handleCommandEvent(event);
  early.delete(accepted.command_id);
  return done;
}

export function handleCommandEvent(event) {
  const data = event.data ?? {};
  const id = data.command_id;
  if (!id) return;
  const entry = pending.get(id);
  if (!entry) {
    remember(id, event);
    return;
  }
  switch (event.type) {
    case "command.started":
      entry.toast.update({
        kind: "progress",
        message: data.attempt > 1 ? `Running (attempt ${data.attempt})…` : "Running…",
      });
      break;
    case "command.progress":
      entry.toast.update({ kind: "progress", message: data.message });
      break;
    case "command.completed":
      finish(id, true, describeResult(data.result));
      break;
    case "command.failed":
      finish(id, false, data.error || "The command failed.");
      break;
  }
}

function finish(id, ok, message) {
  const entry = pending.get(id);
  if (!entry) return;
  pending.delete(id);
  clearInterval(entry.poll);
  entry.toast.update({
    kind: ok ? "success" : "error",
    title: ok ? `${entry.label}: done` : `${entry.label}: failed`,
    message,
    sticky: !ok,
  });
  entry.resolve(ok);
}

async function poll(id) {
  try {
    const command = await api.get(path`/api/commands/${id}`);
    if (command.status === "succeeded") finish(id, true, describeResult(command.result));
    else if (command.status === "failed") finish(id, false, command.error || "The command failed.");
    else if (command.progress) pending.get(id)?.toast.update({ message: command.progress });
  } catch {
    // The stream or the next poll will tell.
  }
}

function remember(id, event) {
  if (!early.has(id)) early.set(id, []);
  early.get(id).push(event);
  while (early.size > EARLY_LIMIT) early.delete(early.keys().next().value);
}

function describeResult(result) {
  if (!result || typeof result !== "object") return "";
  const parts = Object.entries(result)
    .filter(([, value]) => value == null || typeof value !== "object")
    .slice(0, 4)
    .map(([key, value]) => `${key.replaceAll("_", " ")}: ${value}`);
  return parts.join(", ");
}
