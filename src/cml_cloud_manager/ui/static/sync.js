// Keeps the store in step with the server: initial loads, and refetches triggered by live events. Events are
// hints ("worker X changed"); the answer of GET /api/workers/X is the truth, so a missed or reordered field
// update can never leave the page wrong.
import { api, ApiError, path, sawSequence } from "./api.js";
import { handleCommandEvent } from "./commands.js";
import { debounced, emit, putWorker, removeWorker, replaceWorkers, set, state } from "./store.js";

const BULK_THRESHOLD = 25; // more changed workers than this: one list call beats many single ones
const requestNumber = new Map(); // worker id → number of its newest request (older answers are dropped)
let counter = 0;

export async function loadWorkers() {
  const items = await api.all("/api/workers");
  requestNumber.clear();
  replaceWorkers(items);
}

export async function loadWorker(id) {
  const mine = ++counter;
  requestNumber.set(id, mine);
  try {
    const worker = await api.get(path`/api/workers/${id}`);
    if (requestNumber.get(id) === mine) putWorker(worker);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) removeWorker(id);
    else throw error;
  }
}

export async function loadSummary() {
  try {
    set("summary", await api.get("/api/workers/summary"));
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    set("summary", null);
  }
}

export async function loadHealth() {
  try {
    // With the worker processes and API replicas (viewer); the public /api/health has only their states.
    set("health", await api.get("/api/health/details"));
  } catch {
    // Most likely the database is down, and signing in needs it: the public status still says so.
    try {
      set("health", await api.get("/api/health"));
    } catch (error) {
      // 503 carries the same body: the database is down, which the banner must say.
      set("health", error.problem?.components ? error.problem : { status: "unavailable", message: error.message });
    }
  }
}

export async function loadJobs() {
  set("jobs", await api.all("/api/system/jobs"));
}

/** Effective idle settings; until the API reports them (GET /api/system/config), the defaults stay assumed. */
export async function loadConfig() {
  try {
    const config = await api.get("/api/system/config");
    set("config", { ...state.config, ...config, assumed: false });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
  }
}

export async function refreshAll() {
  const results = await Promise.allSettled([loadWorkers(), loadSummary(), loadHealth(), loadJobs(), loadConfig()]);
  emit("reset");
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

const changed = new Set();
const flushWorkers = debounced(async () => {
  const ids = [...changed];
  changed.clear();
  try {
    if (ids.length > BULK_THRESHOLD) await loadWorkers();
    else await Promise.all(ids.map(loadWorker));
  } catch (error) {
    console.warn("refetching workers failed", error);
  }
}, 150);

const refreshSummary = debounced(() => loadSummary().catch((e) => console.warn("summary", e)), 400);
const refreshJobs = debounced(() => loadJobs().catch((e) => console.warn("jobs", e)), 300);

/** A CloudEvents envelope from the stream. */
export function handleEvent(event) {
  const type = event.type ?? "";
  sawSequence(event.sequence); // what it prompts us to read is read as of this event, on any replica
  emit("event", event);
  if (type.startsWith("command.")) handleCommandEvent(event);
  if (type === "worker.deleted") {
    removeWorker(event.subject);
    refreshSummary();
    return;
  }
  if (event.subject && /^(worker|lab|license)\./.test(type)) {
    changed.add(event.subject);
    flushWorkers();
  }
  if (type.startsWith("worker.")) refreshSummary();
  const jobCommand = type.startsWith("command.") && event.data?.type === "system.run-job";
  if (type.startsWith("job.") || type === "system.settings.updated" || jobCommand) refreshJobs();
}
