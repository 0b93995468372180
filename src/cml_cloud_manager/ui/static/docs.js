// The API reference at /api/docs: the OpenAPI document rendered with textContent only (see dom.js), from this
// server alone, under the same CSP as the app. Read-only: requests are made with curl or an OpenAPI client.

import { $, h } from "./dom.js";

const METHODS = ["get", "post", "put", "patch", "delete"];

function resolve(spec, ref) {
  return ref.replace(/^#\//, "").split("/").reduce((node, key) => node?.[key], spec);
}

/** A JSON schema as a short TypeScript-like shape, `$ref`s expanded once per branch. */
function shape(spec, schema, depth = 0, seen = new Set()) {
  if (!schema || typeof schema !== "object") return "any";
  if (schema.$ref) {
    const name = schema.$ref.split("/").pop();
    if (seen.has(name) || depth > 5) return name;
    return shape(spec, resolve(spec, schema.$ref), depth, new Set([...seen, name]));
  }
  const union = schema.anyOf ?? schema.oneOf;
  if (union) return union.map((s) => shape(spec, s, depth, seen)).join(" | ");
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.type === "array") return `${shape(spec, schema.items, depth, seen)}[]`;
  if (schema.type === "object" || schema.properties) {
    const pad = "  ".repeat(depth + 1);
    const required = new Set(schema.required ?? []);
    const lines = Object.entries(schema.properties ?? {}).map(
      ([key, value]) => `${pad}${key}${required.has(key) ? "" : "?"}: ${shape(spec, value, depth + 1, seen)}`,
    );
    if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
      lines.push(`${pad}[key: string]: ${shape(spec, schema.additionalProperties, depth + 1, seen)}`);
    }
    return lines.length ? `{\n${lines.join("\n")}\n${"  ".repeat(depth)}}` : "object";
  }
  return schema.format ? `${schema.type} (${schema.format})` : (schema.type ?? "any");
}

function parameters(spec, operation) {
  const list = (operation.parameters ?? []).map((p) => (p.$ref ? resolve(spec, p.$ref) : p));
  if (!list.length) return null;
  return [
    h("h3", { text: "Parameters" }),
    h(
      "table",
      null,
      h("thead", null, h("tr", null, ["name", "in", "type", "description"].map((t) => h("th", { text: t })))),
      h(
        "tbody",
        null,
        list.map((p) =>
          h(
            "tr",
            null,
            h("td", { class: "mono", text: p.required ? p.name : `${p.name}?` }),
            h("td", { text: p.in }),
            h("td", { class: "mono", text: shape(spec, p.schema) }),
            h("td", { text: p.description ?? p.schema?.description ?? "" }),
          ),
        ),
      ),
    ),
  ];
}

function content(spec, title, body) {
  return Object.entries(body?.content ?? {}).map(([type, media]) => {
    const text = shape(spec, media.schema);
    return text === "any" ? null : [h("h3", { text: `${title} (${type})` }), h("pre", { text })];
  });
}

function operation(spec, path, method, op) {
  const responses = Object.entries(op.responses ?? {});
  const success = responses.filter(([status]) => status.startsWith("2"));
  return h(
    "details",
    { class: "op", id: op.operationId },
    h(
      "summary",
      null,
      h("span", { class: `method method-${method}`, text: method.toUpperCase() }),
      h("span", { class: "mono", text: path }),
      h("span", { class: "muted", text: op.summary ?? "" }),
    ),
    h(
      "div",
      { class: "op-body" },
      op.description ? h("p", { text: op.description }) : null,
      parameters(spec, op),
      content(spec, "Request body", op.requestBody),
      success.map(([status, response]) => content(spec, `Response ${status}`, response)),
      h("h3", { text: "Statuses" }),
      h(
        "p",
        { class: "mono" },
        responses.map(([status, response]) => `${status} ${response.description ?? ""}`).join(" · "),
      ),
    ),
  );
}

async function main() {
  const target = $("#operations");
  const response = await fetch("/api/openapi.json", { credentials: "same-origin" });
  if (!response.ok) {
    target.replaceChildren(h("p", { text: `Could not load /api/openapi.json: ${response.status}` }));
    return;
  }
  const spec = await response.json();
  document.title = `API reference · ${spec.info.title} ${spec.info.version}`;
  const sections = new Map();
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const method of METHODS) {
      if (!item[method]) continue;
      const tag = item[method].tags?.[0] ?? "other";
      if (!sections.has(tag)) sections.set(tag, []);
      sections.get(tag).push(operation(spec, path, method, item[method]));
    }
  }
  $("#toc").replaceChildren(...[...sections.keys()].map((tag) => h("a", { href: `#tag-${tag}`, text: tag })));
  target.replaceChildren(
    ...[...sections].map(([tag, ops]) => h("section", null, h("h2", { id: `tag-${tag}`, text: tag }), ops)),
  );
}

main();
