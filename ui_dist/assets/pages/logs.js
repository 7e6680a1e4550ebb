// Logs: a live table (new records arrive over /ws), filters and search, pages, and a detail drawer with
// the request, the response, every attempt (retries, fallbacks, keys) and a timing waterfall. Each row
// shows its cost and the virtual key that made it; rows filter by virtual key and by team. Rows where a
// guardrail rule blocked or redacted are marked; the drawer lists every rule that acted (never what it
// matched); rows filter by guardrail rule and action.

import {get, live, query} from "../api.js";
import {PALETTE} from "../chart.js";
import {GOV, logsFilterByKey, optional} from "../gov.js";
import {RANGES, clear, debounce, fmt, h, pretty, statusBadge} from "../util.js";

const LIMIT = 50;
let unsubscribe = null;

export function unmount() {
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
  closeDrawer();
}

export async function mount(root, params = {}) {
  const state = {
    f: {q: "", provider: params.provider || "", model: params.model || "", status: params.status || "", stream: "",
      min_latency_ms: "", max_latency_ms: "", last: params.last || "",
      virtual_key_id: params.virtual_key_id || "", team_id: params.team_id || "",
      guardrail: params.guardrail || "", guardrail_action: params.guardrail_action || ""},
    sort: "ts", order: "desc", offset: 0, items: [], total: 0, totalExact: true, hasMore: false, live: true,
  };
  const [facets, vkList, teamList, serverFilters] = await Promise.all([
    get("/api/logs/facets").catch(() => ({providers: [], models: []})),
    optional(`${GOV}/virtual-keys`).catch(() => null),
    optional(`${GOV}/teams`).catch(() => null),
    logFilters(),
  ]);
  // Key names for the table, and each team's keys: the page filters by them itself when this gateway's
  // /api/logs does not (yet) take the virtual_key_id / team_id filters.
  const keys = (vkList && vkList.virtual_keys) || [];
  state.keyName = new Map(keys.map((k) => [k.id, k.name || k.id]));
  state.teamKeys = new Map();
  for (const k of keys) if (k.team_id) state.teamKeys.set(k.team_id, [...(state.teamKeys.get(k.team_id) || []), k.id]);
  state.serverFilters = serverFilters;
  const tableBody = h("tbody", {"data-testid": "log-rows"});
  const info = h("span", {class: "hint", "data-testid": "log-count"});
  const empty = h("div");
  const prev = h("button", {type: "button", onclick: () => { state.offset = Math.max(0, state.offset - LIMIT); load(); }}, "← Newer");
  const next = h("button", {type: "button", onclick: () => { state.offset += LIMIT; load(); }}, "Older →");
  const liveBox = h("input", {type: "checkbox", checked: true, "data-testid": "live-toggle",
    onchange: (e) => { state.live = e.target.checked; }});

  const onFilter = debounce(() => { state.offset = 0; load(); }, 250);
  // Rule names for the guardrail filter's suggestions: those of the rows seen (loaded or live).
  const ruleList = h("datalist", {id: "guardrail-rules"});
  const knownRules = new Set(state.f.guardrail ? [state.f.guardrail] : []);
  const noteRules = (rows) => {
    let added = false;
    for (const r of rows) for (const g of guardrailsOf(r)) if (g.rule && !knownRules.has(g.rule)) { knownRules.add(g.rule); added = true; }
    if (added) clear(ruleList, [...knownRules].sort().map((rule) => h("option", {value: rule})));
  };
  const field = (key, el) => {
    el.value = state.f[key];
    el.addEventListener(el.tagName === "SELECT" ? "change" : "input", () => { state.f[key] = el.value; onFilter(); });
    el.dataset.filter = key;
    return el;
  };
  const select = (key, label, options) => field(key, h("select", {"aria-label": label},
    h("option", {value: ""}, label), options.map(([v, t]) => h("option", {value: v}, t))));
  const filters = h("div", {class: "panel toolbar", style: "margin-bottom:1rem"},
    field("q", h("input", {type: "search", placeholder: "Search request, response, error or id…", style: "flex:1 1 16rem",
      "data-testid": "log-search"})),
    select("provider", "All providers", [...new Set([...facets.providers, state.f.provider].filter(Boolean))].map((p) => [p, p])),
    select("model", "All models", [...new Set([...facets.models, state.f.model].filter(Boolean))].map((m) => [m, m])),
    select("status", "Any status", [["success", "Success"], ["error", "Errors"], ["4xx", "4xx"], ["5xx", "5xx"], ["429", "429"]]),
    select("stream", "Stream or not", [["true", "Streaming"], ["false", "Not streaming"]]),
    field("min_latency_ms", h("input", {type: "number", min: 0, placeholder: "min ms", style: "width:6.5rem", "aria-label": "Minimum latency (ms)"})),
    field("max_latency_ms", h("input", {type: "number", min: 0, placeholder: "max ms", style: "width:6.5rem", "aria-label": "Maximum latency (ms)"})),
    select("last", "All time", RANGES.map(([label, seconds]) => [String(seconds), `Last ${label}`])),
    select("virtual_key_id", "Any virtual key", [...new Set([...keys.map((k) => k.id), state.f.virtual_key_id].filter(Boolean))]
      .map((id) => [id, state.keyName.get(id) || id])),
    teamList && teamList.teams && teamList.teams.length
      ? select("team_id", "Any team", teamList.teams.map((t) => [t.id, t.name || t.id])) : null,
    field("guardrail", h("input", {type: "search", placeholder: "Guardrail rule", list: "guardrail-rules", maxlength: 256,
      style: "width:10rem", "aria-label": "Guardrail rule", "data-testid": "guardrail-filter"})),
    select("guardrail_action", "Any guardrail action", [["block", "Blocked"], ["redact", "Redacted"], ["flag", "Flagged"]]),
    ruleList,
  );
  const localHint = h("div", {class: "hint", "data-testid": "local-filter-hint"});
  const sortHead = (label, key, cls = "") => h("th", {class: cls, style: key ? "cursor:pointer" : "", onclick: key ? () => {
    if (state.sort === key) state.order = state.order === "desc" ? "asc" : "desc"; else { state.sort = key; state.order = "desc"; }
    state.offset = 0; load();
  } : null}, label, key && state.sort === key ? (state.order === "desc" ? " ↓" : " ↑") : "");
  const head = h("thead");
  const renderHead = () => clear(head, h("tr", {}, sortHead("Time", "ts"), sortHead("Status", "status"), h("th", {}, "Provider / model"),
    h("th", {}, "Endpoint"), h("th", {}, "Stream"), sortHead("Latency", "latency", "num"), sortHead("Overhead", "overhead", "num"),
    sortHead("Tokens", "tokens", "num"), h("th", {class: "num"}, "Cost"), h("th", {}, "Virtual key"), h("th", {}, "Request")));

  root.append(h("div", {class: "page-head"}, h("h1", {}, "Logs"),
    h("label", {class: "check"}, liveBox, "Live")), filters, localHint,
  h("div", {class: "panel"}, h("div", {class: "table-wrap"}, h("table", {class: "data"}, head, tableBody)), empty,
    h("div", {class: "toolbar", style: "justify-content:space-between;margin-top:.75rem"}, info, h("div", {class: "toolbar"}, prev, next))));

  const row = (r, fresh = false) => h("tr", {class: fresh ? "fresh" : "", "data-id": r.id, onclick: () => openDrawer(r.id)},
    h("td", {title: fmt.datetime(r.ts_ms)}, fmt.time(r.ts_ms)), h("td", {}, statusBadge(r.status), guardrailMark(r)),
    h("td", {}, `${r.provider || "–"} / ${r.model || "–"}`), h("td", {}, r.endpoint), h("td", {}, r.stream ? "yes" : ""),
    h("td", {class: "num"}, fmt.ms(r.latency_us / 1000)), h("td", {class: "num"}, fmt.us(r.overhead_us)),
    h("td", {class: "num"}, r.total_tokens ?? "–"),
    h("td", {class: "num", "data-testid": "row-cost"}, fmt.cost(r.cost ?? null)),
    h("td", {"data-testid": "row-vk", title: r.virtual_key_id || ""}, r.virtual_key_id ? state.keyName.get(r.virtual_key_id) || r.virtual_key_id : "–"),
    h("td", {class: "mono", style: "max-width:22rem;overflow:hidden;text-overflow:ellipsis"}, preview(r)));

  // A store may estimate large totals (PostgreSQL past its cap says `total_exact: false`): say "about".
  const totalText = () => state.total === null ? "many"
    : state.totalExact ? fmt.int(state.total) : `about ${fmt.int(state.total)}`;
  const paint = () => {
    renderHead();
    clear(tableBody, state.items.map((r) => row(r)));
    const filtered = Object.values(state.f).some(Boolean);
    clear(empty, state.items.length ? null : h("div", {class: "empty", "data-testid": "empty-logs"},
      h("h2", {}, filtered ? "No requests match these filters" : "No requests logged yet"),
      h("p", {}, filtered ? "Clear a filter or widen the time range." : "Requests appear here live as they finish. Try “Send test request” on the ",
        filtered ? null : h("a", {href: "#/providers"}, "Providers"), filtered ? null : " page.")));
    const from = state.items.length ? state.offset + 1 : 0;
    info.textContent = `${fmt.int(from)}–${fmt.int(state.offset + state.items.length)} of ${totalText()}`;
    prev.disabled = state.offset === 0;
    next.disabled = !state.hasMore;
  };

  let arrivedWhileLoading = null;
  async function load() {
    arrivedWhileLoading = [];
    try {
      const page = await get(`/api/logs${query({...serverSide(state), sort: state.sort, order: state.order, limit: LIMIT, offset: state.offset})}`);
      const local = localOnly(state);
      if (local) {
        // This gateway ignores the key/team filter: keep this page's matching rows and say so.
        page.items = page.items.filter((r) => matches(r, local, state));
        page.total = null;
      }
      clear(localHint, local ? "This gateway's log API does not filter by virtual key or team: showing the matching rows of each page only." : null);
      // Records pushed while the query ran may be newer than what it saw: keep them on top.
      const seen = new Set(page.items.map((r) => r.id));
      const extra = state.offset === 0 && state.sort === "ts" && state.order === "desc"
        ? arrivedWhileLoading.filter((r) => !seen.has(r.id)) : [];
      arrivedWhileLoading = null;
      noteRules(page.items);
      Object.assign(state, {items: [...extra, ...page.items].slice(0, LIMIT), total: page.total === null ? null : page.total + extra.length,
        totalExact: page.total_exact !== false, hasMore: page.has_more});
      paint();
    } catch (err) {
      arrivedWhileLoading = null;
      clear(empty, h("div", {class: "error-box"}, err.message));
    }
  }

  const ensureOption = (key, value) => {
    const sel = filters.querySelector(`select[data-filter="${key}"]`);
    if (value && sel && ![...sel.options].some((o) => o.value === value)) sel.append(h("option", {value}, value));
  };
  unsubscribe = live.subscribe((items) => {
    for (const r of items) { ensureOption("provider", r.provider); ensureOption("model", r.model); }
    noteRules(items);
    if (!state.live || state.offset !== 0 || state.sort !== "ts" || state.order !== "desc") return;
    const fresh = items.filter((r) => matches(r, state.f, state)).reverse().map((r) => ({...r, input_preview: r.input}));
    if (!fresh.length) return;
    if (arrivedWhileLoading) arrivedWhileLoading.unshift(...fresh);
    state.items = [...fresh, ...state.items.filter((r) => !fresh.some((x) => x.id === r.id))].slice(0, LIMIT);
    if (state.total !== null) state.total += fresh.length;
    state.hasMore = state.hasMore || state.total > LIMIT;
    paint();
    for (const r of fresh) tableBody.querySelector(`tr[data-id="${CSS.escape(r.id)}"]`)?.classList.add("fresh");
  });
  renderHead();
  await load();
  if (params.id) openDrawer(params.id);
}

