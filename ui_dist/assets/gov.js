// Shared by the governance pages (Virtual Keys, Teams, Customers): optional reads (a route this gateway
// does not serve is "not available", not a broken page), budgets and rate limits normalised from the
// shapes the API may give (Go Bifrost embeds `budget` / `budgets[]` / `rate_limit` objects; ids are
// looked up in the budgets and rate-limits lists), usage bars, the secret-shown-once box and a
// two-step inline confirmation (no native dialogs: they block the page and hide from screen readers).

import {ApiError, get} from "./api.js";
import {clear, fmt, h} from "./util.js";

export const GOV = "/api/governance";

/** GET a list route; null when this gateway does not have it (404/405), so the page can say so. */
export async function optional(path) {
  try {
    return await get(path);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) return null;
    throw err;
  }
}

let logFilterProbe = null;

/** Whether this gateway's log API (list, stats, histogram) filters by `virtual_key_id` / `team_id`.
 * An older one ignores unknown parameters, which would show unfiltered numbers as filtered ones; a
 * newer one checks `team_id` against the configured teams, so a made-up team answers 400 naming it. */
export function logsFilterByKey() {
  if (!logFilterProbe) {
    logFilterProbe = get("/api/logs?limit=1&team_id=bifrost-ui-capability-probe").then(() => false, (err) => err instanceof ApiError && err.param === "team_id");
  }
  return logFilterProbe;
}

/** The lists every governance page needs, each null when its route is missing on this gateway. */
export async function loadGovernance() {
  const [keys, teams, customers, budgets, rateLimits] = await Promise.all([
    optional(`${GOV}/virtual-keys`), optional(`${GOV}/teams`), optional(`${GOV}/customers`),
    optional(`${GOV}/budgets`), optional(`${GOV}/rate-limits`),
  ]);
  const byId = (list) => new Map((list || []).filter((x) => x && x.id !== undefined).map((x) => [x.id, x]));
  return {
    keys: keys ? keys.virtual_keys || [] : null,
    teams: teams ? teams.teams || [] : null,
    customers: customers ? customers.customers || [] : null,
    budgets: budgets ? budgets.budgets || [] : null,
    rateLimits: rateLimits ? rateLimits.rate_limits || [] : null,
    budgetById: byId(budgets && budgets.budgets),
    rateLimitById: byId(rateLimits && rateLimits.rate_limits),
    teamById: byId(teams && teams.teams),
    customerById: byId(customers && customers.customers),
  };
}

const first = (obj, names) => {
  for (const n of names) {
    const v = n.split(".").reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
    if (v !== undefined && v !== null) return v;
  }
  return null;
};

