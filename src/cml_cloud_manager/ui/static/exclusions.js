// Instances removed from the fleet, which auto-import leaves alone (GET /api/exclusions): a folded section under
// the fleet table, shown only when there are some; an admin lifts an exclusion so imports may take it again.
import { api, path } from "./api.js";
import { can } from "./auth.js";
import { fill, h } from "./dom.js";
import { ago, when } from "./format.js";
import { on } from "./store.js";
import { busy, button, confirmDialog, reportError, toast } from "./ui.js";

export function exclusionsPanel() {
  const count = h("span");
  const body = h("div");
  const node = h(
    "details",
    { class: "exclusions", id: "exclusions", hidden: true },
    h("summary", {}, "Excluded from imports ", count),
    h(
      "p",
      { class: "muted" },
      "Instances removed from the fleet keep running in EC2; auto-import leaves them alone until the exclusion is lifted.",
    ),
    body,
  );

  async function load() {
    let items;
    try {
      items = await api.all("/api/exclusions");
    } catch (error) {
      node.hidden = false;
      fill(body, h("p", { class: "form-error" }, `Exclusions could not be loaded: ${error.message}`));
      return;
    }
    node.hidden = items.length === 0;
    count.textContent = `(${items.length})`;
    fill(body, items.length ? table(items) : null);
  }

  function table(items) {
    const admin = can("worker.delete"); // who may remove a worker may lift its exclusion
    const head = ["Instance", "Region", "Name", "Removed by", "Since", ...(admin ? ["Actions"] : [])];
    const cells = (x) => [
      h("span", { class: "mono" }, x.aws_instance_id),
      x.aws_region,
      x.name,
      x.excluded_by,
      h("time", { datetime: x.created_at, title: when(x.created_at) }, ago(x.created_at)),
      ...(admin ? [button("Lift", (b) => lift(x, b), { key: `lift-${x.aws_instance_id}` })] : []),
    ];
    return h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "data-table exclusions-table" },
        h("caption", { class: "sr-only" }, "Instances excluded from imports"),
        h("thead", {}, h("tr", {}, head.map((t) => h("th", { scope: "col" }, t)))),
        h(
          "tbody",
          {},
          items.map((x) =>
            h(
              "tr",
              { dataset: { instance: x.aws_instance_id } },
              cells(x).map((cell, i) => h("td", { dataset: { label: head[i] } }, cell)),
            ),
          ),
        ),
      ),
    );
  }

  async function lift(exclusion, btn) {
    const ok = await confirmDialog({
      title: `Lift the exclusion of ${exclusion.aws_instance_id}?`,
      message: `The next auto-import may import ${exclusion.name} (${exclusion.aws_instance_id}) into the fleet again.`,
      confirmLabel: "Lift",
      danger: false,
    });
    if (!ok) return;
    await busy(btn, async () => {
      try {
        await api.delete(path`/api/exclusions/${exclusion.aws_instance_id}`);
        toast({ kind: "success", title: `${exclusion.aws_instance_id} may be imported again` });
      } catch (error) {
        reportError(error, `Lift ${exclusion.aws_instance_id}: refused`);
      }
    });
  }

  const offs = [
    on("event", (event) => event.type?.startsWith("exclusion.") && load()),
    on("reset", () => load()),
  ];
  load();
  return { node, destroy: () => offs.forEach((off) => off()) };
}
