// Cache: response caching (issue 12) on or off with one switch, its main settings, what it saved (hit rate,
// dollars, provider time, tokens, entries and bytes), and the entries: search, pages, the stored answer in
// a drawer, delete one, clear all. Everything goes through /api/cache (docs/caching.md); settings are
// written to config.json's `plugins` like every admin edit. Refreshes every 5 seconds.

import {ApiError, del, get, put, query} from "../api.js";
import {confirmButton} from "../gov.js";
import {clear, debounce, fmt, h, pretty, toast} from "../util.js";

const REFRESH_MS = 5000;
const LIMIT = 25;
// What the switch writes when config.json has no settings yet (the server has the same defaults): exact
// matching, five minutes, and a default cache key so every request is cached without a header.
const DEFAULTS = {dimension: 1, ttl: 300, default_cache_key: "default"};
let timer = null;

export function unmount() {
  clearInterval(timer);
  timer = null;
  closeDrawer();
}

export async function mount(root) {
  const state = {search: "", offset: 0, config: null, stats: null};
  const switchBox = h("input", {type: "checkbox", role: "switch", "data-testid": "cache-switch", "aria-label": "Response caching"});
  const switchLabel = h("strong", {"data-testid": "cache-state"}, "…");
  const notice = h("div");
  const cards = h("div", {class: "grid kpis", "data-testid": "cache-cards"});
  const settingsSlot = h("div");
  const listSlot = h("div");
  const pager = h("div", {class: "toolbar"});
  const search = h("input", {type: "search", placeholder: "Search prompt, model or cache key…", maxlength: 200,
    "aria-label": "Search cache entries", "data-testid": "cache-search",
    oninput: debounce((e) => { state.search = e.target.value; state.offset = 0; loadEntries(); })});

  const loadStats = async () => {
    state.stats = await get("/api/cache/stats");
    clear(cards, statCards(state.stats));
  };
  const loadConfig = async () => {
    state.config = await get("/api/cache/config");
    switchBox.checked = state.config.enabled;
    switchLabel.textContent = state.config.enabled ? "On" : "Off";
    clear(notice, state.config.restart_required
      ? h("div", {class: "ok-box", "data-testid": "cache-restart"}, state.config.enabled
        ? "Saved to config.json. This gateway starts caching at its next start."
        : "Saved to config.json. This gateway stops caching at its next start.")
      : null,
    (state.config.warnings || []).length ? h("div", {class: "error-box"}, state.config.warnings.join("\n")) : null);
    clear(settingsSlot, settingsForm(state.config, save));
  };
  const loadEntries = async () => {
    if (listSlot.querySelector('[data-testid="confirm-yes"]')) return; // never repaint under an open confirmation
    const r = await get(`/api/cache/entries${query({search: state.search, limit: LIMIT, offset: state.offset})}`);
    clear(listSlot, entriesTable(r, state, {refresh, remove}));
    const first = r.total_count ? r.offset + 1 : 0;
    const last = r.offset + r.count;
    clear(pager,
      h("span", {class: "hint", "data-testid": "cache-page"}, `${fmt.int(first)}–${fmt.int(last)} of ${fmt.int(r.total_count)}`),
      h("button", {type: "button", disabled: r.offset === 0, "data-testid": "cache-prev",
        onclick: () => { state.offset = Math.max(0, state.offset - LIMIT); loadEntries(); }}, "Previous"),
      h("button", {type: "button", disabled: last >= r.total_count, "data-testid": "cache-next",
        onclick: () => { state.offset += LIMIT; loadEntries(); }}, "Next"));
  };
  const refresh = async () => {
    try {
      await Promise.all([loadStats(), loadEntries()]);
    } catch (err) {
      clear(cards, h("div", {class: "error-box"}, `Could not load the cache: ${err.message}`));
    }
  };
  const remove = async (entry) => {
    try {
      await del(`/api/cache/clear/${encodeURIComponent(entry.id)}`);
      toast("Cache entry deleted");
    } catch (err) { toast(err.message, true); }
    await refresh();
  };
  // PUT /api/cache/config; a field the config loader refuses is marked by its path (plugins[i].config.<field>).
  async function save(body, form) {
    for (const el of (form || root).querySelectorAll(".invalid")) el.classList.remove("invalid");
    try {
      await put("/api/cache/config", body);
      toast(body.enabled ? "Caching on: saved to config.json" : "Caching off: saved to config.json");
      await loadConfig();
      await refresh();
      return null;
    } catch (err) {
      const field = err instanceof ApiError && err.param ? err.param.replace(/^plugins\[\d+\]\.config\./, "") : "";
      const input = form && field ? form.querySelector(`[data-field="${CSS.escape(field)}"]`) : null;
      if (input) input.classList.add("invalid");
      return err.message;
    }
  }
  switchBox.addEventListener("change", async () => {
    const enabled = switchBox.checked;
    const config = state.config && Object.keys(state.config.config || {}).length ? state.config.config : DEFAULTS;
    switchBox.disabled = true;
    const problem = await save({enabled, config});
    switchBox.disabled = false;
    if (problem) { switchBox.checked = !enabled; toast(problem, true); }
  });

  const clearAll = confirmButton("Clear all", "Every cached answer is removed.", async () => {
    try {
      const r = await del("/api/cache/clear");
      toast(`Removed ${fmt.int(r.deleted)} cache entr${r.deleted === 1 ? "y" : "ies"}`);
    } catch (err) { toast(err.message, true); }
    await refresh();
  }, "cache-clear");

  root.append(
    h("div", {class: "page-head"}, h("h1", {}, "Cache"),
      h("div", {class: "toolbar"}, h("label", {class: "check switch"}, switchBox, h("span", {}, "Response caching "), switchLabel),
        h("button", {type: "button", "data-testid": "cache-refresh", onclick: refresh}, "Refresh"))),
    h("p", {class: "hint", style: "margin-top:-.5rem"},
      "A repeated request is answered from the cache instead of the provider: no cost, no wait. The switch turns on exact matching "
      + "with a 5-minute TTL and the default cache key “default”, so every chat, completion and embedding request is cached without "
      + "any header; clients can still send x-bf-cache-key (a namespace), x-bf-cache-ttl, x-bf-cache-type or x-bf-cache-no-store. "
      + "An entry answers only requests of the virtual key that stored it."),
    notice, cards, settingsSlot,
    h("section", {class: "panel"},
      h("div", {class: "page-head", style: "margin-bottom:.5rem"}, h("h2", {style: "margin:0"}, "Entries"),
        h("div", {class: "toolbar"}, search, pager, clearAll)),
      listSlot));
  unmount();
  try {
    await loadConfig();
  } catch (err) {
    clear(settingsSlot, h("div", {class: "error-box"}, `Could not read the cache settings: ${err.message}`));
  }
  await refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

function kpi(label, value, sub, testid) {
  return h("div", {class: "panel kpi", "data-testid": testid}, h("div", {class: "label"}, label),
    h("div", {class: "value"}, value), sub ? h("div", {class: "sub"}, sub) : null);
}

function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KB", "MB", "GB"];
  const i = Math.min(units.length - 1, Math.floor(Math.log(n) / Math.log(1024)));
  return `${(n / 1024 ** i).toFixed(i ? 1 : 0)} ${units[i]}`;
}

