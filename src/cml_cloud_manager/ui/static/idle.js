// When will idle detection stop this worker? The same rule as the server's idle-detection job
// (activity/tasks.py: should_stop), so the countdown matches what will happen.

const MINUTE = 60_000;

function latest(...isos) {
  const times = isos.filter(Boolean).map((iso) => new Date(iso).getTime());
  return times.length ? Math.max(...times) : null;
}

/**
 * {state, text, stopAt}: state is "off" (per worker or the job is disabled), "na" (not running), "waiting"
 * (no clock yet), "due" (stops at the next check), "snoozed" or "counting".
 */
export function idleInfo(worker, { config, jobEnabled = true, now = Date.now() }) {
  if (!worker.idle_detection_enabled || jobEnabled === false) return { state: "off", text: "idle detection off" };
  if (worker.status !== "running") return { state: "na", text: "–" };
  const since = latest(worker.last_activity_at, worker.last_resumed_at, worker.launched_at);
  if (since == null) return { state: "waiting", text: "no activity yet" };
  const idleStop = since + config.idle_timeout_minutes * MINUTE;
  const resumeGuard = worker.last_resumed_at
    ? new Date(worker.last_resumed_at).getTime() + config.idle_snooze_minutes * MINUTE
    : null;
  const notBefore = latest(worker.snoozed_until) ?? 0;
  const stopAt = Math.max(idleStop, notBefore, resumeGuard ?? 0);
  const approx = config.assumed ? "≈ " : "";
  if (stopAt <= now) return { state: "due", text: "idle: stops at next check", stopAt };
  const left = countdown(stopAt - now);
  const snoozed = stopAt > idleStop;
  return {
    state: snoozed ? "snoozed" : "counting",
    text: `${approx}stops in ${left}${snoozed ? " (snoozed)" : ""}`,
    stopAt,
  };
}

function countdown(ms) {
  const minutes = Math.ceil(ms / MINUTE);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours}h ${minutes % 60}m` : `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

/** Is the idle-detection job itself switched on? Unknown (jobs not loaded) counts as on. */
export function idleJobEnabled(jobs) {
  const job = jobs?.find((j) => j.name === "idle-detection");
  return job ? job.enabled : true;
}
