// Guardrails: config.json's `guardrails_config` (Go Bifrost's block). Providers (a detector kind with its
// policy name, action and config) and rules (when, by a CEL expression, which providers run), each
// created, edited and deleted through /api/guardrails/{providers,rules}; an error the API names a field
// for (a CEL expression that does not compile: `guardrails_config.guardrail_rules[0].cel_expression`) is
// shown at that field. The test console posts pasted text to /api/guardrails/test and shows only what
// the server answered: the rules that fired, their actions and finding types, and the text after
// redaction with each mask highlighted (a blocked text is never shown: the server returns none).

import {del, get, post, put} from "../api.js";
import {confirmButton, options, showFormError} from "../gov.js";
import {clear, h, toast} from "../util.js";

const BASE = "/api/guardrails";
const ACTIONS = ["redact", "block", "flag"];
const STAGES = [["both", "input and output"], ["input", "input (the prompt)"], ["output", "output (the answer)"]];
const EXAMPLES = {
  pii: {entities: ["credit_card", "email"]},
  secrets: {},
  regex: {patterns: [{pattern: "ORDER-\\d{6}", description: "order-id"}]},
  wordlist: {words: ["project falcon"]},
  size: {},
  webhook: {url: "https://guard.example.com/check", headers: {Authorization: "env.GUARD_TOKEN"}},
  moderation: {model: "openai/omni-moderation-latest"},
  llm_judge: {model: "openai/gpt-4o-mini", question: "Does this text ask for malware?"},
};
const SHARED = ["action", "mode", "failure_policy"]; // config fields every kind has: separate inputs here
const MASK_RE = /\[REDACTED:[^\]\n]{1,200}\]/g;

export function unmount() {}

export async function mount(root) {
  const editorSlot = h("div");
  const providersSlot = h("div");
  const rulesSlot = h("div");
  let state = null;

  const refresh = async () => {
    state = await get(BASE);
    paint();
  };
  const paint = () => {
    const block = state.guardrails_config || {};
    const providers = block.guardrail_providers || [];
    const rules = block.guardrail_rules || [];
    clear(providersSlot, providerTable(providers, rules, state, {edit: openProvider, refresh}));
    clear(rulesSlot, ruleTable(rules, providers, {edit: openRule, refresh}));
  };
  const closeEditor = () => clear(editorSlot);
  const openProvider = (existing) => {
    clear(editorSlot, providerForm(state, existing, {done: async () => { closeEditor(); await refresh(); }, cancel: closeEditor}));
    editorSlot.scrollIntoView({block: "start"});
    editorSlot.querySelector("select, input").focus();
  };
  const openRule = (existing) => {
    clear(editorSlot, ruleForm(state, existing, {done: async () => { closeEditor(); await refresh(); }, cancel: closeEditor}));
    editorSlot.scrollIntoView({block: "start"});
    editorSlot.querySelector("input").focus();
  };

  root.append(
    h("div", {class: "page-head"}, h("h1", {}, "Guardrails"), h("div", {class: "toolbar"},
      h("button", {type: "button", "data-testid": "add-guard-provider", onclick: () => openProvider(null)}, "Add provider"),
      h("button", {type: "button", class: "primary", "data-testid": "add-guard-rule", onclick: () => openRule(null)}, "Add rule"))),
    h("p", {class: "hint", style: "margin-top:-.5rem"},
      "Providers detect (personal data, credentials, your patterns, a webhook, moderation, a model's yes/no); rules say when they run, ",
      "with a CEL expression over the request. Redact masks what was found before the provider or the client sees it; block refuses it; flag only records it."),
    editorSlot,
    h("section", {class: "panel", style: "margin-bottom:1rem"}, h("h2", {}, "Providers"), providersSlot),
    h("section", {class: "panel", style: "margin-bottom:1rem"}, h("h2", {}, "Rules"), rulesSlot),
    consolePanel());
  await refresh();
}

// -- tables ---------------------------------------------------------------------------------------------
const enabledBadge = (on) => h("span", {class: `badge ${on === false ? "muted" : "ok"}`, "data-testid": "enabled"}, on === false ? "off" : "on");
const policyOf = (p) => p.policy_name || p.provider_name;

