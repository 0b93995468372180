// Every HTTP call of the UI: same-origin cookie, CSRF header on writes, JSON problems turned into ApiError.

let csrfToken = "";
let unauthorized = () => {};
// Read-your-writes across API replicas: a write answers with the sequence number of the last event it committed
// (X-Event-Sequence), the stream numbers every event; reads send back the highest seen, and whichever replica
// takes them answers once it has applied that event (the fleet is read from each replica's memory).
let sequence = 0;

/** An event's sequence number seen: later reads wait for it. */
export function sawSequence(value) {
  const seen = Number(value);
  if (Number.isSafeInteger(seen) && seen > sequence) sequence = seen;
}

/** After the stream's `reset` (e.g. a database restored from a backup): numbers seen before may never come. */
export function forgetSequences() {
  sequence = 0;
}

export function setCsrfToken(token) {
  csrfToken = token ?? "";
}

/** Called with the 401 problem; the app shows the login screen. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(messageFor(status, problem));
    this.status = status;
    this.problem = problem ?? {};
  }
}

function messageFor(status, problem) {
  const detail = problem?.detail || problem?.title;
  if (status === 403 && /csrf/i.test(detail ?? "")) return `The security check failed (${detail}); reload the page.`;
  if (status === 403) return `Your role does not allow this${detail ? `: ${detail}` : "."}`;
  if (status === 0) return "The server cannot be reached; check the connection and try again.";
  return detail || `The server answered HTTP ${status}.`;
}

async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return { detail: `${response.status} ${response.statusText}`.trim() };
  }
}

/**
 * request("POST", "/api/workers/x/stop") → parsed JSON (or text for non-JSON, null for 204).
 * Options: json (body object), body + contentType (raw body), raw (return the Response), auth: false
 * (a 401 is the caller's business, e.g. /auth/me at boot).
 */
export async function request(method, path, { json, body, contentType, raw = false, auth = true } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  if (method === "GET" && sequence) headers["X-Event-Sequence"] = String(sequence);
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (contentType) {
    headers["Content-Type"] = contentType;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, credentials: "same-origin", cache: "no-store" });
  } catch {
    throw new ApiError(0, null);
  }
  sawSequence(response.headers.get("X-Event-Sequence"));
  if (!response.ok) {
    const problem = await problemOf(response);
    if (response.status === 401 && auth) unauthorized(problem);
    throw new ApiError(response.status, problem);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") ?? "";
  return type.includes("json") ? response.json() : response.text();
}

export const api = {
  get: (path, options) => request("GET", path, options),
  post: (path, json, options) => request("POST", path, { json, ...options }),
  put: (path, json, options) => request("PUT", path, { json, ...options }),
  delete: (path, options) => request("DELETE", path, options),
  all: getAll,
};

/** Every item of a list endpoint: each answers {items, total, limit, offset}; read page after page. */
async function getAll(path, pageSize = 1000) {
  const items = [];
  const joiner = path.includes("?") ? "&" : "?";
  for (;;) {
    const page = await request("GET", `${path}${joiner}limit=${pageSize}&offset=${items.length}`);
    items.push(...page.items);
    if (!page.items.length || items.length >= page.total) return items;
  }
}

/** Path segments from the API (ids, names) go through here so a stray "/" or "?" cannot change the route. */
export function path(strings, ...values) {
  return strings.reduce((out, part, i) => out + part + (i < values.length ? encodeURIComponent(values[i]) : ""), "");
}
