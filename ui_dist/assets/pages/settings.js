// Settings: client settings (applied at once and saved to config.json) and the active tuning profile.

import {api, get, put} from "../api.js";
import {clear, fmt, h, toast} from "../util.js";

const FIELDS = [
  ["drop_excess_requests", "bool", "Drop excess requests", "Answer 429 at once when a provider's queue is full, instead of waiting."],
  ["enable_logging", "bool", "Request log", "Write every request to logs.db (needs a restart to change)."],
  ["disable_content_logging", "bool", "Hide content", "Log timings and status only, not prompts and answers."],
  ["log_retention_days", "int", "Log retention (days)", "Older log records are deleted; 0 keeps everything."],
  ["initial_pool_size", "int", "Log buffer (records)", "Records held in memory before the writer catches up; beyond it they are dropped and counted."],
  ["max_request_body_size_mb", "num", "Max request body (MB)", "Larger requests are refused with 413."],
];

export function unmount() {}

export async function mount(root) {
  const [client, config, system, session, health] = await Promise.all([get("/api/client"), get("/api/config"), get("/api/system"), get("/api/session"), get("/health")]);
  const errorBox = h("div");
  const inputs = {};
  const rows = FIELDS.map(([key, kind, label, hint]) => {
    const input = kind === "bool"
      ? h("input", {type: "checkbox", checked: client[key], "data-setting": key})
      : h("input", {type: "number", min: 0, step: kind === "num" ? "any" : 1, value: client[key], "data-setting": key});
    inputs[key] = [input, kind];
    return kind === "bool"
      ? h("div", {}, h("label", {class: "check"}, input, h("strong", {}, label)), h("div", {class: "hint"}, hint))
      : h("label", {class: "field"}, h("span", {}, label), input, h("div", {class: "hint"}, hint));
  });
  const form = h("form", {class: "panel", "data-testid": "client-settings", onsubmit: async (event) => {
    event.preventDefault();
    clear(errorBox);
    const body = {};
    for (const [key, [input, kind]] of Object.entries(inputs)) body[key] = kind === "bool" ? input.checked : Number(input.value);
    try {
      const saved = await put("/api/client", body);
      toast("Settings saved and applied");
      if (saved.restart_required.length) clear(errorBox, h("div", {class: "ok-box"}, `Saved. ${saved.restart_required.join(", ")} takes effect at the next start.`));
    } catch (err) {
      const key = (err.param || "").replace(/^client\./, "");
      if (inputs[key]) inputs[key][0].classList.add("invalid");
      clear(errorBox, h("div", {class: "error-box"}, err.message));
    }
  }}, h("h2", {}, "Client settings"), h("div", {class: "grid", style: "gap:1rem"}, rows), errorBox,
  h("div", {class: "card-actions"}, h("button", {type: "submit", class: "primary", "data-testid": "save-settings"}, "Save")));

  const tuning = config.tuning;
  const profile = h("section", {class: "panel", "data-testid": "tuning-profile"},
    h("h2", {}, "Tuning profile"),
    h("p", {}, "Active profile: ", h("strong", {"data-testid": "profile-name"}, config.profile),
      h("span", {class: "hint"}, " — chosen at start-up (bifrost serve --profile cost|speed|auto); explicit settings in config.json win.")),
    h("dl", {class: "kv"}, Object.entries(tuning).filter(([k]) => k !== "profile").map(([k, v]) => [h("dt", {}, k.replaceAll("_", " ")), h("dd", {class: "mono"}, String(v))])));

  const about = h("section", {class: "panel"}, h("h2", {}, "This gateway"),
    h("dl", {class: "kv"},
      h("dt", {}, "Listening on"), h("dd", {class: "mono"}, `${config.host}:${config.port}`),
      h("dt", {}, "Workers"), h("dd", {}, String(config.workers)),
      h("dt", {}, "Uptime"), h("dd", {}, `${fmt.int(system.uptime_s / 60)} min (worker ${system.pid})`),
      h("dt", {}, "Config file"), h("dd", {class: "mono"}, config.config_path),
      h("dt", {}, "Request log"), h("dd", {class: "mono"}, config.log_db_path),
      h("dt", {}, "Admin token"), h("dd", {}, config.auth_required ? "required (listening off loopback)" : "not needed on loopback"),
      h("dt", {}, "API"), h("dd", {}, h("a", {href: "/api/openapi.json"}, "OpenAPI document"), " · ", h("a", {href: "/metrics"}, "Prometheus metrics"))),
    session.auth_required ? h("div", {class: "card-actions"}, h("button", {type: "button", onclick: async () => { await api("DELETE", "/api/session"); location.reload(); }}, "Sign out")) : null);

  // config.json fields accepted but without effect here (GET /api/config "warnings", as printed at start-up).
  const warnings = (config.warnings || []).length
    ? h("section", {class: "panel", "data-testid": "config-warnings"},
      h("h2", {}, `Config warnings (${config.warnings.length})`),
      h("p", {class: "hint"}, "These config.json fields are accepted but have no effect in this gateway."),
      h("ul", {}, config.warnings.map((w) => h("li", {class: "mono"}, w))))
    : null;

  root.append(h("div", {class: "page-head"}, h("h1", {}, "Settings")), warnings,
    h("div", {class: "grid charts"}, form, h("div", {class: "grid"}, storesPanel(health), profile, about)));
}

// Where this instance keeps what it shares (GET /health "stores": runtime/stores/status.py): the engine, its
// server or file, and whether the last operation on it worked. In cluster mode every instance shows the same
// PostgreSQL and Redis servers.
const STORE_NAMES = [["config", "Configuration"], ["logs", "Request log"], ["shared_state", "Shared state"], ["cache", "Response cache"]];

function storesPanel(health) {
  const stores = (health && health.stores) || {};
  const rows = STORE_NAMES.filter(([key]) => stores[key]).map(([key, label]) => {
    const s = stores[key];
    const badge = h("span", {class: `badge ${s.state === "down" ? "err" : s.state === "up" ? "ok" : "muted"}`, "data-testid": `store-state-${key}`}, s.state);
    return [h("dt", {}, label), h("dd", {"data-testid": `store-${key}`},
      h("span", {class: "mono"}, `${s.engine} · ${s.target}`), " ", badge,
      s.error ? h("div", {class: "hint"}, s.error) : null)];
  });
  return h("section", {class: "panel", "data-testid": "stores"}, h("h2", {}, "Stores"),
    rows.length ? h("dl", {class: "kv"}, rows) : h("p", {class: "hint"}, "No store has reported yet."),
    h("p", {class: "hint"}, "Readiness for a load balancer: ", h("a", {href: "/ready"}, "/ready"), " · liveness and store states: ", h("a", {href: "/health"}, "/health")));
}
