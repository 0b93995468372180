// Shared widgets: toasts, modal dialogs (confirm and small forms), badges, busy buttons.
import { h, svg } from "./dom.js";

// ---- toasts ---------------------------------------------------------------------------------------------------

const MAX_TOASTS = 5;
const ICONS = { info: "ℹ", progress: "", success: "✓", error: "✕", warning: "!" };

/**
 * toast({kind, title, message, sticky}) → {update(...), close()}. Errors stay until dismissed so nobody misses
 * why an action failed; successes fade on their own.
 */
export function toast({ kind = "info", title = "", message = "", sticky = false, timeout = 6000 }) {
  const region = document.getElementById("toasts");
  const icon = h("span", { class: "toast-icon", "aria-hidden": "true" });
  const titleEl = h("strong", { class: "toast-title" });
  const messageEl = h("span", { class: "toast-message" });
  const close = h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss" }, "×");
  const node = h(
    "div",
    { class: "toast", role: "status" },
    icon,
    h("div", { class: "toast-body" }, titleEl, messageEl),
    close,
  );
  let timer = null;

  const handle = {
    node,
    update(next) {
      Object.assign(current, next);
      render();
    },
    close() {
      clearTimeout(timer);
      node.remove();
    },
  };
  const current = { kind, title, message, sticky, timeout };

  function render() {
    node.className = `toast toast-${current.kind}`;
    node.dataset.kind = current.kind;
    node.setAttribute("role", current.kind === "error" ? "alert" : "status");
    icon.textContent = ICONS[current.kind] ?? "";
    titleEl.textContent = current.title;
    messageEl.textContent = current.message;
    clearTimeout(timer);
    const stays = current.sticky || current.kind === "error" || current.kind === "progress";
    if (!stays) timer = setTimeout(handle.close, current.timeout);
  }

  close.addEventListener("click", handle.close);
  render();
  region.append(node);
  // A burst of finished commands must not bury the page: drop the oldest toasts that need no attention.
  const settled = [...region.children].filter((t) => t.dataset.kind === "success" || t.dataset.kind === "info");
  for (const old of settled.slice(0, Math.max(0, region.children.length - MAX_TOASTS))) old.remove();
  return handle;
}

export function reportError(error, title = "That did not work") {
  console.warn(title, error);
  toast({ kind: "error", title, message: error?.message ?? String(error) });
}

/** Disable the button while `work` runs so a double click does not queue the command twice. */
export async function busy(button, work) {
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  }
  try {
    return await work();
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }
}

// ---- dialogs --------------------------------------------------------------------------------------------------

function openDialog(content, { label, onSubmit }) {
  const opener = document.activeElement;
  const form = h("form", { method: "dialog", class: "dialog-form" }, content);
  const dialog = h("dialog", { class: "dialog", "aria-label": label }, form);
  document.body.append(dialog);
  return new Promise((resolve) => {
    let result = null;
    form.addEventListener("submit", (event) => {
      const submitter = event.submitter;
      if (submitter?.value === "cancel") return;
      const value = onSubmit(new FormData(form), form);
      if (value === undefined) {
        event.preventDefault(); // onSubmit reported a problem in the form: stay open
        return;
      }
      result = value;
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      // A live update may have re-rendered the opener while the dialog was open: its twin has the same key.
      const key = opener instanceof HTMLElement ? opener.dataset.key : undefined;
      const target = opener instanceof HTMLElement && opener.isConnected ? opener
        : key ? document.querySelector(`[data-key="${CSS.escape(key)}"]`) : null;
      target?.focus();
      resolve(result);
    });
    dialog.showModal();
  });
}

function buttons(confirmLabel, danger) {
  return h(
    "div",
    { class: "dialog-actions" },
    h("button", { type: "submit", value: "cancel", class: "btn", formnovalidate: true }, "Cancel"),
    h("button", { type: "submit", value: "ok", class: danger ? "btn btn-danger" : "btn btn-primary" }, confirmLabel),
  );
}

/**
 * Ask before something that cannot be undone. The title and the button both name the target, so the
 * operator reads what is about to go, not just "Are you sure?".
 */
export function confirmDialog({ title, message, confirmLabel, danger = true }) {
  const content = [
    h("h2", { class: "dialog-title" }, title),
    h("p", { class: "dialog-message" }, message),
    buttons(confirmLabel, danger),
  ];
  const promise = openDialog(content, { label: title, onSubmit: () => true });
  return promise.then((ok) => ok === true);
}

/**
 * A small form in a dialog. fields: [{name, label, type, required, placeholder, value, options, help, accept}].
 * Resolves to {name: value} (File for type "file") or null when cancelled.
 */
