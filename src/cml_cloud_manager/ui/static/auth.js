// Who is signed in and what their role lets them do. The server enforces every rule; the UI only hides what
// would be refused, so a viewer is not shown buttons that can only fail.
import { api, ApiError, request, setCsrfToken } from "./api.js";
import { h } from "./dom.js";
import { state } from "./store.js";

const RANK = { viewer: 1, operator: 2, admin: 3 };

// action → the least role that may do it (mirrors the server's policy; the server has the last word).
const NEEDS = {
  "worker.start": "operator",
  "worker.stop": "operator",
  "worker.refresh": "operator",
  "labs.refresh": "operator",
  "lab.start": "operator",
  "lab.stop": "operator",
  "lab.wipe": "operator",
  "lab.download": "operator",
  "idle.snooze": "operator",
  "idle.toggle": "operator",
  "worker.create": "admin",
  "worker.import": "admin",
  "worker.delete": "admin",
  "worker.terminate": "admin",
  "worker.tags": "admin",
  "worker.monitoring": "admin",
  "license.register": "admin",
  "license.deregister": "admin",
  "lab.delete": "operator",
  "lab.import": "operator",
  "job.run": "admin",
  "settings.edit": "admin",
};

// Before the server has authentication, everyone is an admin of their own machine.
const NO_AUTH = { user: { name: "local", roles: ["admin"] }, auth_mode: "none", csrf_token: "" };

export function role() {
  const roles = state.session?.user?.roles ?? [];
  return roles.reduce((best, r) => ((RANK[r] ?? 0) > (RANK[best] ?? 0) ? r : best), "viewer");
}

export function can(action) {
  const need = NEEDS[action];
  if (!need) throw new Error(`unknown action ${action}`);
  return (RANK[role()] ?? 0) >= RANK[need];
}

function adopt(session) {
  state.session = session;
  setCsrfToken(session.csrf_token);
  return session;
}

/** {session} when signed in, {problem} when the server wants a login. */
export async function loadSession() {
  try {
    return { session: adopt(await api.get("/auth/me", { auth: false })) };
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return { session: adopt(NO_AUTH) };
    if (error instanceof ApiError && error.status === 401) return { problem: error.problem };
    throw error;
  }
}

export async function logout() {
  let answer = null;
  try {
    answer = await request("POST", "/auth/logout", { auth: false });
  } finally {
    state.session = null;
    setCsrfToken("");
  }
  // An OIDC session also ends at the provider, which tells us where to send the browser.
  if (answer && typeof answer === "object" && answer.redirect) window.location.assign(answer.redirect);
}

/**
 * The sign-in screen. Token mode posts the token and resolves with the session; OIDC sends the browser to the
 * provider. A 401 problem that does not say which mode offers both.
 */
export function renderLogin(container, problem, note = "") {
  // The contract puts these fields at the top of the 401 problem; the API nests them under `context` today.
  const mode = problem?.auth_mode ?? problem?.context?.auth_mode;
  const loginUrl = problem?.login_url ?? problem?.context?.login_url ?? "/auth/login";
  return new Promise((resolve) => {
    const error = h("p", { class: "form-error", role: "alert" });
    const input = h("input", {
      id: "login-token",
      name: "token",
      type: "password",
      required: true,
      autocomplete: "current-password",
      spellcheck: "false",
    });
    const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Sign in");
    const form = h(
      "form",
      { class: "login-form" },
      h("div", { class: "field" }, h("label", { for: "login-token" }, "Access token"), input),
      error,
      submit,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      submit.disabled = true;
      try {
        const session = await api.post("/auth/login", { token: input.value }, { auth: false });
        input.value = "";
        resolve(adopt(session));
      } catch (err) {
        error.textContent =
          err.status === 429 ? `Too many attempts. ${err.problem.detail ?? ""}` : err.message || "Sign-in failed.";
        input.select();
      } finally {
        submit.disabled = false;
      }
    });
    const sso = h("a", { class: "btn btn-primary", href: loginUrl }, "Sign in with your identity provider");
    // A first sign-in needs a token nobody has handed out yet: say where the server put one.
    const whereIsMyToken = h(
      "div",
      { class: "login-help muted" },
      h("h2", {}, "Where do I get a token?"),
      h(
        "p",
        {},
        "When no token is configured, the API's first start writes an admin token to ",
        h("code", {}, "var/admin-token"),
        " in the directory it runs in (the ",
        h("code", {}, "AUTH_ADMIN_TOKEN_FILE"),
        " setting moves it) and logs where.",
      ),
      h(
        "p",
        {},
        "More tokens, one per person and role, come from ",
        // Broken only between its words, never after a "--".
        h(
          "code",
          {},
          ["cml-cloud-manager", "token", "create", "--name alice", "--role operator"].map((word, i) => [
            i ? " " : "",
            h("span", { class: "nowrap" }, word),
          ]),
        ),
        " (roles: viewer, operator, admin); it prints the token once.",
      ),
    );
    const parts = [
      h("h1", {}, "Sign in to CML Cloud Manager"),
      note ? h("p", { class: "muted", role: "status" }, note) : null,
    ];
    if (mode === "oidc") parts.push(sso);
    else if (mode === "token") parts.push(form, whereIsMyToken);
    else parts.push(form, h("p", { class: "muted" }, "or"), sso, whereIsMyToken);
    container.replaceChildren(h("section", { class: "login card" }, parts));
    (mode === "oidc" ? sso : input).focus();
  });
}
