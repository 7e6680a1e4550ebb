// Providers: list with live lane counts, add / edit / delete with the server's validation messages
// shown on the field they name, and a "Send test request" button that shows the answer or the error.

import {del, get, post, put} from "../api.js";
import {clear, fmt, h, toast} from "../util.js";

let types = [];
let baseTypes = [];

export function unmount() {}

export async function mount(root) {
  const meta = await get("/api/provider-types");
  types = meta.types;
  baseTypes = meta.custom_base_types;
  const list = h("div", {class: "cards", "data-testid": "provider-list"});
  const editorSlot = h("div");
  const refresh = async () => {
    const {providers} = await get("/api/providers");
    clear(list, providers.map((p) => card(p, {edit: () => openEditor(editorSlot, p, refresh), refresh})));
    if (!providers.some((p) => p.source !== "builtin")) {
      list.prepend(h("div", {class: "panel empty", "data-testid": "empty-providers"},
        h("h2", {}, "Add your first provider"),
        h("p", {}, "Only the built-in mock is configured. Add OpenAI, Azure, a local vLLM/Ollama server or any OpenAI-compatible endpoint with its key; changes apply at once and are saved to config.json."),
        h("button", {type: "button", class: "primary", onclick: () => openEditor(editorSlot, null, refresh)}, "Add provider")));
    }
  };
  root.append(h("div", {class: "page-head"}, h("h1", {}, "Providers"),
    h("button", {type: "button", class: "primary", "data-testid": "add-provider", onclick: () => openEditor(editorSlot, null, refresh)}, "Add provider")),
  editorSlot, list);
  await refresh();
}

function card(p, {edit, refresh}) {
  const result = h("div", {"data-testid": "test-result"});
  const eff = p.effective || {};
  const keys = p.keys || [];
  const model = h("input", {value: p.listed_models[0] || (eff.models || [])[0] || (keys[0] && (keys[0].models || [])[0]) || "",
    placeholder: "model", "aria-label": `Model to test on ${p.name}`, style: "width:11rem"});
  const testButton = h("button", {type: "button", "data-testid": "test-provider", onclick: async () => {
    testButton.disabled = true;
    clear(result, h("p", {class: "hint"}, "Sending…"));
    try {
      const r = await post(`/api/providers/${encodeURIComponent(p.name)}/test`, {model: model.value || undefined});
      clear(result, r.ok
        ? h("div", {class: "ok-box"}, h("strong", {}, `✓ ${r.status} in ${fmt.ms(r.latency_ms)} · ${r.model}`), h("div", {}, r.answer || "(empty answer)"))
        : h("div", {class: "error-box"}, h("strong", {}, `✗ ${r.status} ${r.error.type || ""}`), h("div", {}, r.error.message)));
    } catch (err) {
      clear(result, h("div", {class: "error-box"}, err.message));
    } finally {
      testButton.disabled = false;
    }
  }}, "Send test request");
  const lane = p.lane || {};
  const health = p.health || {};
  return h("section", {class: "panel", "data-provider": p.name},
    h("div", {class: "card-head"},
      h("div", {}, h("h2", {style: "margin:0"}, p.name), h("div", {class: "hint"}, p.label)),
      h("span", {class: `badge ${p.source === "config" ? "ok" : "muted"}`}, p.source)),
    h("dl", {class: "kv", style: "margin-top:.75rem"},
      h("dt", {}, "Base URL"), h("dd", {class: "mono"}, (eff.network_config || {}).base_url || (p.kind === "azure" ? "per key" : "–")),
      h("dt", {}, "Keys"), h("dd", {}, keys.length ? keys.map((k) => h("div", {class: "mono"},
        `${k.name}: ${k.value || credentialHint(k) || "(none)"}`, (k.weight ?? 1) !== 1 ? ` ×${k.weight}` : "",
        (k.models || []).length ? ` · ${k.models.join(", ")}` : "",
        healthBadge(health.keys && health.keys[k.name], `key-health-${k.name}`))) : "none needed"),
      h("dt", {}, "Models"), h("dd", {}, (eff.models || []).length ? eff.models.join(", ") : "any"),
      Object.keys(health.models || {}).length ? h("dt", {}, "Health") : null,
      Object.keys(health.models || {}).length ? h("dd", {"data-testid": "model-health"},
        Object.entries(health.models).map(([name, b]) => h("div", {class: "mono"}, name, healthBadge(b, `model-health-${name}`)))) : null,
      h("dt", {}, "Lane"), h("dd", {"data-testid": "lane"}, `${lane.in_flight ?? 0} in flight · ${lane.queued ?? 0} queued · ${lane.concurrency ?? (eff.concurrency_and_buffer_size || {}).concurrency} slots`)),
    h("div", {class: "card-actions"}, model, testButton,
      h("button", {type: "button", onclick: edit}, "Edit"),
      p.source === "builtin" ? null : h("button", {type: "button", class: "danger", onclick: async () => {
        if (!confirm(`Delete provider ${p.name}? Requests in flight finish; new ones get an error.`)) return;
        try { await del(`/api/providers/${encodeURIComponent(p.name)}`); toast(`Deleted ${p.name}`); refresh(); } catch (err) { toast(err.message, true); }
      }}, "Delete")),
    result);
}

