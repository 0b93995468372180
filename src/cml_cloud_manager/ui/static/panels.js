// The fact panels of the worker detail: AWS, CML, license, idle detection, tags. Each panel keeps its form
// controls across live updates (a half-typed token must survive a metrics event) and re-renders only facts.
import { runCommand, updateIdle } from "./actions.js";
import { path } from "./api.js";
import { can } from "./auth.js";
import { fill, h } from "./dom.js";
import { ago, DASH, when } from "./format.js";
import { idleInfo, idleJobEnabled } from "./idle.js";
import { state } from "./store.js";
import { badge, busy, button, confirmDialog, definitionList, idText, meter } from "./ui.js";

function panel(title, ...children) {
  const id = `panel-${title.toLowerCase().replaceAll(/[^a-z]+/g, "-")}`;
  return h("section", { class: "panel card", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

const mono = (text) => (text ? h("span", { class: "mono" }, text) : DASH);
const stamp = (iso) => (iso ? h("time", { datetime: iso, title: when(iso) }, ago(iso)) : DASH);

export function awsPanel() {
  const facts = h("div");
  return {
    node: panel("AWS", facts),
    update(w) {
      const d = w.details ?? {};
      const groups = (d.security_groups ?? []).map((g) =>
        typeof g === "string"
          ? h("span", { class: "chip" }, idText(g, { label: "security group" }))
          : h(
              "span",
              { class: "chip" },
              g.name ?? g.group_name ?? "",
              idText(g.id ?? g.group_id, { label: "security group id" }),
            ),
      );
      fill(
        facts,
        definitionList([
          ["Instance", idText(w.aws_instance_id, { label: "instance id" })],
          ["Type", w.instance_type],
          ["Region / zone", `${w.aws_region}${d.availability_zone ? ` / ${d.availability_zone}` : ""}`],
          [
            "AMI",
            [idText(w.ami_id, { label: "AMI id" }), w.ami_name ? h("small", { class: "muted block" }, w.ami_name) : null],
          ],
          ["Public IP", idText(w.public_ip, { label: "public IP" })],
          ["Private IP", idText(w.private_ip, { label: "private IP" })],
          d.public_dns ? ["Public DNS", mono(d.public_dns)] : null,
          ["Subnet", idText(d.subnet_id, { label: "subnet id" })],
          ["VPC", idText(d.vpc_id, { label: "VPC id" })],
          ["Security groups", groups.length ? groups : DASH],
          d.key_name ? ["Key pair", d.key_name] : null,
          ["Status checks", w.status_checks ? badge(w.status_checks) : DASH],
          ["Detailed monitoring", w.detailed_monitoring ? "on" : "off"],
          ["Launched", stamp(w.launched_at)],
          d.state_reason
            ? ["State reason", typeof d.state_reason === "string" ? d.state_reason : JSON.stringify(d.state_reason)]
            : null,
        ]),
      );
    },
  };
}

export function cmlPanel() {
  const facts = h("div");
  return {
    node: panel("CML", facts),
    update(w) {
      fill(
        facts,
        definitionList([
          ["Version", w.cml_version || DASH],
          [
            "Service",
            [badge(w.service_status), w.service_reason ? h("small", { class: "muted block" }, w.service_reason) : null],
          ],
          // The server keeps the two in step; a page must not say "ready" next to "unavailable" either way.
          ["Ready", w.cml_ready && w.service_status === "available" ? "yes" : "no"],
          ["Compute hosts", String(w.compute_hosts ?? DASH)],
          ["CPU", meter(w.cpu_percent, "CPU")],
          ["Memory", meter(w.memory_percent, "Memory")],
          ["Disk", meter(w.disk_percent, "Disk")],
          ["Labs", String(w.labs_count)],
          ["Measured", stamp(w.metrics_at)],
        ]),
      );
    },
  };
}

export function licensePanel(getWorker) {
  const facts = h("div");
  const token = h("input", {
    id: "license-token",
    name: "token",
    type: "password",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    minlength: "10",
  });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Register");
  const form = h(
    "form",
    { class: "inline-form", "aria-label": "Register the license" },
    h("div", { class: "field" }, h("label", { for: "license-token" }, "Smart Licensing token"), token),
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const w = getWorker();
    busy(submit, async () => {
      const sent = await runCommand("POST", path`/api/workers/${w.id}/license`, `Register license of ${w.name}`, {
        json: { token: token.value.trim() },
      });
      if (sent) token.value = ""; // the token is a secret: do not leave it in the page
    });
  });
  const deregister = button(
    "Deregister",
    async (btn) => {
      const w = getWorker();
      const ok = await confirmDialog({
        title: `Deregister the license of ${w.name}?`,
        message: `${w.name} returns its Smart Licensing entitlement; labs beyond the evaluation limits stop working.`,
        confirmLabel: `Deregister ${w.name}`,
      });
      if (ok)
        await busy(btn, () =>
          runCommand("DELETE", path`/api/workers/${w.id}/license`, `Deregister license of ${w.name}`),
        );
    },
    { kind: "danger", key: "license-deregister" },
  );
  const controls = h("div", { class: "panel-controls" });
  if (can("license.register")) controls.append(form);
  if (can("license.deregister")) controls.append(deregister);
  return {
    node: panel("License", facts, controls),
    update(w) {
      fill(facts, definitionList([["Status", badge(w.license_status)]]));
      const running = w.status === "running";
      for (const control of [token, submit, deregister]) control.disabled = !running;
      controls.title = running ? "" : "Licensing needs the worker running";
      deregister.hidden = !["registered", "expired", "invalid"].includes(w.license_status);
    },
  };
}

export function idlePanel(getWorker) {
  const facts = h("div");
  const toggle = button(
    "",
    (btn) => {
      const w = getWorker();
      updateIdle(w, { enabled: !w.idle_detection_enabled }, btn);
    },
    { key: "idle-toggle" },
  );
  toggle.setAttribute("aria-describedby", "idle-toggle-help");
  const minutes = h("input", {
    id: "snooze-minutes",
    name: "snooze_minutes",
    type: "number",
    min: "1",
    max: "10080",
    step: "1",
    value: "60",
    required: true,
    inputmode: "numeric",
  });
  const snooze = h("button", { type: "submit", class: "btn" }, "Snooze");
  const form = h(
    "form",
    { class: "inline-form", "aria-label": "Snooze idle detection" },
    h("div", { class: "field" }, h("label", { for: "snooze-minutes" }, "Snooze for (minutes)"), minutes),
    snooze,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    updateIdle(getWorker(), { snooze_minutes: Number(minutes.value) }, snooze);
  });
  const controls = h("div", { class: "panel-controls" });
  if (can("idle.toggle"))
    controls.append(
      h(
        "div",
        {},
        toggle,
        h(
          "small",
          { id: "idle-toggle-help", class: "muted block" },
          "Idle detection stops this worker when nobody used CML for the idle timeout.",
        ),
      ),
    );
  if (can("idle.snooze")) controls.append(form);
  return {
    node: panel("Activity & idle detection", facts, controls),
    update(w) {
      const jobEnabled = idleJobEnabled(state.jobs);
      const info = idleInfo(w, { config: state.config, jobEnabled });
      const timeout = `${state.config.idle_timeout_minutes} min${state.config.assumed ? " (assumed default)" : ""}`;
      fill(
        facts,
        definitionList([
          ["Idle stop", h("span", { class: `idle idle-${info.state}` }, info.text)],
          [
            "Detection",
            w.idle_detection_enabled
              ? jobEnabled
                ? "enabled"
                : "enabled, but the idle-detection job is off"
              : "disabled for this worker",
          ],
          ["Idle timeout", timeout],
          ["Last activity", stamp(w.last_activity_at)],
          ["Last resumed", stamp(w.last_resumed_at)],
          [
            "Snoozed until",
            w.snoozed_until && new Date(w.snoozed_until) > new Date()
              ? h("time", { datetime: w.snoozed_until }, when(w.snoozed_until))
              : DASH,
          ],
          ["Stopped for idleness", String(w.auto_pauses)],
          ["Stopped by hand", String(w.manual_pauses)],
        ]),
      );
      toggle.textContent = w.idle_detection_enabled ? "Disable idle detection" : "Enable idle detection";
    },
  };
}

export function tagsPanel(getWorker) {
  const list = h("div", { class: "tags" });
  const key = h("input", { id: "tag-key", name: "key", required: true, maxlength: "128", autocomplete: "off" });
  const value = h("input", { id: "tag-value", name: "value", maxlength: "256", autocomplete: "off" });
  const add = h("button", { type: "submit", class: "btn" }, "Set tag");
  const form = h(
    "form",
    { class: "inline-form", "aria-label": "Set a tag" },
    h("div", { class: "field" }, h("label", { for: "tag-key" }, "Key"), key),
    h("div", { class: "field" }, h("label", { for: "tag-value" }, "Value"), value),
    add,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const w = getWorker();
    busy(add, async () => {
      const body = { set: { [key.value.trim()]: value.value } };
      if (await runCommand("PUT", path`/api/workers/${w.id}/tags`, `Tag ${w.name}`, { json: body })) form.reset();
    });
  });
  const editable = can("worker.tags");
  return {
    node: panel("Tags", list, editable ? form : null),
    update(w) {
      const entries = Object.entries(w.tags ?? {}).sort(([a], [b]) => a.localeCompare(b));
      fill(
        list,
        entries.length
          ? h(
              "ul",
              { class: "tag-list" },
              entries.map(([k, v]) =>
                h(
                  "li",
                  { class: "chip" },
                  h("span", { class: "mono" }, `${k} = ${v}`),
                  editable
                    ? button(
                        "×",
                        (btn) =>
                          busy(btn, () =>
                            runCommand("PUT", path`/api/workers/${w.id}/tags`, `Remove tag ${k} from ${w.name}`, {
                              json: { remove: [k] },
                            }),
                          ),
                        { kind: "mini", key: `tag-remove-${k}`, title: `Remove tag ${k}` },
                      )
                    : null,
                ),
              ),
            )
          : h("p", { class: "muted" }, "No tags."),
      );
      for (const b of list.querySelectorAll("button")) b.setAttribute("aria-label", b.title);
    },
  };
}
