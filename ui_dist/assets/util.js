// Small DOM and formatting helpers shared by every page.

/** h("div", {class: "x", onclick: fn}, child, "text") -> Element. Null/false children are skipped. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = !!value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export const fmt = {
  int: (n) => (n === null || n === undefined ? "–" : Math.round(n).toLocaleString()),
  ms: (n) => (n === null || n === undefined ? "–" : n >= 1000 ? `${(n / 1000).toFixed(2)} s` : `${n.toFixed(n < 10 ? 2 : 0)} ms`),
  us: (n) => (n === null || n === undefined ? "–" : n >= 1000 ? `${(n / 1000).toFixed(n >= 10000 ? 0 : 1)} ms` : `${Math.round(n)} µs`),
  pct: (x) => (x === null || x === undefined ? "–" : `${(x * 100).toFixed(x > 0.999 || x < 0.001 ? 1 : 2)}%`),
  rate: (n) => (n === null || n === undefined ? "–" : n >= 100 ? n.toFixed(0) : n >= 1 ? n.toFixed(1) : n.toFixed(2)),
  compact: (n) => {
    if (n === null || n === undefined) return "–";
    const a = Math.abs(n);
    if (a >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
    if (a >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
    if (a >= 1e4) return `${(n / 1e3).toFixed(0)}k`;
    if (a >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
    return Number.isInteger(n) ? String(n) : n.toFixed(2);
  },
  // Dollars: cents precision from $1, four significant digits below (a request often costs < $0.001).
  cost: (n) => {
    if (n === null || n === undefined) return "–";
    if (n === 0) return "$0";
    const a = Math.abs(n);
    if (a >= 1000) return `$${Math.round(n).toLocaleString()}`;
    if (a >= 1) return `$${n.toFixed(2)}`;
    if (a < 1e-6) return "< $0.000001";
    return `$${Number(n.toPrecision(4))}`; // no exponent: JS writes one only below 1e-7
  },
  time: (ms) => new Date(ms).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"}),
  datetime: (ms) => new Date(ms).toLocaleString(),
  clock: (ms, spanMs) => {
    const d = new Date(ms);
    if (spanMs > 2 * 86400000) return d.toLocaleDateString([], {month: "short", day: "numeric"});
    return d.toLocaleTimeString([], spanMs > 3600000 ? {hour: "2-digit", minute: "2-digit"} : {hour: "2-digit", minute: "2-digit", second: "2-digit"});
  },
};

export function statusBadge(status) {
  const cls = status >= 500 || status === 499 ? "err" : status >= 400 ? "warn" : status >= 200 ? "ok" : "muted";
  return h("span", {class: `badge ${cls}`, "data-testid": "status"}, String(status));
}

export function toast(message, isError = false) {
  const box = document.getElementById("toast");
  const item = h("div", {class: `t${isError ? " err" : ""}`}, message);
  box.append(item);
  setTimeout(() => item.remove(), isError ? 6000 : 3000);
}

export function debounce(fn, ms = 250) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

export function pretty(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") {
    try { return JSON.stringify(JSON.parse(value), null, 2); } catch { return value; }
  }
  return JSON.stringify(value, null, 2);
}

export const RANGES = [
  ["15m", 900], ["1h", 3600], ["6h", 21600], ["24h", 86400], ["7d", 604800],
];