// A breaker's state (runtime/core/health.py) as a badge; its numbers in the tooltip. Closed keys and
// models with no failure show nothing: the badge is there to catch the eye.
const HEALTH_CLASS = {closed: "ok", half_open: "warn", open: "err"};
function healthBadge(b, testid) {
  if (!b || (b.state === "closed" && !b.consecutive_failures)) return null;
  const tip = [`${b.consecutive_failures} failures in a row`, `error rate ${(b.error_rate * 100).toFixed(0)}% of ${b.requests_in_window}`,
    b.latency_ewma_seconds == null ? null : `latency ${fmt.ms(b.latency_ewma_seconds * 1000)}`, `opened ${b.opens}×`,
    b.next_probe_in_seconds == null ? null : `next probe in ${b.next_probe_in_seconds}s`].filter(Boolean).join(" · ");
  return h("span", {class: `badge ${HEALTH_CLASS[b.state] || "muted"}`, title: tip, "data-testid": testid, style: "margin-left:.4rem"},
    b.state.replace("_", "-"));
}

// -- editor --------------------------------------------------------------------------------------------
// The editor starts from the provider as stored (GET /api/providers/{name} shows every stored field,
// secrets masked) and changes only what its inputs hold, so saving never drops a field it does not show
// (Bedrock/Vertex credentials, default_max_tokens, ...). A secret input left empty keeps the stored value.
const VIEW_ONLY = ["name", "kind", "label", "source", "lane", "listed_models", "effective", "health"];

// Credential blocks of the native providers: [field, label, secret?, placeholder].
const KEY_BLOCKS = {
  bedrock: ["bedrock_key_config", [
    ["region", "AWS region", false, "us-east-1"],
    ["access_key", "Access key id", true, "AKIA… or env.AWS_ACCESS_KEY_ID"],
    ["secret_key", "Secret access key", true, "env.AWS_SECRET_ACCESS_KEY"],
    ["session_token", "Session token (optional)", true, "env.AWS_SESSION_TOKEN"],
  ]],
  vertex: ["vertex_key_config", [
    ["project_id", "GCP project", false, "my-project"],
    ["region", "Region", false, "us-central1"],
    ["auth_credentials", "Service-account JSON", true, "{…} or env.VERTEX_SERVICE_ACCOUNT_JSON"],
  ]],
};

function credentialHint(k) {
  const block = k.bedrock_key_config || k.vertex_key_config;
  if (!block) return "";
  return ["project_id", "region"].filter((f) => block[f]).map((f) => `${f} ${block[f]}`).join(" · ");
}

function splitList(value) {
  return value.split(",").map((s) => s.trim()).filter(Boolean);
}

const copy = (value) => (value === undefined ? undefined : JSON.parse(JSON.stringify(value)));

