// The browser's copy of server state and a tiny publish/subscribe bus. Views render from here and never
// patch it by hand: live events only trigger refetches (sync.js), whose answers land here.

const listeners = new Map();

export const state = {
  session: null, // {user: {name, roles}, auth_mode, csrf_token}
  workers: new Map(),
  workersLoaded: false,
  summary: null,
  health: null,
  jobs: null,
  // Until the API reports the effective idle settings, the documented defaults are assumed (config.assumed).
  config: { idle_timeout_minutes: 60, idle_snooze_minutes: 60, assumed: true },
  live: "connecting",
};

/** Subscribe to a topic; returns the unsubscribe function (views call it when they are torn down). */
export function on(topic, fn) {
  if (!listeners.has(topic)) listeners.set(topic, new Set());
  listeners.get(topic).add(fn);
  return () => listeners.get(topic)?.delete(fn);
}

export function emit(topic, payload) {
  for (const fn of [...(listeners.get(topic) ?? [])]) {
    try {
      fn(payload);
    } catch (error) {
      console.error(`listener of ${topic} failed`, error);
    }
  }
}

export function set(key, value) {
  state[key] = value;
  emit(key, value);
}

export function putWorker(worker) {
  state.workers.set(worker.id, worker);
  emit("workers", { changed: [worker.id] });
}

export function removeWorker(id) {
  if (state.workers.delete(id)) emit("workers", { removed: [id] });
}

export function replaceWorkers(list) {
  state.workers = new Map(list.map((worker) => [worker.id, worker]));
  state.workersLoaded = true;
  emit("workers", { all: true });
}

/** Collapse bursts (a metrics run touches every worker) into one call per key after `ms` of quiet. */
export function debounced(fn, ms) {
  const timers = new Map();
  return (key = "") => {
    clearTimeout(timers.get(key));
    timers.set(
      key,
      setTimeout(() => {
        timers.delete(key);
        fn(key);
      }, ms),
    );
  };
}