function preview(r) {
  const text = r.input_preview || "";
  try {
    const parsed = JSON.parse(text);
    const messages = Array.isArray(parsed) ? parsed : parsed.messages;
    if (Array.isArray(messages) && messages.length) {
      const last = messages[messages.length - 1];
      return typeof last.content === "string" ? last.content : JSON.stringify(last.content);
    }
  } catch { /* a trimmed or non-JSON body: show it as text */ }
  return text.slice(0, 120);
}

/** The key/team filters this gateway's GET /api/logs applies itself. */
async function logFilters() {
  return new Set(await logsFilterByKey() ? GOV_FILTERS : []);
}

const GOV_FILTERS = ["virtual_key_id", "team_id"];

/** The filters to send: the key/team ones only when the server takes them. */
function serverSide(state) {
  const f = {...state.f};
  for (const k of GOV_FILTERS) if (!state.serverFilters.has(k)) delete f[k];
  return f;
}

/** The key/team filters the page must apply itself (null when none). */
function localOnly(state) {
  const local = {};
  for (const k of GOV_FILTERS) if (state.f[k] && !state.serverFilters.has(k)) local[k] = state.f[k];
  return Object.keys(local).length ? local : null;
}

/** The guardrails entries of a row (a list; the column is null when no rule acted). */
function guardrailsOf(r) {
  return Array.isArray(r.guardrails) ? r.guardrails : [];
}