/** obj[field] = value, or no field at all when the input is empty (nothing stored = the default). */
function setOrDrop(obj, field, value) {
  if (value === "" || value === undefined || (Array.isArray(value) && !value.length && !(field in obj))) delete obj[field];
  else obj[field] = value;
}

/** A secret input: typed = the new value; empty = keep what is stored (the masked value goes back). */
function setSecret(obj, field, typed) {
  if (typed) obj[field] = typed;
}

function secretInput(attrs, stored, newHint) {
  return h("input", {...attrs, value: "", autocomplete: "off",
    placeholder: stored ? `${typeof stored === "string" ? stored : "••••"} (unchanged)` : newHint});
}

function openEditor(slot, existing, refresh) {
  const isNew = !existing;
  const errorBox = h("div");
  const stored = {};
  if (existing) for (const [k, v] of Object.entries(existing)) if (!VIEW_ONLY.includes(k)) stored[k] = copy(v);
  const eff = (existing && existing.effective) || {};
  const effNet = eff.network_config || {};
  const effLane = eff.concurrency_and_buffer_size || {};
  const known = existing ? types.find((t) => t.name === existing.name && !existing.custom_provider_config) : null;
  const typeSelect = h("select", {"data-path": "type", disabled: !isNew, "aria-label": "Provider type"},
    h("option", {value: "custom"}, "Custom (any compatible endpoint)"),
    types.filter((t) => t.name !== "mock").map((t) => h("option", {value: t.name}, t.label || t.name)));
  typeSelect.value = isNew ? "custom" : known ? known.name : "custom";
  const name = h("input", {value: existing ? existing.name : "", "data-path": "name", placeholder: "e.g. my-vllm", disabled: !isNew, required: true});
  const baseType = h("select", {"data-path": "custom_provider_config.base_provider_type"}, baseTypes.filter((b) => b !== "mock").map((b) => h("option", {value: b}, b)));
  baseType.value = stored.custom_provider_config ? stored.custom_provider_config.base_provider_type : "openai";
  const net = stored.network_config || {};
  const lane = stored.concurrency_and_buffer_size || {};
  const baseUrl = h("input", {value: net.base_url || "", placeholder: effNet.base_url || "http://127.0.0.1:8000", "data-path": "network_config.base_url"});
  const models = h("input", {value: (stored.models || []).join(", "), placeholder: "empty = any model", "data-path": "models"});
  const concurrency = h("input", {type: "number", min: 1, value: lane.concurrency ?? "", placeholder: String(effLane.concurrency || "profile default"), "data-path": "concurrency_and_buffer_size.concurrency"});
  const buffer = h("input", {type: "number", min: 0, value: lane.buffer_size ?? "", placeholder: String(effLane.buffer_size ?? "profile default"), "data-path": "concurrency_and_buffer_size.buffer_size"});
  const timeout = h("input", {type: "number", min: 1, step: "any", value: net.default_request_timeout_in_seconds ?? "", placeholder: String(effNet.default_request_timeout_in_seconds ?? 30), "data-path": "network_config.default_request_timeout_in_seconds"});
  const retries = h("input", {type: "number", min: 0, value: net.max_retries ?? "", placeholder: String(effNet.max_retries ?? 0), "data-path": "network_config.max_retries"});
  const keysBox = h("div", {"data-testid": "key-rows"});
  const kind = () => {
    if (typeSelect.value === "custom") return (types.find((t) => t.name === baseType.value) || {}).kind || baseType.value;
    return (types.find((t) => t.name === typeSelect.value) || {}).kind || typeSelect.value;
  };

  const keyRow = (k, i) => {
    const original = copy(k) || {};
    const azure = k.azure_key_config || {};
    const row = h("div", {class: "key-row", "data-key-row": i},
      h("input", {value: k.name || "", placeholder: "key name", "data-path": `keys[${i}].name`, "aria-label": "Key name"}),
      secretInput({"data-path": `keys[${i}].value`, "aria-label": "Key value"}, k.value, "sk-… or env.MY_KEY"),
      h("input", {value: (k.models || []).join(", "), placeholder: "models (empty = all)", "data-path": `keys[${i}].models`, "aria-label": "Models this key may serve"}),
      h("input", {type: "number", min: 0, step: "any", value: k.weight ?? "", placeholder: "weight 1", "data-path": `keys[${i}].weight`, "aria-label": "Weight"}),
      h("button", {type: "button", class: "ghost", onclick: () => row.remove(), "aria-label": "Remove key"}, "✕"));
    row.original = original;
    if (kind() === "azure") {
      row.append(
        h("input", {value: azure.endpoint || "", placeholder: "https://<resource>.openai.azure.com", "data-path": `keys[${i}].azure_key_config.endpoint`, "aria-label": "Azure endpoint"}),
        h("input", {value: Object.entries(azure.deployments || {}).map(([m, d]) => `${m}=${d}`).join(", "), placeholder: "model=deployment, …", "data-path": `keys[${i}].azure_key_config.deployments`, "aria-label": "Azure deployments"}),
        h("input", {value: azure.api_version || "2024-10-21", "data-path": `keys[${i}].azure_key_config.api_version`, "aria-label": "Azure API version"}));
    }
    const block = KEY_BLOCKS[kind()];
    if (block) {
      const [blockName, fields] = block;
      const values = k[blockName] || {};
      row.append(h("div", {class: "key-block", "data-key-block": blockName},
        fields.map(([field, label, secret, hint]) => {
          const attrs = {"data-path": `keys[${i}].${blockName}.${field}`, "aria-label": label};
          return h("label", {class: "field"}, h("span", {}, label), secret
            ? secretInput(attrs, values[field], hint)
            : h("input", {...attrs, value: values[field] ?? "", placeholder: hint}));
        })));
    }
    return row;
  };
  const addKey = (k = {}) => keysBox.append(keyRow(k, keysBox.children.length));
  (existing ? stored.keys || [] : [{name: "key-1", weight: 1}]).forEach((k) => addKey(k));

  const rerenderKeys = () => { const rows = [...keysBox.children].map(readKey); clear(keysBox); rows.forEach((k) => addKey(k)); };
  const syncType = () => {
    const t = types.find((x) => x.name === typeSelect.value);
    customRow.style.display = typeSelect.value === "custom" ? "" : "none";
    if (isNew && t) { name.value = t.name; name.disabled = true; baseUrl.placeholder = t.base_url || "per key"; }
    if (isNew && !t) { name.disabled = false; }
  };
  typeSelect.addEventListener("change", () => { syncType(); rerenderKeys(); });
  baseType.addEventListener("change", rerenderKeys);

  function readKey(row) {
    const val = (path) => row.querySelector(`[data-path$="${path}"]`)?.value ?? "";
    const key = copy(row.original) || {};
    setOrDrop(key, "name", val(".name").trim());
    setSecret(key, "value", val(".value"));
    setOrDrop(key, "models", splitList(val(".models")));
    setOrDrop(key, "weight", val(".weight") === "" ? "" : Number(val(".weight")));
    if (row.querySelector('[data-path$="azure_key_config.endpoint"]')) {
      key.azure_key_config = {...(key.azure_key_config || {}), endpoint: val("azure_key_config.endpoint").trim(), api_version: val("azure_key_config.api_version").trim(),
        deployments: Object.fromEntries(splitList(val("azure_key_config.deployments")).map((pair) => pair.split("=").map((s) => s.trim())))};
    }
    const blockBox = row.querySelector("[data-key-block]");
    if (blockBox) {
      const blockName = blockBox.dataset.keyBlock;
      const block = key[blockName] || {};
      for (const [field, , secret] of KEY_BLOCKS[kind()][1]) {
        const typed = val(`${blockName}.${field}`);
        if (secret) setSecret(block, field, typed); else setOrDrop(block, field, typed.trim());
      }
      if (Object.keys(block).length || blockName in key) key[blockName] = block;
    }
    return key;
  }

  const customRow = h("label", {class: "field"}, h("span", {}, "Speaks the API of"), baseType);
  const save = h("button", {type: "submit", class: "primary", "data-testid": "save-provider"}, isNew ? "Add provider" : "Save changes");
  const form = h("form", {class: "panel", "data-testid": "provider-editor", style: "margin-bottom:1rem", onsubmit: async (event) => {
    event.preventDefault();
    for (const el of form.querySelectorAll(".invalid")) el.classList.remove("invalid");
    clear(errorBox);
    const body = copy(stored);
    body.keys = [...keysBox.children].map(readKey);
    setOrDrop(body, "models", splitList(models.value));
    const network = body.network_config || {};
    setOrDrop(network, "base_url", baseUrl.value.trim());
    setOrDrop(network, "default_request_timeout_in_seconds", timeout.value === "" ? "" : Number(timeout.value));
    setOrDrop(network, "max_retries", retries.value === "" ? "" : Number(retries.value));
    if (Object.keys(network).length || "network_config" in stored) body.network_config = network;
    const laneBody = body.concurrency_and_buffer_size || {};
    setOrDrop(laneBody, "concurrency", concurrency.value === "" ? "" : Number(concurrency.value));
    setOrDrop(laneBody, "buffer_size", buffer.value === "" ? "" : Number(buffer.value));
    if (Object.keys(laneBody).length) body.concurrency_and_buffer_size = laneBody; else delete body.concurrency_and_buffer_size;
    if (typeSelect.value === "custom") body.custom_provider_config = {...(body.custom_provider_config || {}), base_provider_type: baseType.value};
    save.disabled = true;
    try {
      if (isNew) await post("/api/providers", {name: name.value.trim(), ...body});
      else await put(`/api/providers/${encodeURIComponent(existing.name)}`, body);
      toast(`${isNew ? "Added" : "Saved"} ${isNew ? name.value : existing.name}; applied and written to config.json`);
      clear(slot);
      await refresh();
    } catch (err) {
      showError(form, errorBox, err);
    } finally {
      save.disabled = false;
    }
  }},
  h("h2", {}, isNew ? "Add a provider" : `Edit ${existing.name}`),
  h("div", {class: "form-grid"},
    h("label", {class: "field"}, h("span", {}, "Type"), typeSelect),
    h("label", {class: "field"}, h("span", {}, "Name (used as provider/model)"), name),
    customRow,
    h("label", {class: "field"}, h("span", {}, "Base URL"), baseUrl),
    h("label", {class: "field"}, h("span", {}, "Models (allow-list)"), models),
    h("label", {class: "field"}, h("span", {}, "Concurrency"), concurrency),
    h("label", {class: "field"}, h("span", {}, "Queue (buffer size)"), buffer),
    h("label", {class: "field"}, h("span", {}, "Request timeout (s)"), timeout),
    h("label", {class: "field"}, h("span", {}, "Max retries"), retries)),
  h("h3", {}, "Keys"),
  h("p", {class: "hint"}, existing ? "Stored secrets are never shown: leave a secret empty to keep it. Write env.NAME to read a value from the environment." : "Write env.NAME to read a value from the environment instead of storing it."),
  keysBox,
  h("button", {type: "button", onclick: () => addKey({}), "data-testid": "add-key"}, "+ Add key"),
  errorBox,
  h("div", {class: "card-actions"}, save, h("button", {type: "button", onclick: () => clear(slot)}, "Cancel")));
  syncType();
  clear(slot, form);
  form.scrollIntoView({behavior: "smooth", block: "start"});
}

function showError(form, box, err) {
  const param = (err.param || "").replace(/^providers\.[^.]+\./, "");
  const target = param && (form.querySelector(`[data-path="${CSS.escape(param)}"]`)
    || form.querySelector(`[data-path^="${CSS.escape(param)}"]`));
  if (target) { target.classList.add("invalid"); target.focus(); }
  clear(box, h("div", {class: "error-box", "data-testid": "form-error"}, err.message));
}