function statCards(s) {
  if (!s.enabled) {
    return h("div", {class: "panel empty", "data-testid": "cache-off", style: "grid-column:1/-1"},
      h("h2", {}, "Caching is off"),
      h("p", {}, "Turn on the switch above: nothing else needs to run (entries are kept in the gateway's app directory)."));
  }
  const saved = s.saved;
  const lookups = [["direct", "exact"], ["semantic", "semantic"]]
    .filter(([mode]) => s.lookup_ms_avg[mode] !== null)
    .map(([mode, label]) => `${label} lookup ${fmt.ms(s.lookup_ms_avg[mode])}`).join(" · ");
  return [
    kpi("Hit rate", fmt.pct(s.hit_rate), `${fmt.int(s.hits.total)} hit${s.hits.total === 1 ? "" : "s"} of ${fmt.int(s.requests)} requests`
      + (s.hits.semantic ? ` (${fmt.int(s.hits.semantic)} semantic)` : ""), "cache-hit-rate"),
    kpi("Money saved", fmt.cost(saved.cost), "what the hits would have cost", "cache-saved-cost"),
    kpi("Time saved", fmt.ms(saved.upstream_seconds * 1000), lookups || "provider time not waited for", "cache-saved-time"),
    kpi("Tokens saved", fmt.compact(saved.prompt_tokens + saved.completion_tokens),
      `${fmt.int(saved.prompt_tokens)} prompt · ${fmt.int(saved.completion_tokens)} completion`, "cache-saved-tokens"),
    kpi("Entries", fmt.int(s.entries), `${bytes(s.bytes)} · ${fmt.int(s.evicted)} evicted · ${fmt.int(s.expired)} expired`
      + (s.coalesced ? ` · ${fmt.int(s.coalesced)} coalesced` : ""), "cache-entries-card"),
  ];
}