const STRONGER = {block: "blocked", redact: "redacted"};

/** A mark in the list for a row where a rule blocked or redacted (flags alone show in the detail only). */
function guardrailMark(r) {
  const fired = guardrailsOf(r);
  const acted = fired.find((g) => g.action === "block") || fired.find((g) => g.action === "redact");
  if (!acted) return null;
  const rules = fired.filter((g) => STRONGER[g.action]).map((g) => `${g.rule}: ${g.action}`).join(", ");
  return h("span", {class: `badge ${acted.action === "block" ? "err" : "warn"}`, style: "margin-left:.35rem",
    title: `Guardrails: ${rules}`, "data-testid": "row-guardrail", "data-action": acted.action}, STRONGER[acted.action]);
}

function matches(r, f, state) {
  if (f.virtual_key_id && r.virtual_key_id !== f.virtual_key_id) return false;
  if (f.team_id && !(state.teamKeys.get(f.team_id) || []).includes(r.virtual_key_id)) return false;
  if (f.provider && r.provider !== f.provider) return false;
  if (f.model && r.model !== f.model) return false;
  if (f.stream && String(!!r.stream) !== f.stream) return false;
  if (f.status) {
    const s = r.status;
    const ok = {success: s < 400, error: s >= 400, "4xx": s >= 400 && s < 500, "5xx": s >= 500 && s < 600}[f.status];
    if (ok === undefined ? String(s) !== f.status : !ok) return false;
  }
  if (f.guardrail || f.guardrail_action) {
    const action = f.guardrail_action.toLowerCase();
    if (!guardrailsOf(r).some((g) => (!f.guardrail || g.rule === f.guardrail.trim()) && (!action || g.action === action))) return false;
  }
  if (f.min_latency_ms && r.latency_us < Number(f.min_latency_ms) * 1000) return false;
  if (f.max_latency_ms && r.latency_us > Number(f.max_latency_ms) * 1000) return false;
  if (f.q) {
    const q = f.q.toLowerCase();
    const hay = `${r.id} ${r.input || ""} ${r.output || ""} ${r.error || ""}`.toLowerCase();
    if (!hay.includes(q)) return false;
  }
  return true;
}

