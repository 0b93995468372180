// Small time-series charts drawn as inline SVG: no library, nothing to vendor, and colours come from CSS
// classes so both themes apply. Redrawn at the container's real width so text and strokes stay crisp.
import { h, svg } from "./dom.js";
import { clock } from "./format.js";

const HEIGHT = 150;
const PAD = { top: 10, right: 12, bottom: 22, left: 36 };

/**
 * lineChart({title, unit, series: "cpu"|"memory"|"disk"|"labs", points: [{t: ms, v: number|null}],
 * from: ms, to: ms, max, step}) → a <figure> that redraws itself when resized.
 */
export function lineChart(options) {
  const readout = h("span", { class: "chart-readout", "aria-hidden": "true" });
  const caption = h("figcaption", {}, h("span", { class: "chart-title" }, options.title), readout);
  const holder = h("div", { class: "chart-canvas" });
  const values = options.points.map((p) => p.v).filter((v) => v != null);
  const dataset = { series: options.series, samples: values.length };
  const figure = h("figure", { class: `chart chart-${options.series}`, dataset }, caption, holder);
  const latest = values.at(-1);
  const fmt = (v) => (v == null ? "–" : `${options.step ? v : v.toFixed(1)}${options.unit}`);
  readout.textContent = latest == null ? "no data" : `now ${fmt(latest)}`;
  const summary = values.length
    ? `${options.title}: latest ${fmt(latest)}, lowest ${fmt(Math.min(...values))}, highest ${fmt(Math.max(...values))}, ${values.length} samples`
    : `${options.title}: no samples in this period`;

  let width = 0;
  const draw = () => {
    const next = Math.round(holder.clientWidth);
    if (!next || next === width) return;
    width = next;
    holder.replaceChildren(
      render(
        options,
        width,
        summary,
        (text) => (readout.textContent = text ?? (latest == null ? "no data" : `now ${fmt(latest)}`)),
        fmt,
      ),
    );
  };
  new ResizeObserver(draw).observe(holder);
  return figure;
}

function niceMax(max, step) {
  if (step) return Math.max(4, Math.ceil(max / 4) * 4);
  if (max <= 0) return 10;
  const magnitude = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((m) => m >= max) ?? max;
}

function render(o, width, summary, setReadout, fmt) {
  const values = o.points.map((p) => p.v).filter((v) => v != null);
  const top = o.max ?? niceMax(Math.max(0, ...values), o.step);
  const innerW = Math.max(10, width - PAD.left - PAD.right);
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - o.from) / Math.max(1, o.to - o.from)) * innerW;
  const y = (v) => PAD.top + innerH - (Math.min(v, top) / top) * innerH;

  const grid = [0, 0.5, 1].map((f) => {
    const value = top * f;
    return [
      svg("line", { class: "chart-grid", x1: PAD.left, x2: PAD.left + innerW, y1: y(value), y2: y(value) }),
      svg(
        "text",
        { class: "chart-axis", x: PAD.left - 6, y: y(value) + 4, "text-anchor": "end" },
        `${Math.round(value)}${o.unit}`,
      ),
    ];
  });
  const ticks = [o.from, (o.from + o.to) / 2, o.to].map((t, i) =>
    svg(
      "text",
      { class: "chart-axis", x: x(t), y: HEIGHT - 6, "text-anchor": ["start", "middle", "end"][i] },
      label(t, o.to - o.from),
    ),
  );

  // A missing sample breaks the line rather than drawing a slope through a gap we know nothing about.
  const segments = [];
  let current = [];
  for (const p of o.points) {
    if (p.v == null) {
      if (current.length) segments.push(current);
      current = [];
    } else current.push(p);
  }
  if (current.length) segments.push(current);
  const lineOf = (points) =>
    points
      .map((p, i) => {
        const cmd = i === 0 ? "M" : o.step ? `H${x(p.t).toFixed(1)}V` : "L";
        return o.step && i > 0 ? `${cmd}${y(p.v).toFixed(1)}` : `${cmd}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
      })
      .join("");
  const paths = segments.flatMap((points) => {
    const line = lineOf(points);
    const area = `${line}V${y(0)}H${x(points[0].t).toFixed(1)}Z`;
    return [svg("path", { class: "chart-area", d: area }), svg("path", { class: "chart-line", d: line })];
  });
  const last = o.points.findLast((p) => p.v != null);
  const dot = last ? svg("circle", { class: "chart-dot", cx: x(last.t), cy: y(last.v), r: 3 }) : null;

  const cursor = svg("line", { class: "chart-cursor", y1: PAD.top, y2: PAD.top + innerH, visibility: "hidden" });
  const hit = svg("rect", { class: "chart-hit", x: PAD.left, y: PAD.top, width: innerW, height: innerH });
  const samples = o.points.filter((p) => p.v != null);
  hit.addEventListener("pointermove", (event) => {
    if (!samples.length) return;
    const box = hit.getBoundingClientRect();
    const t = o.from + ((event.clientX - box.left) / box.width) * (o.to - o.from);
    const near = samples.reduce((best, p) => (Math.abs(p.t - t) < Math.abs(best.t - t) ? p : best));
    cursor.setAttribute("x1", x(near.t));
    cursor.setAttribute("x2", x(near.t));
    cursor.setAttribute("visibility", "visible");
    setReadout(`${clock(new Date(near.t).toISOString())}: ${fmt(near.v)}`);
  });
  hit.addEventListener("pointerleave", () => {
    cursor.setAttribute("visibility", "hidden");
    setReadout(null);
  });

  return svg(
    "svg",
    {
      class: "chart-svg",
      width,
      height: HEIGHT,
      viewBox: `0 0 ${width} ${HEIGHT}`,
      role: "img",
      "aria-label": summary,
    },
    svg("title", {}, summary),
    grid,
    ticks,
    paths,
    dot,
    cursor,
    hit,
  );
}

function label(t, span) {
  const date = new Date(t);
  if (span > 36 * 3600_000) return date.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}
