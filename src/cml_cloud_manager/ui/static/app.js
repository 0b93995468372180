// Entry point: sign-in, the live connection, the banner, and the hash router that mounts one view at a time.
import { api, forgetSequences, onUnauthorized } from "./api.js";
import { loadSession, logout, renderLogin, role } from "./auth.js";
import { $, fill, h } from "./dom.js";
import { fleetView } from "./fleet.js";
import { jobsView } from "./jobs.js";
import { Live } from "./live.js";
import { onRoute, parse } from "./router.js";
import { emit, on, replaceWorkers, set, state } from "./store.js";
import { handleEvent, loadHealth, loadSummary, refreshAll } from "./sync.js";
import { initTheme } from "./theme.js";
import { reportError } from "./ui.js";
import { workerView } from "./worker.js";

const HEALTH_EVERY_MS = 10_000;
const TICK_EVERY_MS = 15_000; // countdowns and "3 min ago" texts

const main = $("#main");
let view = null;
let live = null;
let timers = [];
let signingIn = false;

const LIVE_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" };

function renderLive(value) {
  const indicator = $("#live");
  indicator.dataset.state = value;
  indicator.textContent = LIVE_TEXT[value] ?? value;
  indicator.title =
    value === "live"
      ? "Receiving live updates"
      : "Live updates interrupted; the page catches up when the connection is back";
}

function renderBanner(health) {
  const banner = $("#banner");
  let text = "";
  if (health?.status === "unavailable")
    text = `The service is unavailable. ${health.message ?? "The database cannot be reached."}`;
  else if (health && health.components?.worker && !health.components.worker.alive)
    text =
      "Degraded: no worker process is alive. Pages and live updates work, but jobs do not run, and actions " +
      "wait in the queue until a worker starts.";
  else if (health?.status === "degraded") text = health.message ?? "Degraded: live updates may be delayed.";
  banner.hidden = !text;
  banner.textContent = text;
}

function renderUser() {
  const session = state.session;
  const box = $("#user");
  const signOut =
    session.auth_mode === "none"
      ? null
      : h("button", { type: "button", class: "btn btn-ghost", id: "logout" }, "Sign out");
  signOut?.addEventListener("click", async () => {
    const mode = session.auth_mode;
    try {
      await logout();
    } catch (error) {
      reportError(error, "Sign-out failed");
    }
    signIn({ auth_mode: mode }, "You are signed out.");
  });
  fill(
    box,
    h("span", { class: "user-name" }, session.user?.name ?? ""),
    h("span", { class: `role role-${role()}` }, role()),
    signOut,
  );
}

function mount(route, { focus = true } = {}) {
  view?.destroy();
  view = null;
  for (const link of document.querySelectorAll(".nav a")) {
    const current = link.dataset.route === (route.name === "worker" ? "fleet" : route.name);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (route.name === "fleet") view = fleetView(main);
  else if (route.name === "worker") view = workerView(main, route.id);
  else if (route.name === "jobs") view = jobsView(main);
  else {
    main.replaceChildren(
      h(
        "section",
        { class: "view" },
        h("h1", { tabindex: "-1" }, "Page not found"),
        h("p", {}, h("a", { href: "#/" }, "Back to the fleet")),
      ),
    );
  }
  document.title = `${view?.title ?? "Not found"} · CML Cloud Manager`;
  // Screen readers and keyboards start at the new page's heading, as after a real navigation.
  if (focus) main.querySelector("h1")?.focus();
}

function start() {
  document.body.dataset.signedIn = "true";
  renderUser();
  refreshAll().catch((error) => reportError(error, "Loading the fleet failed"));
  live = new Live("/api/events/stream", {
    status: (value) => set("live", value),
    connected: (_data, resumed) => {
      // The replay brings every missed worker event; totals and health are not events, so fetch them.
      if (resumed) Promise.all([loadSummary(), loadHealth()]).catch(() => {});
    },
    snapshot: (data) => replaceWorkers(data?.workers ?? []),
    reset: () => {
      forgetSequences();
      refreshAll().catch((error) => reportError(error, "Reloading after a reset failed"));
    },
    event: handleEvent,
    // EventSource hides the status code; an expired session shows up on the next API call, so make one.
    refused: () => api.get("/auth/me").catch(() => {}),
  });
  live.open();
  timers = [setInterval(loadHealth, HEALTH_EVERY_MS), setInterval(() => emit("tick"), TICK_EVERY_MS)];
  mount(parse(), { focus: false });
}

function stop() {
  live?.close();
  live = null;
  timers.forEach(clearInterval);
  timers = [];
  view?.destroy();
  view = null;
  document.body.dataset.signedIn = "false";
  $("#user").replaceChildren();
}

async function signIn(problem, note = "") {
  if (signingIn) return;
  signingIn = true;
  stop();
  document.title = "Sign in · CML Cloud Manager";
  try {
    await renderLogin(main, problem, note);
  } finally {
    signingIn = false;
  }
  start();
}

async function boot() {
  initTheme($("#theme-toggle"));
  // The hash is the router's, so the skip link moves focus itself instead of navigating to #main.
  $(".skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    main.focus();
  });
  on("live", renderLive);
  on("health", renderBanner);
  onRoute((route) => state.session && !signingIn && mount(route));
  // Any 401 (an expired session) brings the sign-in screen back, wherever it happens.
  onUnauthorized((problem) => signIn(problem, "Your session has ended; sign in again."));
  let result;
  try {
    result = await loadSession();
  } catch (error) {
    main.replaceChildren(
      h("section", { class: "view" }, h("h1", {}, "CML Cloud Manager is not reachable"), h("p", {}, error.message)),
    );
    return;
  }
  if (result.session) start();
  else signIn(result.problem);
}

boot();