// -- settings ------------------------------------------------------------------------------------------
function settingsForm(view, save) {
  const c = {...DEFAULTS, ...(view.effective || {}), ...(view.config || {})};
  const semantic = !!c.provider;
  const errorBox = h("div");
  const field = (name, label, hint, attrs = {}) => h("label", {class: "field"}, h("span", {}, label),
    h("input", {"data-field": name, value: c[name] ?? "", ...attrs}), hint ? h("div", {class: "hint"}, hint) : null);
  const mode = h("select", {"data-field": "mode", "aria-label": "Matching"},
    h("option", {value: "direct"}, "Exact (a hash of the request)"),
    h("option", {value: "semantic"}, "Semantic (similar prompts, via an embedding model)"));
  mode.value = semantic ? "semantic" : "direct";
  const semanticBox = h("div", {class: "form-grid cache-form", style: "margin-top:.75rem"},
    field("provider", "Embedding provider", "A provider configured on this gateway (e.g. openai, or mock for a test embedding)"),
    field("embedding_model", "Embedding model", "e.g. text-embedding-3-small"),
    field("dimension", "Dimension", "The embedding's length", {type: "number", min: 2, step: 1}),
    field("threshold", "Similarity threshold", "0 to 1 (cosine); default 0.8", {type: "number", min: 0, max: 1, step: "any"}));
  const showMode = () => { semanticBox.style.display = mode.value === "semantic" ? "" : "none"; };
  mode.addEventListener("change", showMode);
  showMode();
  // novalidate: the hidden semantic fields must not block saving exact mode; the server checks every field.
  const form = h("form", {class: "panel", "data-testid": "cache-settings", novalidate: true, style: "margin-bottom:1rem", onsubmit: async (event) => {
    event.preventDefault();
    clear(errorBox);
    const val = (name) => form.querySelector(`[data-field="${name}"]`).value.trim();
    const config = {...(view.config || {})};
    const ttl = val("ttl");
    config.ttl = /^\d+$/.test(ttl) ? Number(ttl) : ttl; // seconds, or Go's duration strings ("5m", "1h")
    if (val("default_cache_key")) config.default_cache_key = val("default_cache_key");
    else delete config.default_cache_key;
    const history = val("conversation_history_threshold");
    if (history !== "") config.conversation_history_threshold = Number(history);
    if (mode.value === "semantic") {
      config.provider = val("provider");
      config.embedding_model = val("embedding_model");
      config.dimension = Number(val("dimension") || 0);
      if (val("threshold") !== "") config.threshold = Number(val("threshold"));
    } else {
      delete config.provider;
      delete config.embedding_model;
      config.dimension = 1;
    }
    const problem = await save({enabled: view.enabled, config}, form);
    if (problem) clear(errorBox, h("div", {class: "error-box"}, problem));
  }},
  h("h2", {}, "Settings"),
  h("div", {class: "form-grid cache-form"},
    h("label", {class: "field"}, h("span", {}, "Matching"), mode),
    field("ttl", "TTL", "Seconds, or a duration such as 5m or 1h"),
    field("default_cache_key", "Default cache key", "Used when a request sends no x-bf-cache-key; empty: only requests with the header are cached"),
    field("conversation_history_threshold", "Max messages", "Requests with more messages are not cached (default 3)", {type: "number", min: 0, step: 1})),
  semanticBox, errorBox,
  h("div", {class: "card-actions"}, h("button", {type: "submit", class: "primary", "data-testid": "cache-save"}, "Save settings"),
    h("span", {class: "hint"}, view.enabled ? "" : "Saved settings apply when caching is on.")));
  return form;
}