function providerTable(providers, rules, state, {edit, refresh}) {
  if (!providers.length) {
    return h("p", {class: "hint", "data-testid": "guard-providers-empty"}, "No providers yet: add one (pii, secrets, regex, …), then a rule that uses it.");
  }
  const kinds = new Map((state.kinds || []).map((k) => [k.name, k]));
  const rows = providers.map((p) => {
    const cfg = p.config || {};
    const kind = kinds.get(p.provider_name);
    const users = rules.filter((r) => (r.provider_config_ids || []).includes(p.id)).map((r) => r.name);
    return h("tr", {"data-provider": p.id},
      h("td", {class: "num mono"}, String(p.id)),
      h("td", {}, h("strong", {}, policyOf(p))),
      h("td", {}, h("span", {class: "mono"}, p.provider_name), kind ? h("div", {class: "hint"}, kind.summary) : h("div", {class: "hint"}, "not implemented here: skipped")),
      h("td", {"data-testid": "provider-action"}, cfg.action || cfg.mode || (kind ? kind.default_action : "")),
      h("td", {}, enabledBadge(p.enabled)),
      h("td", {}, users.length ? users.join(", ") : h("span", {class: "hint"}, "no rule")),
      h("td", {}, h("div", {class: "row-actions"},
        h("button", {type: "button", "data-testid": "edit-guard-provider", onclick: () => edit(p)}, "Edit"),
        confirmButton("Delete", `Delete provider ${policyOf(p)}?`, async () => {
          try {
            await del(`${BASE}/providers/${p.id}`);
            toast(`Deleted provider ${policyOf(p)}`);
            await refresh();
          } catch (err) { toast(err.message, true); }
        }, "delete-guard-provider"))));
  });
  return h("div", {class: "table-wrap"}, h("table", {class: "data static", "data-testid": "guard-providers"},
    h("thead", {}, h("tr", {}, ["ID", "Policy", "Kind", "Action", "Enabled", "Used by", ""].map((t) => h("th", {class: t === "ID" ? "num" : ""}, t)))),
    h("tbody", {}, rows)));
}

function ruleTable(rules, providers, {edit, refresh}) {
  if (!rules.length) {
    return h("p", {class: "hint", "data-testid": "guard-rules-empty"}, "No rules yet: a rule with the expression true applies its providers to every request.");
  }
  const byId = new Map(providers.map((p) => [p.id, p]));
  const rows = rules.map((r) => h("tr", {"data-rule": r.name},
    h("td", {}, h("strong", {}, r.name), r.description ? h("div", {class: "hint"}, r.description) : null),
    h("td", {}, enabledBadge(r.enabled)),
    h("td", {"data-testid": "rule-stage"}, r.apply_to || "both"),
    h("td", {}, h("code", {"data-testid": "rule-cel"}, r.cel_expression || "true")),
    h("td", {"data-testid": "rule-providers"}, (r.provider_config_ids || []).map((id) => (byId.has(id) ? policyOf(byId.get(id)) : `#${id}`)).join(", ") || h("span", {class: "hint"}, "none")),
    h("td", {class: "num"}, `${r.sampling_rate ?? 100}%`),
    h("td", {}, h("div", {class: "row-actions"},
      h("button", {type: "button", "data-testid": "edit-guard-rule", onclick: () => edit(r)}, "Edit"),
      confirmButton("Delete", `Delete rule ${r.name}?`, async () => {
        try {
          await del(`${BASE}/rules/${r.id}`);
          toast(`Deleted rule ${r.name}`);
          await refresh();
        } catch (err) { toast(err.message, true); }
      }, "delete-guard-rule")))));
  return h("div", {class: "table-wrap"}, h("table", {class: "data static", "data-testid": "guard-rules"},
    h("thead", {}, h("tr", {}, ["Name", "Enabled", "Stage", "CEL", "Providers", "Sampling", ""].map((t) => h("th", {class: t === "Sampling" ? "num" : ""}, t)))),
    h("tbody", {}, rows)));
}

// -- editors ----------------------------------------------------------------------------------------------
/** The API's error under the form and, when it names a field, next to that field too (shared marking). */
function fieldError(form, box, err) {
  for (const old of form.querySelectorAll("[data-testid=field-error]")) old.remove();
  showFormError(form, box, err);
  const target = form.querySelector(".invalid");
  if (target) clear(box); // said once, where it belongs
  if (target) target.after(h("div", {class: "hint", style: "color:var(--err)", "data-testid": "field-error", role: "alert"}, err.message));
}

function numberOrNull(input) {
  return input.value.trim() === "" ? null : Number(input.value);
}