export function formDialog({ title, intro, fields, submitLabel, validate }) {
  const error = h("p", { class: "form-error", role: "alert" });
  const inputs = fields.map((field, index) => {
    const id = `dlg-${field.name}`;
    const common = { id, name: field.name, required: field.required, autofocus: index === 0, autocomplete: "off" };
    let control;
    if (field.type === "select") {
      control = h(
        "select",
        common,
        field.options.map(([value, text]) => h("option", { value, selected: value === field.value }, text)),
      );
    } else if (field.type === "textarea") {
      control = h("textarea", { ...common, rows: 4, placeholder: field.placeholder }, field.value ?? "");
    } else {
      control = h("input", {
        ...common,
        type: field.type ?? "text",
        value: field.value,
        placeholder: field.placeholder,
        pattern: field.pattern,
        accept: field.accept,
        min: field.min,
        max: field.max,
        step: field.step,
      });
    }
    const help = field.help ? h("small", { class: "help", id: `${id}-help` }, field.help) : null;
    if (help) control.setAttribute("aria-describedby", help.id);
    return h("div", { class: "field" }, h("label", { for: id }, field.label), control, help);
  });
  const content = [
    h("h2", { class: "dialog-title" }, title),
    intro ? h("p", { class: "dialog-message" }, intro) : null,
    inputs,
    error,
    buttons(submitLabel, false),
  ];
  return openDialog(content, {
    label: title,
    onSubmit(data) {
      const values = Object.fromEntries(data.entries());
      const problem = validate?.(values);
      if (problem) {
        error.textContent = problem;
        return undefined;
      }
      return values;
    },
  });
}

// ---- small pieces ---------------------------------------------------------------------------------------------

const TONES = {
  running: "ok",
  available: "ok",
  registered: "ok",
  success: "ok",
  succeeded: "ok",
  STARTED: "ok",
  BOOTED: "ok",
  ok: "ok",
  pending: "busy",
  starting: "busy",
  stopping: "busy",
  "shutting-down": "busy",
  QUEUED: "busy",
  running_job: "busy",
  evaluation: "warn",
  unavailable: "warn",
  degraded: "warn",
  timeout: "warn",
  unknown: "warn",
  skipped: "muted",
  failed: "bad",
  error: "bad",
  expired: "bad",
  invalid: "bad",
  terminated: "bad",
  down: "bad",
  stopped: "muted",
  unregistered: "muted",
  STOPPED: "muted",
  DEFINED_ON_CORE: "muted",
  disabled: "muted",
};

export function badge(value, { label, title } = {}) {
  const text = value ?? "–";
  return h("span", { class: `badge tone-${TONES[text] ?? "muted"}`, title, dataset: { value: text } }, label ?? text);
}

/** A percentage with a bar; the width is set through the CSSOM, which the CSP allows (inline style= it does not). */
export function meter(value, label) {
  const bar = h("span", { class: "meter-bar" });
  const known = value != null;
  if (known) bar.style.inlineSize = `${Math.max(0, Math.min(100, value))}%`;
  const level = !known ? "none" : value >= 90 ? "high" : value >= 70 ? "mid" : "low";
  return h(
    "span",
    { class: `meter meter-${level}`, title: known ? `${label}: ${value.toFixed(1)}%` : `${label}: not measured` },
    h("span", { class: "meter-track", "aria-hidden": "true" }, bar),
    h("span", { class: "meter-text" }, known ? `${Math.round(value)}%` : "–"),
  );
}

export function button(label, onclick, { kind = "", key, title, disabled = false, icon } = {}) {
  const node = h(
    "button",
    { type: "button", class: ["btn", kind && `btn-${kind}`], title, disabled, dataset: key ? { key } : undefined },
    icon ? h("span", { class: "btn-icon", "aria-hidden": "true" }, icon) : null,
    label,
  );
  node.addEventListener("click", () => onclick(node));
  return node;
}

/**
 * An identifier (instance, AMI, lab, process…) kept whole on one line — browsers would break it after a hyphen
 * ("i-" / "0abc…") — with a button that copies it, since ids are what people paste elsewhere.
 */
export function idText(value, { label = "id" } = {}) {
  if (!value) return "–";
  const text = h("span", { class: "id-text", title: value }, value);
  const copy = h(
    "button",
    { type: "button", class: "copy", title: `Copy ${label}`, "aria-label": `Copy ${label} ${value}` },
    svg(
      "svg",
      { viewBox: "0 0 16 16", width: "14", height: "14", "aria-hidden": "true", focusable: "false" },
      svg("rect", { x: "5.5", y: "5.5", width: "8", height: "9", rx: "1.5" }),
      svg("path", { d: "M3.5 10.5h-1v-8a1 1 0 0 1 1-1h7v1" }),
    ),
  );
  copy.addEventListener("click", () => copyText(value, text));
  return h("span", { class: "id" }, text, copy);
}

async function copyText(value, node) {
  try {
    await navigator.clipboard.writeText(value);
    toast({ kind: "success", title: "Copied", message: value, timeout: 2500 });
  } catch {
    // The clipboard API exists only over HTTPS (and on localhost): select the id so Ctrl+C copies it.
    getSelection().selectAllChildren(node);
    toast({ kind: "info", title: "Selected: press Ctrl+C to copy", message: value });
  }
}

export function definitionList(rows) {
  return h(
    "dl",
    { class: "facts" },
    rows.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value ?? "–")]),
  );
}