// -- entries -------------------------------------------------------------------------------------------
function entriesTable(r, state, {refresh, remove}) {
  if (!r.enabled) {
    return h("div", {class: "empty", "data-testid": "cache-empty"}, h("h2", {}, "No entries: caching is off"));
  }
  if (!r.entries.length) {
    return h("div", {class: "empty", "data-testid": "cache-empty"},
      h("h2", {}, state.search ? "No entry matches this search" : "No cached answers yet"),
      state.search ? null : h("p", {}, "The first answer to a request is stored; the same request again is a hit."));
  }
  const rows = r.entries.map((e) => h("tr", {"data-entry": e.id, onclick: (event) => {
    if (!event.target.closest("button")) openDrawer(e.id, refresh);
  }},
  h("td", {}, fmt.datetime(e.created_at * 1000)),
  h("td", {class: "mono"}, e.cache_key, e.virtual_key_id ? h("div", {class: "hint"}, `key ${e.virtual_key_id}`) : null),
  h("td", {}, h("div", {class: "mono"}, `${e.provider}/${e.model}`), h("div", {class: "hint"}, e.endpoint)),
  h("td", {style: "white-space:normal;max-width:28rem", "data-testid": "cache-prompt"}, e.prompt_preview),
  h("td", {class: "num", "data-testid": "cache-hits"}, fmt.int(e.hits)),
  h("td", {class: "num"}, fmt.cost(e.cost)),
  h("td", {class: "num"}, bytes(e.size)),
  h("td", {}, e.expired ? h("span", {class: "badge muted"}, "expired") : fmt.time(e.expires_at * 1000)),
  h("td", {}, confirmButton("Delete", "Remove this answer?", () => remove(e), "cache-delete"))));
  return h("div", {class: "table-wrap"}, h("table", {class: "data", "data-testid": "cache-table"},
    h("thead", {}, h("tr", {}, ["Stored", "Cache key", "Model", "Prompt", "Hits", "Cost", "Size", "Expires", ""]
      .map((t, i) => h("th", {class: i >= 4 && i <= 6 ? "num" : null}, t)))),
    h("tbody", {}, rows)));
}

let drawer = null;

function closeDrawer() {
  if (drawer) drawer.forEach((el) => el.remove());
  drawer = null;
  document.removeEventListener("keydown", onKey);
}

function onKey(event) { if (event.key === "Escape") closeDrawer(); }

async function openDrawer(id, refresh) {
  closeDrawer();
  const panel = h("aside", {class: "drawer", role: "dialog", "aria-label": "Cache entry", "data-testid": "cache-detail"},
    h("p", {class: "hint"}, "Loading…"));
  const backdrop = h("div", {class: "drawer-backdrop", onclick: closeDrawer});
  drawer = [backdrop, panel];
  document.body.append(backdrop, panel);
  document.addEventListener("keydown", onKey);
  try {
    const {entry} = await get(`/api/cache/entries/${encodeURIComponent(id)}`);
    clear(panel, detail(entry, refresh));
  } catch (err) {
    clear(panel, h("button", {type: "button", onclick: closeDrawer}, "Close"), h("div", {class: "error-box"}, err.message));
  }
}

function answerText(response) {
  const choice = response && Array.isArray(response.choices) ? response.choices[0] : null;
  if (!choice) return null;
  if (choice.message && typeof choice.message.content === "string") return choice.message.content;
  return typeof choice.text === "string" ? choice.text : null;
}

function detail(e, refresh) {
  const answer = answerText(e.response);
  return [
    h("header", {}, h("div", {}, h("h2", {}, "Cache entry"), h("div", {class: "hint mono"}, e.id)),
      h("div", {class: "toolbar"},
        confirmButton("Delete", "Remove this answer?", async () => {
          try { await del(`/api/cache/clear/${encodeURIComponent(e.id)}`); toast("Cache entry deleted"); } catch (err) { toast(err.message, true); }
          closeDrawer();
          await refresh();
        }, "cache-detail-delete"),
        h("button", {type: "button", onclick: closeDrawer}, "Close"))),
    h("dl", {class: "kv", style: "margin:1rem 0"},
      h("dt", {}, "Model"), h("dd", {class: "mono"}, `${e.provider}/${e.model} (${e.endpoint})`),
      h("dt", {}, "Cache key"), h("dd", {class: "mono"}, e.cache_key),
      e.virtual_key_id ? [h("dt", {}, "Virtual key"), h("dd", {class: "mono"}, e.virtual_key_id)] : null,
      h("dt", {}, "Stored"), h("dd", {}, fmt.datetime(e.created_at * 1000)),
      h("dt", {}, "Expires"), h("dd", {}, fmt.datetime(e.expires_at * 1000)),
      h("dt", {}, "Hits"), h("dd", {}, `${fmt.int(e.hits)}${e.last_hit_at ? `, last ${fmt.datetime(e.last_hit_at * 1000)}` : ""}`),
      h("dt", {}, "Saves per hit"), h("dd", {}, `${fmt.cost(e.cost)} · ${fmt.int(e.prompt_tokens + e.completion_tokens)} tokens · ${fmt.ms(e.upstream_ms)}`),
      h("dt", {}, "Size"), h("dd", {}, bytes(e.size))),
    h("h3", {}, "Prompt"), h("pre", {class: "json", "data-testid": "cache-detail-prompt"}, e.prompt_text),
    answer !== null ? [h("h3", {}, "Answer"), h("pre", {class: "json", "data-testid": "cache-detail-answer"}, answer)] : null,
    h("h3", {}, "Stored response"), h("pre", {class: "json"}, pretty(e.response)),
  ];
}
