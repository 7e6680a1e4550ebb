// Dashboard: throughput, latency, errors, tokens, cost and dropped log records over time, by provider,
// and where the gateway's own time goes (per-stage overhead). Refreshes every 5 seconds.

import {get, query} from "../api.js";
import {PALETTE, stackBar, timeChart} from "../chart.js";
import {RANGES, clear, fmt, h} from "../util.js";

const REFRESH_MS = 5000;
const STAGES = [
  ["queue_wait", "Queue wait"], ["key_select", "Key selection"], ["build", "Build"], ["encode", "Encode"],
  ["parse", "Parse"],
];
let timer = null;
let range = Number(sessionStorage.getItem("bifrost-range")) || 900;

export function unmount() {
  clearInterval(timer);
  timer = null;
}

export async function mount(root) {
  const body = h("div", {"data-testid": "dashboard"});
  const picker = h("div", {class: "toolbar", role: "group", "aria-label": "Time range"},
    RANGES.map(([label, seconds]) => h("button", {
      type: "button", class: seconds === range ? "primary" : "", "data-range": seconds,
      onclick: () => { range = seconds; sessionStorage.setItem("bifrost-range", seconds); mount(clear(root)); },
    }, label)));
  root.append(h("div", {class: "page-head"}, h("h1", {}, "Dashboard"), picker), body);
  const refresh = async () => {
    try {
      const [stats, hist, system] = await Promise.all([
        get(`/api/logs/stats${query({last: range})}`).catch((e) => (e.status === 404 ? null : Promise.reject(e))),
        get(`/api/logs/histogram${query({last: range, buckets: 60})}`).catch((e) => (e.status === 404 ? null : Promise.reject(e))),
        get("/api/system"),
      ]);
      render(body, stats, hist, system);
    } catch (err) {
      clear(body, h("div", {class: "error-box"}, `Could not load the dashboard: ${err.message}`));
    }
  };
  unmount();
  await refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

function kpi(label, value, sub, testid) {
  return h("div", {class: "panel kpi", "data-testid": testid}, h("div", {class: "label"}, label),
    h("div", {class: "value"}, value), sub ? h("div", {class: "sub"}, sub) : null);
}

function panel(title, ...content) {
  return h("section", {class: "panel"}, h("h2", {}, title), ...content);
}

function emptyState(system) {
  const origin = location.origin;
  return h("div", {class: "panel empty", "data-testid": "empty-dashboard"},
    h("h2", {}, "No requests in this time range yet"),
    h("p", {}, "Point any OpenAI SDK at this gateway, or send a test request from the ",
      h("a", {href: "#/providers"}, "Providers"), " page. Charts fill in as traffic arrives."),
    h("pre", {}, `curl ${origin}/v1/chat/completions \\\n  -H 'Content-Type: application/json' \\\n  -d '{"model": "mock/mock-chat", "messages": [{"role": "user", "content": "Hello"}]}'`),
    system && system.totals && system.totals.log_dropped
      ? h("p", {class: "hint"}, `${fmt.int(system.totals.log_dropped)} log records were dropped (buffer full, or ${fmt.int(system.totals.log_failed ?? 0)} refused by the database; see the gateway's log for their request ids).`) : null);
}

function costNote(stats) {
  if (stats.cost === undefined) return "not reported by this gateway";
  const per = stats.cost && stats.count ? ` · ${fmt.cost(stats.cost / stats.count)} per request` : "";
  return `catalog prices and pricing_overrides${per}`;
}

function render(body, stats, hist, system) {
  if (!stats || !stats.count) {
    clear(body, emptyState(system));
    return;
  }
  const seconds = range;
  const perSec = (n, ms) => n / (ms / 1000);
  const totals = system.totals || {};
  const stages = stats.stages_avg_us || {};
  const stageSum = STAGES.reduce((a, [k]) => a + (stages[k] || 0), 0);
  const other = Math.max(0, (stats.avg_overhead_us || 0) - stageSum);
  const errorRate = stats.count ? stats.errors / stats.count : null;

  const kpis = h("div", {class: "grid kpis"},
    kpi("Requests", fmt.int(stats.count), `${fmt.rate(stats.count / seconds)} req/s average`, "kpi-requests"),
    kpi("Error rate", fmt.pct(errorRate), `${fmt.int(stats.errors)} failed`, "kpi-errors"),
    kpi("Latency p50", fmt.ms(stats.p50_latency_ms), `avg ${fmt.ms(stats.avg_latency_ms)}`, "kpi-p50"),
    kpi("Latency p99", fmt.ms(stats.p99_latency_ms), stats.percentiles.sampled ? `from a sample of ${fmt.int(stats.percentiles.sample_size)}` : "exact", "kpi-p99"),
    kpi("Cost", fmt.cost(stats.cost ?? null), costNote(stats), "kpi-cost"),
    kpi("Tokens", fmt.compact(stats.total_tokens), `${fmt.compact(stats.prompt_tokens)} in · ${fmt.compact(stats.completion_tokens)} out`, "kpi-tokens"),
    kpi("Gateway overhead", fmt.us(stats.avg_overhead_us), "average own time per request, streams included (no upstream or client waits)", "kpi-overhead"),
    kpi("Dropped log records", fmt.int(totals.log_dropped ?? 0), `${fmt.int(totals.log_pending ?? 0)} pending write · ${fmt.int(totals.log_failed ?? 0)} refused by the database`, "kpi-dropped"),
  );

  const buckets = hist.series;
  const bucketMs = hist.bucket_ms;
  const providers = Object.keys(hist.by_provider);
  const byProvider = (fn) => providers.map((p, k) => ({name: p, color: PALETTE[k % PALETTE.length],
    points: hist.by_provider[p].map((b) => [b.t, fn(b)])}));

  const throughput = panel("Requests per second, by provider",
    timeChart(byProvider((b) => perSec(b.count, bucketMs)), {format: fmt.rate}));
  const latency = panel("Latency (p50 / p99)", timeChart([
    {name: "p50", points: buckets.map((b) => [b.t, b.p50_latency_ms])},
    {name: "p99", color: "var(--c3)", points: buckets.map((b) => [b.t, b.p99_latency_ms])},
  ], {format: (v) => fmt.ms(v)}));
  const errorPct = (b) => (b.count ? (100 * b.errors) / b.count : null);
  const errors = panel("Error rate, overall and by provider", timeChart([
    {name: "all", color: "var(--err)", points: buckets.map((b) => [b.t, errorPct(b)])},
    ...byProvider(errorPct).map((sr, k) => ({...sr, color: PALETTE[(k + 1) % PALETTE.length]})),
  ], {format: (v) => `${fmt.rate(v)}%`}));
  const tokens = panel("Tokens, by provider",
    timeChart(byProvider((b) => b.tokens), {kind: "bar", stacked: true}));
  // Cost: per time bucket, and split by provider (the stats' roll-up of its per-model sums).
  const costSeries = buckets.map((b) => [b.t, b.cost ?? 0]);
  const costByProvider = (stats.by_provider || []).filter((p) => p.cost);
  const costBar = stackBar(costByProvider.map((p, k) => ({name: p.provider || "–", value: p.cost, color: PALETTE[k % PALETTE.length]})), fmt.cost);
  costBar.dataset.testid = "cost-by-provider";
  const cost = panel("Cost (US dollars), over time and by provider",
    timeChart([{name: "cost", color: "var(--c5)", points: costSeries}], {kind: "bar", format: fmt.cost, height: 140}),
    costByProvider.length ? costBar : h("p", {class: "hint"}, "No priced requests in this range: a model missing from the catalog (and without pricing_overrides) costs nothing here."));
  const history = system.history || [];
  const dropped = panel("Dropped log records (total) and pending writes",
    history.length > 1
      ? timeChart([
        {name: "dropped", color: "var(--err)", points: history.map((p) => [p.t, p.log_dropped])},
        {name: "pending", color: "var(--c2)", points: history.map((p) => [p.t, p.log_pending])},
        {name: "refused", color: "var(--c3)", points: history.map((p) => [p.t, p.log_failed ?? 0])},
      ], {format: fmt.compact})
      : h("p", {class: "hint"}, "Sampled every 5 seconds since the gateway started; a line appears after the first samples."),
    h("p", {class: "hint"}, `${fmt.int(totals.log_written ?? 0)} written · ${fmt.int(totals.log_dropped ?? 0)} dropped (${fmt.int(totals.log_failed ?? 0)} refused by the database) across ${totals.workers ?? 1} worker(s)`));
  const overhead = panel("Gateway overhead per request, by stage",
    stackBar([...STAGES.map(([k, name], i) => ({name, value: stages[k] || 0, color: PALETTE[i]})),
      {name: "Other (routing, hooks, I/O)", value: other, color: "var(--c7)"}]),
    h("p", {class: "hint"}, `Average ${fmt.us(stats.avg_overhead_us)} in the gateway vs ${fmt.us(stages.upstream)} waiting on providers.`),
    timeChart([{name: "avg overhead", color: "var(--c6)", points: buckets.map((b) => [b.t, b.avg_overhead_us])}],
      {format: fmt.us, height: 140}));

  const table = h("table", {class: "data", "data-testid": "provider-table"},
    h("thead", {}, h("tr", {}, ["Provider", "Model", "Requests", "Success", "Avg latency", "Overhead", "Tokens", "Cost"].map((t, i) => h("th", {class: i > 1 ? "num" : ""}, t)))),
    h("tbody", {}, stats.by_model.map((g) => h("tr", {onclick: () => { location.hash = `#/logs?provider=${encodeURIComponent(g.provider || "")}&model=${encodeURIComponent(g.model || "")}`; }},
      h("td", {}, g.provider || "–"), h("td", {}, g.model || "–"), h("td", {class: "num"}, fmt.int(g.count)),
      h("td", {class: "num"}, fmt.pct(g.success_rate)), h("td", {class: "num"}, fmt.ms(g.avg_latency_ms)),
      h("td", {class: "num"}, fmt.us(g.avg_overhead_us)), h("td", {class: "num"}, fmt.compact(g.total_tokens)),
      h("td", {class: "num", "data-testid": "model-cost"}, fmt.cost(g.cost ?? null))))));

  clear(body, kpis, h("div", {class: "grid charts"}, throughput, latency, errors, tokens, cost, overhead, dropped),
    h("div", {style: "height:1rem"}), panel("By provider and model", h("div", {class: "table-wrap"}, table)));
}
