// Tiny SVG charts: time-series lines and bars with axes, a legend and a hover read-out. No library,
// no network: enough for the dashboard, and every element inherits the theme's colours.

import {fmt, h} from "./util.js";

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["var(--c1)", "var(--c2)", "var(--c3)", "var(--c4)", "var(--c5)", "var(--c6)", "var(--c7)"];

function s(tag, attrs = {}) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

let tip = null;
function showTip(x, y, lines) {
  if (!tip) { tip = h("div", {class: "chart-tip"}); document.body.append(tip); }
  tip.replaceChildren(...lines.map((l) => h("div", {}, l)));
  tip.style.display = "block";
  const w = tip.offsetWidth;
  tip.style.left = `${Math.min(x + 12, window.innerWidth - w - 8)}px`;
  tip.style.top = `${y + 12}px`;
}
function hideTip() { if (tip) tip.style.display = "none"; }

/**
 * series: [{name, color?, points: [[t, value|null], ...]}]  (all series share the same t values)
 * opts: {kind: "line"|"bar", format: (v) => string, height, stacked}
 */
export function timeChart(series, opts = {}) {
  const format = opts.format || fmt.compact;
  const kind = opts.kind || "line";
  const W = 640, H = opts.height || 200, L = 46, R = 10, T = 10, B = 22;
  const svg = s("svg", {viewBox: `0 0 ${W} ${H}`, class: "chart", preserveAspectRatio: "none", role: "img"});
  svg.dataset.testid = "chart";
  const ts = series.length ? series[0].points.map((p) => p[0]) : [];
  const n = ts.length;
  let max = 0;
  if (kind === "bar" && opts.stacked) {
    for (let i = 0; i < n; i++) max = Math.max(max, series.reduce((a, sr) => a + (sr.points[i][1] || 0), 0));
  } else {
    for (const sr of series) for (const [, v] of sr.points) if (v !== null && v > max) max = v;
  }
  const top = niceMax(max);
  const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - v / top);
  for (let g = 0; g <= 4; g++) {
    const v = (top * g) / 4;
    svg.append(s("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid-line"}));
    const label = s("text", {x: L - 6, y: y(v) + 3, "text-anchor": "end"});
    label.textContent = format(v);
    svg.append(label);
  }
  if (n > 1) {
    const span = ts[n - 1] - ts[0];
    for (const i of [0, Math.floor((n - 1) / 2), n - 1]) {
      const label = s("text", {x: x(i), y: H - 6, "text-anchor": i === 0 ? "start" : i === n - 1 ? "end" : "middle"});
      label.textContent = fmt.clock(ts[i], span);
      svg.append(label);
    }
  }
  series.forEach((sr, k) => {
    const color = sr.color || PALETTE[k % PALETTE.length];
    if (kind === "bar") {
      const slot = (W - L - R) / Math.max(n, 1);
      const bw = opts.stacked ? Math.max(1, slot * 0.8) : Math.max(1, (slot * 0.8) / series.length);
      sr.points.forEach(([, v], i) => {
        if (!v) return;
        let base = 0;
        if (opts.stacked) for (let j = 0; j < k; j++) base += series[j].points[i][1] || 0;
        const cx = L + slot * i + slot * 0.1 + (opts.stacked ? 0 : bw * k);
        svg.append(s("rect", {x: cx, y: y(base + v), width: bw, height: Math.max(0.5, y(base) - y(base + v)), fill: color, rx: 1}));
      });
    } else {
      let d = "";
      let pen = false;
      sr.points.forEach(([, v], i) => {
        if (v === null || v === undefined) { pen = false; return; }
        d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      if (d) svg.append(s("path", {d, fill: "none", stroke: color, "stroke-width": 2, "vector-effect": "non-scaling-stroke", "stroke-linejoin": "round"}));
      // A value with no neighbour draws no line: mark it with a dot so a lone bucket still shows.
      sr.points.forEach(([, v], i) => {
        const lone = (i === 0 || sr.points[i - 1][1] === null) && (i === n - 1 || sr.points[i + 1][1] === null);
        if (v !== null && v !== undefined && lone) svg.append(s("circle", {cx: x(i), cy: y(v), r: 3, fill: color}));
      });
    }
  });
  const hover = s("line", {y1: T, y2: H - B, class: "hover-line", visibility: "hidden"});
  svg.append(hover);
  svg.addEventListener("mousemove", (event) => {
    if (!n) return;
    const box = svg.getBoundingClientRect();
    const px = ((event.clientX - box.left) / box.width) * W;
    const i = Math.max(0, Math.min(n - 1, Math.round(((px - L) / (W - L - R)) * (n - 1))));
    hover.setAttribute("x1", x(i)); hover.setAttribute("x2", x(i)); hover.setAttribute("visibility", "visible");
    showTip(event.clientX, event.clientY, [fmt.datetime(ts[i]), ...series.map((sr) => `${sr.name}: ${sr.points[i][1] === null ? "–" : format(sr.points[i][1])}`)]);
  });
  svg.addEventListener("mouseleave", () => { hover.setAttribute("visibility", "hidden"); hideTip(); });
  const legend = h("div", {class: "legend"}, series.map((sr, k) => h("span", {}, h("i", {style: `background:${sr.color || PALETTE[k % PALETTE.length]}`}), sr.name)));
  return h("div", {class: "chart-box"}, svg, series.length > 1 ? legend : null);
}

/** A single horizontal stacked bar with a legend: parts = [{name, value, color}] */
export function stackBar(parts, format = fmt.us) {
  const total = parts.reduce((a, p) => a + (p.value || 0), 0) || 1;
  return h("div", {"data-testid": "stack-chart"},
    h("div", {class: "stack"}, parts.map((p, k) => h("div", {
      style: `width:${(100 * (p.value || 0)) / total}%;background:${p.color || PALETTE[k % PALETTE.length]}`,
      title: `${p.name}: ${format(p.value)}`,
    }))),
    h("div", {class: "legend"}, parts.map((p, k) => h("span", {}, h("i", {style: `background:${p.color || PALETTE[k % PALETTE.length]}`}), `${p.name} ${format(p.value)}`))));
}