// -- detail drawer -------------------------------------------------------------------------------------
let drawer = null;

function closeDrawer() {
  if (drawer) drawer.forEach((el) => el.remove());
  drawer = null;
  document.removeEventListener("keydown", onKey);
}

function onKey(event) { if (event.key === "Escape") closeDrawer(); }

async function openDrawer(id) {
  closeDrawer();
  const panel = h("aside", {class: "drawer", role: "dialog", "aria-label": "Request detail", "data-testid": "log-detail"},
    h("p", {class: "hint"}, "Loading…"));
  const backdrop = h("div", {class: "drawer-backdrop", onclick: closeDrawer});
  drawer = [backdrop, panel];
  document.body.append(backdrop, panel);
  document.addEventListener("keydown", onKey);
  try {
    const r = await get(`/api/logs/${encodeURIComponent(id)}`);
    clear(panel, detail(r));
  } catch (err) {
    clear(panel, h("button", {type: "button", onclick: closeDrawer}, "Close"), h("div", {class: "error-box"}, err.message));
  }
}

function detail(r) {
  const attempts = Array.isArray(r.attempts) ? r.attempts : [];
  return [
    h("header", {}, h("div", {}, h("h1", {}, statusBadge(r.status), " ", `${r.provider || "–"} / ${r.model || "–"}`),
      h("div", {class: "hint mono"}, r.id)), h("button", {type: "button", onclick: closeDrawer, "aria-label": "Close"}, "✕")),
    r.error ? h("div", {class: "error-box", "data-testid": "detail-error"}, `${r.error_type || "error"}: ${r.error}`) : null,
    h("h3", {}, "Summary"),
    h("dl", {class: "kv"},
      h("dt", {}, "Time"), h("dd", {}, fmt.datetime(r.ts_ms)),
      h("dt", {}, "Endpoint"), h("dd", {}, `${r.endpoint}${r.stream ? " (stream)" : ""} via ${r.ingress || "openai"}`),
      h("dt", {}, "Model requested"), h("dd", {}, r.model_requested || "–"),
      h("dt", {}, "Key"), h("dd", {}, r.key_name || "–"),
      h("dt", {}, "Virtual key"), h("dd", {"data-testid": "detail-vk"}, r.virtual_key_id || "–"),
      h("dt", {}, "Cost"), h("dd", {"data-testid": "detail-cost"}, r.cost === null || r.cost === undefined ? "– (not priced)" : fmt.cost(r.cost)),
      h("dt", {}, "Retries / fallback"), h("dd", {}, `${r.retries} retries · ${r.fallback_index ? `answered by fallback #${r.fallback_index}` : "primary target"}`),
      h("dt", {}, "Latency"), h("dd", {}, `${fmt.ms(r.latency_us / 1000)} total · ${fmt.us(r.overhead_us)} in the gateway`),
      h("dt", {}, "Tokens"), h("dd", {}, r.total_tokens === null ? "–" : `${r.prompt_tokens} in + ${r.completion_tokens} out = ${r.total_tokens}`)),
    guardrailsSection(r),
    h("h3", {}, "Timing"), waterfall(r),
    h("h3", {}, `Attempts (${attempts.length ? attempts.length : "first try succeeded"})`),
    attempts.length ? h("div", {class: "table-wrap"}, h("table", {class: "data", "data-testid": "attempts"},
      h("thead", {}, h("tr", {}, ["#", "Provider", "Model", "Key", "Status", "Error"].map((t) => h("th", {}, t)))),
      h("tbody", {}, attempts.map((a, i) => h("tr", {}, h("td", {}, i + 1), h("td", {}, a.provider || "–"), h("td", {}, a.model || "–"),
        h("td", {}, a.key || "–"), h("td", {}, a.status ? statusBadge(a.status) : "–"),
        h("td", {style: "white-space:normal"}, a.message || a.type || "")))))) : null,
    h("h3", {}, "Request"), h("pre", {class: "json", "data-testid": "detail-request"}, pretty(r.input) || "(content logging is off)"),
    h("h3", {}, "Response"), h("pre", {class: "json", "data-testid": "detail-response"}, pretty(r.output) || (r.error ? "(no response body)" : "(content logging is off)")),
  ];
}

/** What guardrails did: one line per rule that acted (the finding types and count, never the matched text). */
function guardrailsSection(r) {
  const fired = guardrailsOf(r);
  if (!fired.length) return null;
  return [
    h("h3", {}, "Guardrails"),
    h("div", {class: "table-wrap"}, h("table", {class: "data", "data-testid": "detail-guardrails"},
      h("thead", {}, h("tr", {}, ["Rule", "Provider", "Stage", "Action", "Types", "Count"].map((t) => h("th", {}, t)))),
      h("tbody", {}, fired.map((g) => h("tr", {"data-rule": g.rule || ""},
        h("td", {"data-testid": "guardrail-rule"}, g.rule || "–"),
        h("td", {}, g.provider || "–"),
        h("td", {}, g.stage || "–"),
        h("td", {"data-testid": "guardrail-action"},
          h("span", {class: `badge ${g.action === "block" ? "err" : g.action === "redact" ? "warn" : "muted"}`}, g.action || "–"),
          g.error ? h("span", {class: "hint", style: "margin-left:.35rem"}, `(${g.error})`) : null),
        h("td", {"data-testid": "guardrail-types"}, (g.types || []).join(", ") || "–"),
        h("td", {class: "num"}, g.count ?? "–")))))),
  ];
}

function waterfall(r) {
  const total = Math.max(1, r.latency_us);
  const stages = [["Queue wait", r.queue_wait_us], ["Key selection", r.key_select_us], ["Build", r.build_us],
    ["Encode", r.encode_us], ["Upstream", r.upstream_us], ["Parse", r.parse_us]];
  const known = stages.reduce((a, [, v]) => a + (v || 0), 0);
  stages.push(["Other", Math.max(0, r.latency_us - known)]);
  let offset = 0;
  return h("div", {class: "waterfall", "data-testid": "waterfall"}, stages.map(([name, us], i) => {
    const left = (100 * offset) / total;
    offset += us || 0;
    return h("div", {class: "wf-row"}, h("span", {}, name),
      h("div", {class: "wf-track"}, h("div", {class: "wf-bar", style: `left:${left}%;width:${(100 * (us || 0)) / total}%;background:${PALETTE[i % PALETTE.length]}`})),
      h("span", {class: "num mono"}, fmt.us(us || 0)));
  }));
}