function providerForm(state, existing, {done, cancel}) {
  const kinds = state.kinds || [];
  const errorBox = h("div");
  const cfg = existing ? {...(existing.config || {})} : {};
  const kind = h("select", {"data-field": "provider_name", "aria-label": "Kind", disabled: existing ? true : null},
    kinds.map((k) => h("option", {value: k.name}, `${k.name} — ${k.summary}`)));
  if (existing && !kinds.some((k) => k.name === existing.provider_name)) kind.append(h("option", {value: existing.provider_name}, existing.provider_name));
  kind.value = existing ? existing.provider_name : "pii";
  const policy = h("input", {"data-field": "policy_name", autocomplete: "off", placeholder: "e.g. cards-and-emails", value: existing ? existing.policy_name || "" : ""});
  const enabled = h("input", {type: "checkbox", "data-field": "enabled", checked: existing ? existing.enabled !== false : true});
  const action = h("select", {"data-field": "action", "aria-label": "Action"}, ACTIONS.map((a) => h("option", {value: a}, a)));
  const failure = h("select", {"data-field": "failure_policy", "aria-label": "When it fails"},
    options("fail closed (default)", [["fail_closed", "fail closed: block"], ["fail_open", "fail open: let it through"]]));
  const timeout = h("input", {type: "number", min: 0, step: "any", "data-field": "timeout", placeholder: "kind's default",
    value: existing && existing.timeout !== undefined ? existing.timeout : null});
  const own = {...cfg};
  for (const k of SHARED) delete own[k];
  const config = h("textarea", {"data-field": "config", class: "mono", rows: 5, spellcheck: "false", "aria-label": "Config (JSON)"});
  const kindInfo = h("div", {class: "hint"});
  const syncKind = (first) => {
    const k = kinds.find((x) => x.name === kind.value);
    kindInfo.textContent = k ? `${k.remote ? "Remote" : "Offline"} · timeout ${k.default_timeout_s} s by default` : "";
    failure.disabled = !(k && k.remote);
    if (!first || !existing) {
      action.value = k ? k.default_action : "block";
      if (!existing) config.value = JSON.stringify(EXAMPLES[kind.value] || {}, null, 2);
    }
  };
  config.value = JSON.stringify(own, null, 2);
  syncKind(true);
  if (existing) {
    action.value = cfg.action || cfg.mode || action.value;
    failure.value = cfg.failure_policy || "";
  }
  kind.addEventListener("change", () => syncKind(false));
  const save = h("button", {type: "submit", class: "primary", "data-testid": "save-guard-provider"}, existing ? "Save provider" : "Add provider");
  const form = h("form", {class: "panel", "data-testid": "guard-provider-editor", style: "margin-bottom:1rem", onsubmit: async (event) => {
    event.preventDefault();
    clear(errorBox);
    let parsed;
    try {
      parsed = config.value.trim() ? JSON.parse(config.value) : {};
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("must be a JSON object");
    } catch (e) {
      fieldError(form, errorBox, {message: `Config is not a JSON object: ${e.message}`, param: "config"});
      return;
    }
    const body = {provider_name: kind.value, enabled: enabled.checked, config: {...parsed, action: action.value}};
    if (policy.value.trim()) body.policy_name = policy.value.trim();
    if (!failure.disabled && failure.value) body.config.failure_policy = failure.value;
    const t = numberOrNull(timeout);
    if (t !== null) body.timeout = t;
    save.disabled = true;
    try {
      if (existing) await put(`${BASE}/providers/${existing.id}`, {...body, id: existing.id});
      else await post(`${BASE}/providers`, body);
      toast(existing ? `Saved provider ${body.policy_name || body.provider_name}` : `Added provider ${body.policy_name || body.provider_name}`);
      await done();
    } catch (err) {
      fieldError(form, errorBox, err);
    } finally {
      save.disabled = false;
    }
  }},
  h("h2", {}, existing ? `Edit provider ${policyOf(existing)}` : "Add a guardrail provider"),
  h("div", {class: "form-grid"},
    h("label", {class: "field"}, h("span", {}, "Kind"), kind, kindInfo),
    h("label", {class: "field"}, h("span", {}, "Policy name"), policy),
    h("label", {class: "field"}, h("span", {}, "Action"), action),
    h("label", {class: "field"}, h("span", {}, "When a remote check fails"), failure),
    h("label", {class: "field"}, h("span", {}, "Timeout (s)"), timeout),
    h("label", {class: "field"}, h("span", {}, "Enabled"), enabled)),
  h("label", {class: "field", style: "margin-top:.75rem"}, h("span", {}, "Config (the kind's own fields, JSON)"), config,
    h("div", {class: "hint"}, "Secrets show as •••• and are kept as stored unless you type a new value; env.NAME reads an environment variable.")),
  errorBox,
  h("div", {class: "card-actions"}, save, h("button", {type: "button", onclick: cancel}, "Cancel")));
  return form;
}

