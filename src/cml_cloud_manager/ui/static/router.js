// Hash routes: #/ (fleet), #/workers/<id>, #/jobs. Hash routing needs no server support for deep links.

export function parse(hash = window.location.hash) {
  const route = hash.replace(/^#/, "") || "/";
  const worker = route.match(/^\/workers\/([^/?]+)$/);
  if (worker) return { name: "worker", id: decodeURIComponent(worker[1]) };
  if (route === "/" || route === "") return { name: "fleet" };
  if (route === "/jobs") return { name: "jobs" };
  return { name: "notfound", route };
}

export function workerHref(id) {
  return `#/workers/${encodeURIComponent(id)}`;
}

export function onRoute(handler) {
  window.addEventListener("hashchange", () => handler(parse()));
}