/** Unix ms from an ISO string, Unix seconds or Unix ms (null when absent or unreadable). */
export function toMs(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return value > 1e12 ? value : value * 1000;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

/** "in 3h 20m" / "in 45s" / "now". */
export function until(ms) {
  const s = Math.round((ms - Date.now()) / 1000);
  if (s <= 0) return "now";
  const parts = [[86400, "d"], [3600, "h"], [60, "m"], [1, "s"]];
  const out = [];
  let rest = s;
  for (const [size, unit] of parts) {
    if (rest >= size && out.length < 2) { out.push(`${Math.floor(rest / size)}${unit}`); rest %= size; }
  }
  return `in ${out.join(" ")}`;
}

/** The entity's budget, whatever way the API gives it; null when it has none. */
export function budgetOf(entity, gov) {
  let b = entity.budget || (Array.isArray(entity.budgets) ? entity.budgets[0] : null) || null;
  const id = entity.budget_id || (b && b.id);
  if ((!b || b.max_limit === undefined) && id && gov.budgetById.has(id)) b = {...gov.budgetById.get(id), ...(b || {})};
  if (!b && id) b = {id};
  if (!b) return null;
  return {
    id: b.id ?? id,
    max: first(b, ["max_limit"]),
    used: first(b, ["current_usage", "usage.current_usage", "usage.spent", "spent"]),
    period: first(b, ["reset_duration"]),
    resetsAt: toMs(first(b, ["resets_at", "reset_at", "next_reset", "usage.resets_at"])),
    error: b.usage_error || null,
  };
}

/** The entity's rate limit as {id, requests: {max, used, period, resetsAt}|null, tokens: ...|null}. */
export function rateLimitOf(entity, gov) {
  let r = entity.rate_limit || null;
  const id = entity.rate_limit_id || (r && r.id);
  if ((!r || (r.request_max_limit === undefined && r.token_max_limit === undefined)) && id && gov.rateLimitById.has(id)) {
    r = {...gov.rateLimitById.get(id), ...(r || {})};
  }
  if (!r && id) r = {id};
  if (!r) return null;
  const part = (kind) => {
    const max = first(r, [`${kind}_max_limit`]);
    if (max === null) return null;
    return {
      max,
      used: first(r, [`${kind}_current_usage`, `usage.${kind}_current_usage`, `usage.${kind}s`]),
      period: first(r, [`${kind}_reset_duration`]),
      resetsAt: toMs(first(r, [`${kind}_resets_at`, `${kind}_reset_at`, `usage.${kind}_resets_at`])),
    };
  };
  const parts = {requests: part("request"), tokens: part("token")};
  for (const p of Object.values(parts)) if (p) p.error = r.usage_error || null;
  return {id: r.id ?? id, ...parts};
}

/** One labelled usage bar. Without a usage figure (the API does not report one) only the limit shows. */
export function usageBar(label, limit, format, testid) {
  const {max, used, period, resetsAt, error} = limit;
  const known = used !== null && used !== undefined && max !== null && max !== undefined;
  const ratio = known ? (max > 0 ? Math.min(1, used / max) : 1) : 0;
  const level = ratio >= 1 ? "err" : ratio >= 0.8 ? "warn" : "ok";
  const notes = [period ? `per ${period}` : null, resetsAt ? `resets ${until(resetsAt)}` : null,
    known ? null : error ? `usage unavailable (${error})` : "usage not reported"].filter(Boolean);
  return h("div", {class: "usage", "data-testid": testid, "data-used": known ? used : null, "data-max": max},
    h("div", {class: "usage-head"}, h("span", {}, label),
      h("span", {class: "mono"}, known ? `${format(used)} / ${format(max)}` : `max ${format(max)}`)),
    h("div", {class: "usage-track", role: "progressbar", "aria-label": label, "aria-valuemin": 0,
      "aria-valuemax": max ?? 0, "aria-valuenow": known ? used : 0},
    h("div", {class: `usage-fill ${level}`, style: `width:${(100 * ratio).toFixed(1)}%`})),
    notes.length ? h("div", {class: "hint"}, notes.join(" · ")) : null);
}

/** An id worth showing next to a label: a name someone chose, not a generated UUID. */
const shortId = (id) => !!id && !/^[0-9a-f]{8}-[0-9a-f]{4}-/i.test(id);

/** Bars for an entity's budget and rate limit, or a dash when it has neither. */
export function limitBars(entity, gov) {
  const budget = budgetOf(entity, gov);
  const rl = rateLimitOf(entity, gov);
  const bars = [];
  if (budget) {
    bars.push(budget.max === null
      ? h("div", {class: "hint"}, `budget ${budget.id}`)
      : usageBar(`Budget${shortId(budget.id) ? ` (${budget.id})` : ""}`, budget, fmt.cost, "budget-bar"));
  }
  if (rl && rl.requests) bars.push(usageBar("Requests", rl.requests, fmt.int, "requests-bar"));
  if (rl && rl.tokens) bars.push(usageBar("Tokens", rl.tokens, fmt.compact, "tokens-bar"));
  if (rl && !rl.requests && !rl.tokens) bars.push(h("div", {class: "hint"}, `rate limit ${rl.id}`));
  return bars.length ? h("div", {class: "usage-list"}, bars) : h("span", {class: "hint"}, "no limits");
}

/** The value of a new or rotated key, shown once, with a copy button and a clear warning. */
export function secretBox(value, title, onDone) {
  const input = h("input", {readonly: true, value, class: "mono", "data-testid": "vk-secret",
    "aria-label": "Virtual key value", onfocus: (e) => e.target.select()});
  const copied = h("span", {class: "hint", role: "status"});
  const copy = h("button", {type: "button", "data-testid": "copy-secret", onclick: async () => {
    try {
      await navigator.clipboard.writeText(value);
    } catch {
      input.select(); // no clipboard permission: select it so Ctrl+C works
      document.execCommand && document.execCommand("copy");
    }
    copied.textContent = "Copied";
  }}, "Copy");
  const box = h("section", {class: "panel secret-box", role: "alert", "data-testid": "secret-box"},
    h("h2", {}, title),
    h("p", {}, h("strong", {}, "Copy this key now: you will not see it again."),
      " The gateway stores only its SHA-256 digest. If it is lost, rotate the key to get a new value."),
    h("div", {class: "secret-row"}, input, copy, copied),
    h("p", {class: "hint"}, "Use it as the API key of any SDK: ",
      h("code", {}, `OpenAI(base_url="${location.origin}/v1", api_key="sk-bf-…")`)),
    h("button", {type: "button", class: "primary", "data-testid": "secret-done", onclick: () => {
      input.value = "";
      box.remove();
      if (onDone) onDone();
    }}, "I have copied it"));
  return box;
}

/** A danger button that asks "question" inline before it runs `action`. */
export function confirmButton(label, question, action, testid) {
  const wrap = h("span", {class: "confirm"});
  const reset = () => clear(wrap, start);
  const start = h("button", {type: "button", class: "danger", "data-testid": testid, onclick: () => {
    const yes = h("button", {type: "button", class: "danger", "data-testid": "confirm-yes", onclick: async () => {
      yes.disabled = true;
      try { await action(); } finally { if (wrap.isConnected) reset(); }
    }}, `Yes, ${label.toLowerCase()}`);
    clear(wrap, h("span", {class: "hint"}, question), yes,
      h("button", {type: "button", "data-testid": "confirm-no", onclick: reset}, "Cancel"));
    yes.focus();
  }}, label);
  reset();
  return wrap;
}

/** The page's state when its API route is missing on this gateway (an older or partial build). */
export function unavailable(what, path) {
  return h("div", {class: "panel empty", "data-testid": "unavailable"},
    h("h2", {}, `${what} are not available on this gateway`),
    h("p", {}, "This gateway does not serve ", h("code", {}, path),
      " yet. Define them in config.json's governance block (Go Bifrost's schema) and they are enforced; managing them here needs a newer gateway."));
}

/** Show an API error under the form, marking the field its `param` names (`governance.teams[2].name`,
 * `guardrails_config.guardrail_rules[0].cel_expression`: the path inside one list entry is the field). */
export function showFormError(form, box, err) {
  for (const el of form.querySelectorAll(".invalid")) el.classList.remove("invalid");
  const param = (err.param || "").replace(/^(governance\.[a-z_]+|guardrails_config\.guardrail_[a-z]+)\[\d+\]\./, "");
  const field = param.split(/[.[]/)[0];
  const target = (param && form.querySelector(`[data-path="${CSS.escape(param)}"]`))
    || (field && form.querySelector(`[data-field="${CSS.escape(field)}"]`));
  if (target) { target.classList.add("invalid"); target.focus(); }
  clear(box, h("div", {class: "error-box", "data-testid": "form-error"}, err.message));
}

/** <option>s of (value, text) with a leading empty choice. */
export function options(empty, pairs, selected = "") {
  const out = [h("option", {value: ""}, empty)];
  for (const [value, text] of pairs) out.push(h("option", {value, selected: value === selected ? true : null}, text));
  return out;
}

/** "name (id)" of a team or customer, or its id when the list is unknown. */
export function nameOf(map, id) {
  if (!id) return null;
  const x = map.get(id);
  return x && x.name ? x.name : id;
}
