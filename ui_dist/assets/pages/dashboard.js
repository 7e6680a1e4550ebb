// Dashboard: throughput, latency, errors, tokens, cost and dropped log records over time, by provider,
// and where the gateway's own time goes (per-stage overhead). Refreshes every 5 seconds.

import {get, query} from "../api.js";
import {PALETTE, stackBar, timeChart} from "../chart.js";
import {GOV, logsFilterByKey, optional} from "../gov.js";
import {RANGES, clear, fmt, h} from "../util.js";

const REFRESH_MS = 5000;
const STAGES = [
  ["queue_wait", "Queue wait"], ["key_select", "Key selection"], ["build", "Build"], ["encode", "Encode"],
  ["parse", "Parse"],
];
let timer = null;
let range = Number(sessionStorage.getItem("bifrost-range")) || 900;
// Narrow every number to one virtual key or team (where the log API filters by them).
const scope = {virtual_key_id: "", team_id: ""};

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
  const [byKey, vkList, teamList] = await Promise.all([
    logsFilterByKey(),
    optional(`${GOV}/virtual-keys`).catch(() => null),
    optional(`${GOV}/teams`).catch(() => null),
  ]);
  const keys = (vkList && vkList.virtual_keys) || [];
  const teams = (teamList && teamList.teams) || [];
  const keyName = new Map(keys.map((k) => [k.id, k.name || k.id]));
  const scopeSelect = (key, label, pairs) => {
    const sel = h("select", {"aria-label": label, "data-scope": key, onchange: () => { scope[key] = sel.value; refresh(); }},
      h("option", {value: ""}, label), pairs.map(([v, t]) => h("option", {value: v}, t)));
    sel.value = pairs.some(([v]) => v === scope[key]) ? scope[key] : "";
    scope[key] = sel.value;
    return sel;
  };
  const scopeBox = byKey && (keys.length || teams.length) ? h("div", {class: "toolbar"},
    keys.length ? scopeSelect("virtual_key_id", "All virtual keys", keys.map((k) => [k.id, k.name || k.id])) : null,
    teams.length ? scopeSelect("team_id", "All teams", teams.map((t) => [t.id, t.name || t.id])) : null) : null;
  if (!scopeBox) Object.assign(scope, {virtual_key_id: "", team_id: ""});
  root.append(h("div", {class: "page-head"}, h("h1", {}, "Dashboard"), h("div", {class: "toolbar"}, scopeBox, picker)), body);
  const refresh = async () => {
    try {
      const filters = {last: range, ...scope};
      const [stats, hist, system] = await Promise.all([
        get(`/api/logs/stats${query({...filters, group_by: byKey ? "virtual_key" : ""})}`).catch((e) => (e.status === 404 ? null : Promise.reject(e))),
        get(`/api/logs/histogram${query({...histogramWindow(range), virtual_key_id: scope.virtual_key_id, team_id: scope.team_id})}`).catch((e) => (e.status === 404 ? null : Promise.reject(e))),
        get("/api/system"),
      ]);
      render(body, stats, hist, system, keyName);
    } catch (err) {
      clear(body, h("div", {class: "error-box"}, `Could not load the dashboard: ${err.message}`));
    }
  };
  unmount();
  await refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

// The histogram's window and buckets. Up to a day: the last `range` seconds in 60 buckets. Longer: whole
// hours, ending at the next hour, in 3-hour buckets, so a PostgreSQL log answers it from its hourly rollup
// alone instead of reading every row of the hours a bucket edge would cut (docs/logs-store.md).
const HOUR_MS = 3600 * 1000;

function histogramWindow(seconds) {
  if (seconds <= 86400) return {last: seconds, buckets: 60};
  const until = Math.ceil(Date.now() / HOUR_MS) * HOUR_MS;
  return {since: until - seconds * 1000, until, buckets: Math.round(seconds / (3 * 3600))};
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

/** Requests, tokens and cost per virtual key (from stats?group_by=virtual_key), or null without keys. */
function keyPanel(stats, keyName) {
  const groups = stats.by_virtual_key || [];
  if (!groups.some((g) => g.virtual_key_id)) return null;
  const table = h("table", {class: "data", "data-testid": "vk-cost-table"},
    h("thead", {}, h("tr", {}, ["Virtual key", "Requests", "Success", "Tokens", "Cost"].map((t, i) => h("th", {class: i ? "num" : ""}, t)))),
    h("tbody", {}, groups.map((g) => h("tr", {"data-vk": g.virtual_key_id || "", onclick: g.virtual_key_id ? () => { location.hash = `#/logs?virtual_key_id=${encodeURIComponent(g.virtual_key_id)}`; } : null},
      h("td", {}, g.virtual_key_id ? keyName.get(g.virtual_key_id) || g.virtual_key_id : h("span", {class: "hint"}, "no virtual key")),
      h("td", {class: "num"}, fmt.int(g.count)), h("td", {class: "num"}, fmt.pct(g.count ? g.success / g.count : null)),
      h("td", {class: "num"}, fmt.compact(g.total_tokens)), h("td", {class: "num", "data-testid": "vk-cost"}, fmt.cost(g.cost ?? null))))));
  return panel("By virtual key", h("div", {class: "table-wrap"}, table));
}

function render(body, stats, hist, system, keyName = new Map()) {
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
    h("div", {style: "height:1rem"}), panel("By provider and model", h("div", {class: "table-wrap"}, table)),
    keyPanel(stats, keyName) ? [h("div", {style: "height:1rem"}), keyPanel(stats, keyName)] : null);
}
