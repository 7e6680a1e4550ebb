// Virtual Keys: the keys clients present instead of provider keys. List with status, owner, access and
// usage bars for the key's budget and rate limit; create (the value is shown once, in a copyable box);
// disable / enable; rotate (a new value, shown once; the old one stops at once); delete after an inline
// confirmation. Everything goes through /api/governance/virtual-keys and applies live.

import {del, get, post, put} from "../api.js";
import {GOV, confirmButton, limitBars, loadGovernance, nameOf, options, secretBox, showFormError, toMs, unavailable} from "../gov.js";
import {PERIODS} from "../entities.js";
import {clear, fmt, h, toast} from "../util.js";

const BASE = `${GOV}/virtual-keys`;
const NEW = "\u0000new"; // the budget select's "New budget…" choice (no id can be this)

export function unmount() {}

export async function mount(root) {
  const secretSlot = h("div");
  const editorSlot = h("div");
  const listSlot = h("div");
  let gov = null;
  let providers = [];
  let search = "";

  const refresh = async () => {
    gov = await loadGovernance();
    if (gov.keys === null) {
      clear(listSlot, unavailable("Virtual keys", BASE));
      createButton.disabled = true;
      return;
    }
    paint();
  };
  // The search filters the loaded list in the page (config.json's tables are small): name, id, team.
  const paint = () => {
    const q = search.trim().toLowerCase();
    const shown = q ? gov.keys.filter((k) => [k.name, k.id, k.description, k.team_id, k.customer_id]
      .some((v) => typeof v === "string" && v.toLowerCase().includes(q))) : gov.keys;
    clear(listSlot, table({...gov, keys: shown}, {refresh, showSecret, filtered: !!q}));
  };
  const searchBox = h("input", {type: "search", placeholder: "Search name, id or team…", "aria-label": "Search virtual keys",
    "data-testid": "vk-search", oninput: (e) => { search = e.target.value; if (gov && gov.keys) paint(); }});
  const showSecret = (value, title) => {
    clear(secretSlot, secretBox(value, title, () => clear(secretSlot)));
    secretSlot.scrollIntoView({block: "start"});
    secretSlot.querySelector("input").focus();
  };
  const createButton = h("button", {type: "button", class: "primary", "data-testid": "create-vk", onclick: () => {
    clear(editorSlot, createForm(gov, providers, {
      done: async (created) => { clear(editorSlot); await refresh(); showSecret(created.value, `Virtual key “${created.name}” created`); },
      cancel: () => clear(editorSlot),
    }));
    editorSlot.querySelector("input").focus();
  }}, "Create virtual key");

  root.append(h("div", {class: "page-head"}, h("h1", {}, "Virtual Keys"), h("div", {class: "toolbar"}, searchBox, createButton)),
    h("p", {class: "hint", style: "margin-top:-.5rem"},
      "Clients send a virtual key (sk-bf-…) as their API key; the gateway applies its allow-list, budget and rate limit, and never forwards it upstream."),
    secretSlot, editorSlot, listSlot);
  [providers] = await Promise.all([
    get("/api/providers").then((r) => r.providers.map((p) => p.name)).catch(() => []),
    refresh(),
  ]);
}

function status(k) {
  const expires = toMs(k.expires_at);
  if (k.is_active === false) return h("span", {class: "badge warn", "data-testid": "vk-status"}, "disabled");
  if (expires !== null && expires <= Date.now()) return h("span", {class: "badge err", "data-testid": "vk-status"}, "expired");
  return h("span", {class: "badge ok", "data-testid": "vk-status"}, "active");
}

function access(k, gov) {
  const configs = k.provider_configs || [];
  if (!configs.length) return h("span", {class: "hint"}, "every provider and model");
  return h("div", {}, configs.map((pc) => {
    const models = (pc.allowed_models || []).filter((m) => m !== "*");
    const own = pc.budget || pc.rate_limit || pc.budget_id || pc.rate_limit_id; // a provider config's own limits
    return h("div", {"data-pc-provider": pc.provider}, h("div", {class: "mono"}, pc.provider,
      (pc.weight ?? 1) !== 1 ? ` ×${pc.weight}` : "", ": ", models.length ? models.join(", ") : "any model"),
    own ? limitBars(pc, gov) : null);
  }));
}

function owner(k, gov) {
  const parts = [];
  if (k.team_id) parts.push(h("div", {}, "team ", h("strong", {}, nameOf(gov.teamById, k.team_id))));
  if (k.customer_id) parts.push(h("div", {}, "customer ", h("strong", {}, nameOf(gov.customerById, k.customer_id))));
  return parts.length ? parts : h("span", {class: "hint"}, "–");
}