function ruleForm(state, existing, {done, cancel}) {
  const providers = (state.guardrails_config || {}).guardrail_providers || [];
  const fields = (state.cel || {}).request_fields || [];
  const errorBox = h("div");
  const r = existing || {};
  const name = h("input", {"data-field": "name", autocomplete: "off", required: true, placeholder: "e.g. mask-pii", value: r.name || ""});
  const description = h("input", {"data-field": "description", autocomplete: "off", value: r.description || ""});
  const enabled = h("input", {type: "checkbox", "data-field": "enabled", checked: r.enabled !== false});
  const stage = h("select", {"data-field": "apply_to", "aria-label": "Stage"}, STAGES.map(([v, t]) => h("option", {value: v}, t)));
  stage.value = r.apply_to || "both";
  const cel = h("textarea", {"data-field": "cel_expression", class: "mono", rows: 2, spellcheck: "false", "aria-label": "CEL expression"});
  cel.value = r.cel_expression || "true";
  const sampling = h("input", {type: "number", min: 0, max: 100, step: 1, "data-field": "sampling_rate", value: r.sampling_rate ?? 100});
  const timeout = h("input", {type: "number", min: 0, step: "any", "data-field": "timeout", placeholder: "each provider's", value: r.timeout ?? null});
  const chosen = new Set(r.provider_config_ids || []);
  const picks = h("div", {"data-field": "provider_config_ids", tabindex: -1, class: "toolbar", style: "flex-wrap:wrap"},
    providers.length ? providers.map((p) => h("label", {}, h("input", {type: "checkbox", value: p.id, checked: chosen.has(p.id), "data-provider-pick": policyOf(p)}), " ", policyOf(p), h("span", {class: "hint"}, ` (${p.provider_name})`)))
      : h("span", {class: "hint"}, "No providers yet: add one first."));
  const save = h("button", {type: "submit", class: "primary", "data-testid": "save-guard-rule"}, existing ? "Save rule" : "Add rule");
  const form = h("form", {class: "panel", "data-testid": "guard-rule-editor", style: "margin-bottom:1rem", onsubmit: async (event) => {
    event.preventDefault();
    clear(errorBox);
    const body = {
      name: name.value.trim(),
      enabled: enabled.checked,
      cel_expression: cel.value.trim(),
      apply_to: stage.value,
      sampling_rate: Number(sampling.value === "" ? 100 : sampling.value),
      provider_config_ids: [...picks.querySelectorAll("input:checked")].map((el) => Number(el.value)),
    };
    if (description.value.trim()) body.description = description.value.trim();
    const t = numberOrNull(timeout);
    if (t !== null) body.timeout = t;
    save.disabled = true;
    try {
      if (existing) await put(`${BASE}/rules/${existing.id}`, {...body, id: existing.id});
      else await post(`${BASE}/rules`, body);
      toast(existing ? `Saved rule ${body.name}` : `Added rule ${body.name}`);
      await done();
    } catch (err) {
      fieldError(form, errorBox, err);
    } finally {
      save.disabled = false;
    }
  }},
  h("h2", {}, existing ? `Edit rule ${r.name}` : "Add a guardrail rule"),
  h("div", {class: "form-grid"},
    h("label", {class: "field"}, h("span", {}, "Name"), name),
    h("label", {class: "field"}, h("span", {}, "Description"), description),
    h("label", {class: "field"}, h("span", {}, "Checks"), stage),
    h("label", {class: "field"}, h("span", {}, "Sampling (% of requests)"), sampling),
    h("label", {class: "field"}, h("span", {}, "Timeout (s)"), timeout),
    h("label", {class: "field"}, h("span", {}, "Enabled"), enabled)),
  h("label", {class: "field", style: "margin-top:.75rem"}, h("span", {}, "When (CEL expression)"), cel,
    h("div", {class: "hint"}, "e.g. request.provider == 'openai' && request.team != 'research'. CEL sees request.",
      fields.join(", request."), ", stage and findings.")),
  h("div", {class: "field", style: "margin-top:.75rem"}, h("span", {}, "Providers it runs"), picks),
  errorBox,
  h("div", {class: "card-actions"}, save, h("button", {type: "button", onclick: cancel}, "Cancel")));
  return form;
}

// -- the test console -----------------------------------------------------------------------------------
function consolePanel() {
  const errorBox = h("div");
  const out = h("div", {"data-testid": "console-result", "aria-live": "polite"});
  const text = h("textarea", {"data-field": "text", rows: 5, "data-testid": "console-text", "aria-label": "Text to check",
    placeholder: "Paste a prompt or an answer…"});
  const stage = h("select", {"data-field": "stage", "data-testid": "console-stage", "aria-label": "Stage"},
    h("option", {value: "input"}, "input (a prompt)"), h("option", {value: "output"}, "output (an answer)"));
  const input = (field, placeholder) => h("input", {"data-path": `request.${field}`, "data-testid": `console-${field}`, autocomplete: "off", placeholder});
  const model = input("model", "e.g. gpt-4o");
  const provider = input("provider", "e.g. openai");
  const vk = input("virtual_key", "virtual key id");
  const run = h("button", {type: "submit", class: "primary", "data-testid": "console-run"}, "Run");
  const form = h("form", {class: "panel", "data-testid": "guard-console", onsubmit: async (event) => {
    event.preventDefault();
    clear(errorBox);
    clear(out); // never leave an earlier answer next to new text
    const request = {};
    for (const [key, el] of [["model", model], ["provider", provider], ["virtual_key", vk]]) if (el.value.trim()) request[key] = el.value.trim();
    run.disabled = true;
    try {
      const result = await post(`${BASE}/test`, {text: text.value, stage: stage.value, request});
      clear(out, resultView(result));
    } catch (err) {
      fieldError(form, errorBox, err);
    } finally {
      run.disabled = false;
    }
  }},
  h("h2", {}, "Test console"),
  h("p", {class: "hint"}, "Runs the saved rules on this text as the gateway would (nothing is sent to a model unless a remote provider is configured). The request fields are what CEL sees; empty ones are empty strings."),
  h("label", {class: "field"}, h("span", {}, "Text"), text),
  h("div", {class: "form-grid", style: "margin-top:.75rem"},
    h("label", {class: "field"}, h("span", {}, "Stage"), stage),
    h("label", {class: "field"}, h("span", {}, "Model"), model),
    h("label", {class: "field"}, h("span", {}, "Provider"), provider),
    h("label", {class: "field"}, h("span", {}, "Virtual key"), vk)),
  errorBox,
  h("div", {class: "card-actions"}, run),
  out);
  return form;
}

/** The server's answer only: verdict, the rules that fired, the finding types, the text it returned. */
function resultView(result) {
  const fired = result.fired || [];
  const verdict = result.blocked ? ["err", "blocked"] : result.error ? ["err", "error"]
    : fired.some((f) => f.action === "redact") ? ["warn", "redacted"] : fired.length ? ["muted", "flagged"] : ["ok", "passed"];
  const types = [...new Set((result.findings || []).map((f) => f.type))];
  return h("div", {style: "margin-top:1rem"},
    h("div", {class: "toolbar"}, h("span", {class: `badge ${verdict[0]}`, "data-testid": "console-verdict"}, verdict[1]),
      types.length ? h("span", {class: "hint", "data-testid": "console-types"}, `found: ${types.join(", ")}`) : null),
    result.error ? h("div", {class: "error-box", "data-testid": "console-error"}, result.error.message || String(result.error.type || "error")) : null,
    fired.length ? h("div", {class: "table-wrap", style: "margin-top:.5rem"}, h("table", {class: "data static", "data-testid": "console-fired"},
      h("thead", {}, h("tr", {}, ["Rule", "Provider", "Action", "Found", "Count", "Error"].map((t) => h("th", {}, t)))),
      h("tbody", {}, fired.map((f) => h("tr", {"data-fired": f.rule},
        h("td", {}, h("strong", {}, f.rule)), h("td", {}, f.provider), h("td", {"data-testid": "fired-action"}, f.action),
        h("td", {class: "mono"}, (f.types || []).join(", ")), h("td", {class: "num"}, String(f.count ?? "")), h("td", {}, f.error || "")))))) : null,
    result.text === null || result.text === undefined
      ? h("p", {class: "hint", "data-testid": "console-no-text"}, result.blocked ? "Blocked: the gateway would not let this text through." : "No text returned.")
      : h("div", {style: "margin-top:.5rem"}, h("div", {class: "hint"}, "Text after the rules"),
        h("pre", {class: "json", "data-testid": "console-text-out"}, highlighted(result.text))));
}

/** The returned text as nodes, each [REDACTED:type] mask in a <mark>. */
function highlighted(text) {
  const nodes = [];
  let last = 0;
  for (const m of text.matchAll(MASK_RE)) {
    if (m.index > last) nodes.push(text.slice(last, m.index));
    nodes.push(h("mark", {"data-testid": "mask"}, m[0]));
    last = m.index + m[0].length;
  }
  if (last < text.length) nodes.push(text.slice(last));
  return nodes;
}