function table(gov, {refresh, showSecret, filtered}) {
  if (!gov.keys.length && filtered) {
    return h("div", {class: "panel empty", "data-testid": "empty-vks"}, h("h2", {}, "No virtual key matches this search"));
  }
  if (!gov.keys.length) {
    return h("div", {class: "panel empty", "data-testid": "empty-vks"},
      h("h2", {}, "No virtual keys yet"),
      h("p", {}, "Create one to give an application its own key, with an allow-list, a budget and a rate limit."));
  }
  const rows = gov.keys.map((k) => {
    const act = async (fn, message) => {
      try { await fn(); toast(message); await refresh(); } catch (err) { toast(err.message, true); }
    };
    const id = encodeURIComponent(k.id);
    const active = k.is_active !== false;
    return h("tr", {"data-vk": k.id},
      h("td", {}, h("strong", {}, k.name || k.id), k.description ? h("div", {class: "hint"}, k.description) : null,
        h("div", {class: "hint mono"}, k.id)),
      h("td", {}, status(k), k.expires_at ? h("div", {class: "hint"}, `expires ${fmt.datetime(toMs(k.expires_at))}`) : null),
      h("td", {}, owner(k, gov)),
      h("td", {style: "white-space:normal;min-width:15rem"}, access(k, gov)),
      h("td", {style: "min-width:14rem"}, limitBars(k, gov)),
      h("td", {}, h("div", {class: "row-actions"},
        h("a", {class: "btn", href: `#/logs?virtual_key_id=${id}`, "data-testid": "vk-logs"}, "Logs"),
        h("button", {type: "button", "data-testid": "vk-toggle", onclick: () => act(
          () => put(`${BASE}/${id}`, {is_active: !active}), `${k.name || k.id} ${active ? "disabled" : "enabled"}`)},
        active ? "Disable" : "Enable"),
        confirmButton("Rotate", "The current value stops working at once.", async () => {
          try {
            const r = await post(`${BASE}/${id}/rotate`);
            await refresh();
            showSecret(r.virtual_key.value, `New value for “${k.name || k.id}”`);
          } catch (err) { toast(err.message, true); }
        }, "vk-rotate"),
        confirmButton("Delete", "Requests with this key will be refused.", () => act(
          () => del(`${BASE}/${id}`), `Deleted ${k.name || k.id}`), "vk-delete"))));
  });
  return h("div", {class: "panel"}, h("div", {class: "table-wrap"}, h("table", {class: "data static", "data-testid": "vk-table"},
    h("thead", {}, h("tr", {}, ["Key", "Status", "Owner", "Providers / models", "Budget and limits", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows))));
}

// -- create --------------------------------------------------------------------------------------------

/** ids to offer for a reference: the list's entries when the API lists them, else the ids in use. */
function choices(list, inUse) {
  if (list) return list.map((x) => [x.id, x.name && x.name !== x.id ? `${x.name} (${x.id})` : x.id]);
  return [...new Set(inUse.filter(Boolean))].sort().map((id) => [id, id]);
}

function createForm(gov, providers, {done, cancel}) {
  const errorBox = h("div");
  const keys = gov.keys || [];
  const name = h("input", {"data-field": "name", required: true, placeholder: "e.g. search-prod", autocomplete: "off"});
  const description = h("input", {"data-field": "description", placeholder: "optional"});
  const ownerPairs = [
    ...choices(gov.teams, [...keys.map((k) => k.team_id)]).map(([id, t]) => [`team:${id}`, `Team: ${t}`]),
    ...choices(gov.customers, [...keys.map((k) => k.customer_id), ...(gov.teams || []).map((t) => t.customer_id)])
      .map(([id, t]) => [`customer:${id}`, `Customer: ${t}`]),
  ];
  const ownerSelect = h("select", {"data-field": "team_id", "aria-label": "Owner"}, options("No team or customer", ownerPairs));
  const budgetSelect = h("select", {"data-field": "budget_id", "aria-label": "Budget"},
    options("No budget of its own", choices(gov.budgets, [...keys.map((k) => k.budget_id)])),
    // A gateway that manages budgets also takes Go's inline `budget` object: a new budget for this key.
    gov.budgets !== null ? h("option", {value: NEW}, "New budget…") : null);
  const newMax = h("input", {type: "number", min: 0, step: "any", "data-field": "budget", placeholder: "dollars", "aria-label": "New budget in dollars"});
  const newPeriod = h("select", {"data-field": "reset_duration", "aria-label": "New budget resets every"},
    PERIODS.map(([v, t]) => h("option", {value: v}, `per ${t}`)));
  newPeriod.value = "1M";
  const newBudget = h("label", {class: "field", style: "display:none"}, h("span", {}, "New budget"),
    h("div", {class: "toolbar"}, newMax, newPeriod));
  budgetSelect.addEventListener("change", () => {
    newBudget.style.display = budgetSelect.value === NEW ? "" : "none";
    newMax.required = budgetSelect.value === NEW;
  });
  const rateSelect = h("select", {"data-field": "rate_limit_id", "aria-label": "Rate limit"},
    options("No rate limit of its own", choices(gov.rateLimits, [...keys.map((k) => k.rate_limit_id)])));
  const expires = h("input", {type: "datetime-local", "data-field": "expires_at", "aria-label": "Expires at (UTC)"});
  const rowsBox = h("div", {"data-testid": "vk-provider-rows"});
  const addRow = () => {
    const i = rowsBox.children.length;
    const row = h("div", {class: "pc-row", "data-pc-row": i},
      h("select", {"data-field": "provider_configs", "data-pc": "provider", "aria-label": "Provider"},
        providers.map((p) => h("option", {value: p}, p))),
      h("input", {"data-pc": "allowed_models", placeholder: "models (empty = all)", "aria-label": "Allowed models"}),
      h("input", {"data-pc": "weight", type: "number", min: 0, step: "any", placeholder: "weight 1", "aria-label": "Weight"}),
      h("button", {type: "button", class: "ghost", "aria-label": "Remove provider", onclick: () => row.remove()}, "✕"));
    rowsBox.append(row);
  };
  const save = h("button", {type: "submit", class: "primary", "data-testid": "save-vk"}, "Create key");
  const form = h("form", {class: "panel", "data-testid": "vk-editor", style: "margin-bottom:1rem", onsubmit: async (event) => {
    event.preventDefault();
    clear(errorBox);
    const body = {name: name.value.trim()};
    if (description.value.trim()) body.description = description.value.trim();
    const [kind, ownerId] = ownerSelect.value.split(/:(.*)/s);
    if (kind === "team") body.team_id = ownerId;
    if (kind === "customer") body.customer_id = ownerId;
    if (budgetSelect.value === NEW) body.budget = {max_limit: Number(newMax.value), reset_duration: newPeriod.value};
    else if (budgetSelect.value) body.budget_id = budgetSelect.value;
    if (rateSelect.value) body.rate_limit_id = rateSelect.value;
    if (expires.value) body.expires_at = new Date(`${expires.value}:00Z`).toISOString().replace(".000Z", "Z");
    const configs = [...rowsBox.children].map((row, i) => {
      // data-path = the config path an error's `param` names (rows removed earlier shift the index).
      for (const el of row.querySelectorAll("[data-pc]")) el.dataset.path = `provider_configs[${i}].${el.dataset.pc}`;
      const val = (k) => row.querySelector(`[data-pc="${k}"]`).value.trim();
      const pc = {provider: val("provider")};
      const models = val("allowed_models").split(",").map((s) => s.trim()).filter(Boolean);
      if (models.length) pc.allowed_models = models;
      if (val("weight") !== "") pc.weight = Number(val("weight"));
      return pc;
    }).filter((pc) => pc.provider);
    if (configs.length) body.provider_configs = configs;
    save.disabled = true;
    try {
      const created = await post(BASE, body);
      toast(created.restart_required ? "Created; governance starts at the next restart of this gateway" : `Created ${body.name}`);
      await done(created.virtual_key);
    } catch (err) {
      showFormError(form, errorBox, err);
    } finally {
      save.disabled = false;
    }
  }},
  h("h2", {}, "Create a virtual key"),
  h("div", {class: "form-grid"},
    h("label", {class: "field"}, h("span", {}, "Name"), name),
    h("label", {class: "field"}, h("span", {}, "Description"), description),
    h("label", {class: "field"}, h("span", {}, "Owner"), ownerSelect),
    h("label", {class: "field"}, h("span", {}, "Budget"), budgetSelect),
    newBudget,
    h("label", {class: "field"}, h("span", {}, "Rate limit"), rateSelect),
    h("label", {class: "field"}, h("span", {}, "Expires (UTC, optional)"), expires)),
  h("h3", {}, "Providers and models"),
  h("p", {class: "hint"}, "None: every provider and model. Otherwise only these; a bare model name is routed across them by weight."),
  rowsBox,
  providers.length ? h("button", {type: "button", "data-testid": "add-pc", onclick: addRow}, "+ Add provider") : null,
  errorBox,
  h("div", {class: "card-actions"}, save, h("button", {type: "button", onclick: cancel}, "Cancel")));
  return form;
}
