"""The OpenAPI 3 description of /api and /ws, served at /api/openapi.json.

Written by hand as data (small helpers keep it short); tests/admin/test_openapi.py checks that every
/api route the app registers is described here, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

J = dict[str, Any]


def _ref(name: str) -> J:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: J, description: str = "OK") -> J:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _q(name: str, description: str, schema: J | None = None) -> J:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_ERR = {
    "400": _json(_ref("Error"), "Invalid input; error.param names the field"),
    "401": _json(_ref("Error"), "Admin token required (only when listening off loopback)"),
    "403": _json(
        _ref("Error"),
        "Cross-site request refused: an Origin other than the gateway's own (or one listed exactly in "
        "client.allowed_origins), or, on loopback, a Host that is not a loopback name",
    ),
    "415": _json(_ref("Error"), "The request body must be sent as Content-Type: application/json"),
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}

FILTERS = [
    _q("since", "Start of the time range, unix milliseconds (inclusive)", {"type": "integer"}),
    _q("until", "End of the time range, unix milliseconds (exclusive)", {"type": "integer"}),
    _q("last", "Window in seconds ending now (overrides since)", {"type": "integer"}),
    _q("provider", "Comma-separated provider names"),
    _q("model", "Comma-separated model names"),
    _q("status", "Comma-separated: success, error, 2xx, 4xx, 5xx or an HTTP code"),
    _q("stream", "true or false", {"type": "boolean"}),
    _q("endpoint", "chat, completions, embeddings, ..."),
    _q("min_latency_ms", "Minimum total latency", {"type": "integer"}),
    _q("max_latency_ms", "Maximum total latency", {"type": "integer"}),
    _q("q", "Text to find in the request, response or error (substring, case-insensitive for ASCII)"),
    _q("virtual_key_id", "Comma-separated virtual key ids (governance)"),
    _q("team_id", "A team's virtual keys (as configured now); with virtual_key_id, their intersection"),
    _q("guardrail", "Rows where this guardrail rule (its name) acted; at most 256 printable characters"),
    _q(
        "guardrail_action",
        "Rows where a guardrail rule took this action: block, redact or flag (with guardrail: that rule did)",
    ),
]
PAGING = [
    _q("sort", "ts, latency, overhead, tokens or status", {"type": "string", "default": "ts"}),
    _q("order", "asc or desc", {"type": "string", "default": "desc"}),
    _q("limit", "Page size, 1-500", {"type": "integer", "default": 50}),
    _q("offset", "Rows to skip", {"type": "integer", "default": 0}),
]

_USAGE_NOTE = (
    "current usage is read from the ledger's shared counters (every worker and instance): null when the "
    "gateway runs no limits (started without governance); usage_error set when the store cannot be read"
)
_WINDOW = {"type": "string", "format": "date-time", "nullable": True, "readOnly": True}


def _rate_kind(kind: str) -> J:
    return {
        f"{kind}_max_limit": {"type": "integer", "minimum": 1, "nullable": True},
        f"{kind}_reset_duration": {"type": "string", "nullable": True, "example": "1m"},
        f"{kind}_current_usage": {"type": "integer", "nullable": True, "readOnly": True},
        f"{kind}_last_reset": {**_WINDOW, "description": "Start of the current window"},
        f"{kind}_reset_at": {**_WINDOW, "description": "End of the current window (when usage resets)"},
    }


def _owner(extra: J, required: tuple[str, ...] = ("name",)) -> J:
    """A team, customer or virtual key: config fields, Go's inline budget/rate_limit on write, and the
    embedded budget and rate limit (with usage) on read."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {
            "id": {"type": "string", "description": "Optional at creation (a UUID is made)"},
            "name": {"type": "string"},
            **extra,
            "budget_id": {"type": "string", "nullable": True},
            "rate_limit_id": {"type": "string", "nullable": True},
            "budget": {
                **_ref("Budget"),
                "description": "Read: the linked budget with its usage. Write (Go's inline form): update the "
                "entity's own budget, or create one and link it",
            },
            "rate_limit": {**_ref("RateLimit"), "description": "As budget, for the rate limit"},
        },
    }


SCHEMAS: J = {
    "Budget": {
        "type": "object",
        "description": "governance.budgets[] in config.json; " + _USAGE_NOTE,
        "required": ["max_limit", "reset_duration"],
        "properties": {
            "id": {"type": "string", "description": "Optional at creation (a UUID is made)"},
            "max_limit": {"type": "number", "minimum": 0, "description": "Dollars per window"},
            "reset_duration": {"type": "string", "example": "1M", "description": "30s, 5m, 1h, 1d, 1w, 1M, 1Y"},
            "calendar_aligned": {"type": "boolean", "default": False},
            "current_usage": {"type": "number", "nullable": True, "readOnly": True, "description": "Dollars"},
            "last_reset": {**_WINDOW, "description": "Start of the current window"},
            "reset_at": {**_WINDOW, "description": "End of the current window (when usage resets)"},
            "usage_error": {"type": "string", "readOnly": True},
        },
    },
    "RateLimit": {
        "type": "object",
        "description": "governance.rate_limits[] in config.json (a kind left null is not limited); " + _USAGE_NOTE,
        "properties": {
            "id": {"type": "string", "description": "Optional at creation (a UUID is made)"},
            **_rate_kind("token"),
            **_rate_kind("request"),
            "usage_error": {"type": "string", "readOnly": True},
        },
    },
    "Customer": _owner(
        {"teams": {"type": "array", "readOnly": True, "items": {"type": "object"}, "description": "[{id, name}]"}}
    ),
    "Team": _owner(
        {
            "customer_id": {"type": "string", "nullable": True},
            "customer": {"type": "object", "nullable": True, "readOnly": True, "description": "{id, name}"},
        }
    ),
    "VirtualKey": _owner(
        {
            "description": {"type": "string"},
            "is_active": {"type": "boolean", "default": True},
            "team_id": {"type": "string", "nullable": True},
            "customer_id": {"type": "string", "nullable": True},
            "expires_at": {"type": "string", "format": "date-time", "nullable": True},
            "provider_configs": {
                "type": "array",
                "items": {"type": "object"},
                "description": "{provider, weight, allowed_models, allowed_keys, budget_id, rate_limit_id}; on "
                "read, an entry with a budget_id/rate_limit_id also has budget/rate_limit with usage",
            },
            "value": {
                "type": "string",
                "readOnly": True,
                "description": "sk-bf-…: only in the answer of create and rotate, never again",
            },
        }
    ),
    "Error": {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "code": {"type": "string", "nullable": True},
                    "param": {"type": "string", "nullable": True},
                },
            }
        },
    },
    "Key": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "value": {
                "type": "string",
                "description": "Write: the key, or env.NAME. Read: masked (never the key); "
                "send the masked value (or omit it) to keep the stored one",
            },
            "value_source": {"type": "string", "enum": ["inline", "env", "none"], "readOnly": True},
            "name_source": {
                "type": "string",
                "enum": ["default"],
                "readOnly": True,
                "description": "Present when the stored key has no name and `name` is the loader's default",
            },
            "models": {"type": "array", "items": {"type": "string"}, "description": "Allow-list; empty = any"},
            "weight": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
            "azure_key_config": {
                "type": "object",
                "properties": {
                    "endpoint": {"type": "string"},
                    "deployments": {"type": "object", "additionalProperties": {"type": "string"}},
                    "api_version": {"type": "string"},
                },
            },
            "bedrock_key_config": {
                "type": "object",
                "description": "access_key, secret_key, session_token (masked on read), region, deployments, arn",
            },
            "vertex_key_config": {
                "type": "object",
                "description": "project_id, region, auth_credentials (masked on read)",
            },
        },
        "additionalProperties": True,
        "description": "Any field the config loader accepts for a key. Fields named like secrets (value, "
        "*_key, *_token, *_secret, *credentials, ...) are masked on read at any depth; a masked, null or omitted "
        "secret keeps the stored value on write",
    },
    "NetworkConfig": {
        "type": "object",
        "properties": {
            "base_url": {"type": "string"},
            "extra_headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Values are masked on read",
            },
            "default_request_timeout_in_seconds": {"type": "number"},
            "connect_timeout_in_seconds": {"type": "number"},
            "first_byte_timeout_in_seconds": {"type": "number", "nullable": True},
            "first_token_timeout_in_seconds": {"type": "number", "nullable": True},
            "stream_idle_timeout_in_seconds": {"type": "number"},
            "max_retries": {"type": "integer"},
            "retry_backoff_initial_ms": {"type": "integer"},
            "retry_backoff_max_ms": {"type": "integer"},
        },
    },
    "Lane": {
        "type": "object",
        "properties": {
            "in_flight": {"type": "integer"},
            "queued": {"type": "integer"},
            "concurrency": {"type": "integer"},
            "buffer_size": {"type": "integer"},
            "dropped": {"type": "integer"},
        },
    },
    "ProviderInput": {
        "type": "object",
        "properties": {
            "keys": {"type": "array", "items": _ref("Key")},
            "network_config": _ref("NetworkConfig"),
            "concurrency_and_buffer_size": {
                "type": "object",
                "properties": {"concurrency": {"type": "integer"}, "buffer_size": {"type": "integer"}},
            },
            "models": {"type": "array", "items": {"type": "string"}},
            "custom_provider_config": {"type": "object", "properties": {"base_provider_type": {"type": "string"}}},
            "default_max_tokens": {
                "type": "integer",
                "description": "Anthropic-format providers: max_tokens when the request has none (docs/providers.md)",
            },
            "circuit_breaker": {
                "type": "object",
                "description": "Skip a failing key or model (docs/health.md): enabled, consecutive_failures, "
                "error_rate, min_requests, window_seconds, cooldown_seconds, max_cooldown_seconds",
            },
            "load_balancing": {"type": "string", "enum": ["weighted", "adaptive"]},
        },
        "additionalProperties": True,
        "description": "A config.json providers.<name> entry (Go Bifrost schema): every field the config loader "
        "accepts. Reads show the stored entry (secrets masked), so a GET then PUT changes nothing",
    },
    "Provider": {
        "allOf": [
            _ref("ProviderInput"),
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "kind": {"type": "string"},
                    "label": {"type": "string"},
                    "source": {"type": "string", "enum": ["config", "environment", "builtin"]},
                    "lane": _ref("Lane"),
                    "listed_models": {"type": "array", "items": {"type": "string"}},
                    "effective": {
                        "type": "object",
                        "readOnly": True,
                        "description": "What the gateway runs with (defaults and the tuning profile filled in): "
                        "models, network_config, concurrency_and_buffer_size (with explicit), keys",
                    },
                    "health": {
                        "type": "object",
                        "nullable": True,
                        "readOnly": True,
                        "description": "This worker's circuit breakers (docs/health.md): circuit_breaker (on or "
                        "off), keys and models, each {state: closed|half_open|open, consecutive_failures, "
                        "error_rate, requests_in_window, latency_ewma_seconds, opens, next_probe_in_seconds}; "
                        "null when the provider keeps none",
                    },
                },
            },
        ]
    },
    "Client": {
        "type": "object",
        "properties": {
            "drop_excess_requests": {"type": "boolean"},
            "initial_pool_size": {"type": "integer"},
            "enable_logging": {"type": "boolean", "description": "Applies at the next start"},
            "disable_content_logging": {"type": "boolean"},
            "log_retention_days": {"type": "integer"},
            "max_request_body_size_mb": {"type": "number"},
        },
    },
    "LogRecord": {
        "type": "object",
        "description": "A request-log row (columns of logs.db table logs)",
        "additionalProperties": True,
        "properties": {
            "id": {"type": "string"},
            "ts_ms": {"type": "integer"},
            "endpoint": {"type": "string"},
            "provider": {"type": "string"},
            "model": {"type": "string"},
            "status": {"type": "integer"},
            "stream": {"type": "boolean"},
            "latency_us": {"type": "integer"},
            "overhead_us": {"type": "integer"},
            "total_tokens": {"type": "integer", "nullable": True},
            "cost": {
                "type": "number",
                "nullable": True,
                "description": "US dollars from the model catalog and pricing_overrides; null when unpriced",
            },
            "attempts": {"type": "array", "items": {"type": "object"}, "nullable": True},
            "guardrails": {
                "type": "array",
                "nullable": True,
                "description": "What guardrails did: one {rule, provider, stage, action, types, count, error?} per "
                "rule that acted (never a matched value); null when nothing fired",
                "items": {"type": "object"},
            },
        },
    },
    "LogPage": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref("LogRecord")},
            "total": {"type": "integer", "nullable": True},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "has_more": {"type": "boolean"},
            "query_ms": {"type": "number"},
        },
    },
    "Stats": {
        "type": "object",
        "additionalProperties": True,
        "properties": {
            "count": {"type": "integer"},
            "success_rate": {"type": "number", "nullable": True},
            "avg_latency_ms": {"type": "number"},
            "p50_latency_ms": {"type": "number"},
            "p99_latency_ms": {"type": "number"},
            "total_tokens": {"type": "integer"},
            "cost": {"type": "number", "nullable": True, "description": "US dollars over the priced rows"},
            "stages_avg_us": {"type": "object"},
            "by_provider": {"type": "array", "items": {"type": "object"}},
            "by_model": {"type": "array", "items": {"type": "object"}},
            "percentiles": {"type": "object", "description": "sampled=true when p50/p99 come from a uniform sample"},
        },
    },
    "Histogram": {
        "type": "object",
        "additionalProperties": True,
        "properties": {
            "bucket_ms": {"type": "integer"},
            "series": {"type": "array", "items": {"type": "object"}},
            "by_provider": {"type": "object", "additionalProperties": {"type": "array"}},
        },
    },
}


def _op(
    summary: str,
    responses: J,
    *,
    params: list[J] | None = None,
    body: J | None = None,
    tags: tuple[str, ...] = ("admin",),
) -> J:
    op: J = {"summary": summary, "tags": list(tags), "responses": {**responses, **_ERR}}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


PATHS: J = {
    "/api/session": {
        "get": _op(
            "Whether an admin token is required and whether this client has one",
            {"200": _json({"type": "object"})},
            tags=("auth",),
        ),
        "post": _op(
            "Sign in: exchange the admin token for an HttpOnly session cookie (a random id, not the token)",
            {"200": _json({"type": "object"})},
            body={"type": "object", "properties": {"token": {"type": "string"}}},
            tags=("auth",),
        ),
        "delete": _op(
            "Sign out: revokes the session server-side (every worker) and clears the cookie",
            {"200": _json({"type": "object"})},
            tags=("auth",),
        ),
    },
    "/api/drain": {  # runtime/http/health.py, docs/failure-policy.md
        "post": _op(
            "Drain this instance: GET /ready answers 503 on every worker (requests are still served)",
            {"200": _json({"type": "object", "properties": {"draining": {"type": "boolean"}}})},
            tags=("health",),
        ),
        "delete": _op(
            "Undo a drain: GET /ready answers 200 again (unless the instance is stopping)",
            {"200": _json({"type": "object", "properties": {"draining": {"type": "boolean"}}})},
            tags=("health",),
        ),
    },
    "/api/providers": {
        "get": _op(
            "List providers (keys masked) with live lane counts",
            {
                "200": _json(
                    {"type": "object", "properties": {"providers": {"type": "array", "items": _ref("Provider")}}}
                )
            },
            tags=("providers",),
        ),
        "post": _op(
            "Create a provider; applies at once and persists to config.json",
            {"201": _json(_ref("Provider")), "409": _json(_ref("Error"), "Already exists")},
            body={
                "allOf": [
                    _ref("ProviderInput"),
                    {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                ]
            },
            tags=("providers",),
        ),
    },
    "/api/providers/{name}": {
        "parameters": [_NAME],
        "get": _op("One provider", {"200": _json(_ref("Provider")), "404": _json(_ref("Error"))}, tags=("providers",)),
        "put": _op(
            "Replace a provider's settings (masked or omitted key values keep the stored ones)",
            {"200": _json(_ref("Provider")), "404": _json(_ref("Error"))},
            body=_ref("ProviderInput"),
            tags=("providers",),
        ),
        "delete": _op(
            "Delete a provider (in-flight requests finish)",
            {"200": _json({"type": "object"}), "404": _json(_ref("Error"))},
            tags=("providers",),
        ),
    },
    "/api/providers/{name}/test": {
        "parameters": [_NAME],
        "post": _op(
            "Send one small chat request through the gateway and report the answer or the error",
            {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "ok": {"type": "boolean"},
                            "answer": {"type": "string"},
                            "status": {"type": "integer"},
                            "latency_ms": {"type": "number"},
                            "error": _ref("Error"),
                            "id": {"type": "string"},
                        },
                    }
                )
            },
            body={"type": "object", "properties": {"model": {"type": "string"}, "prompt": {"type": "string"}}},
            tags=("providers",),
        ),
    },
    # Governance (runtime/http/admin_governance*.py): Go Bifrost's paths and shapes; see _governance_paths.
    "/api/provider-types": {
        "get": _op(
            "Known provider types (for the add-provider form)", {"200": _json({"type": "object"})}, tags=("providers",)
        )
    },
    "/api/client": {
        "get": _op("Client settings", {"200": _json(_ref("Client"))}, tags=("settings",)),
        "put": _op(
            "Change client settings (partial); restart_required lists what applies only at restart",
            {"200": _json(_ref("Client"))},
            body=_ref("Client"),
            tags=("settings",),
        ),
    },
    "/api/config": {
        "get": _op(
            "Active tuning profile, tuning knobs, listen address, workers, paths, and `warnings`: one line per "
            "config.json field accepted without effect",
            {"200": _json({"type": "object"})},
            tags=("settings",),
        )
    },
    "/api/model-groups": {
        "get": _op(
            "Model groups (config.json model_groups): each with its strategy, targets (model, weight, usable) "
            "and fallbacks; `error` when no target is usable now",
            {
                "200": _json(
                    {"type": "object", "properties": {"model_groups": {"type": "array", "items": {"type": "object"}}}}
                )
            },
            tags=("settings",),
        ),
        "put": _op(
            "Replace every model group (validated with field paths, persisted to config.json, applied at once); "
            "an empty object removes them all",
            {
                "200": _json(
                    {"type": "object", "properties": {"model_groups": {"type": "array", "items": {"type": "object"}}}}
                )
            },
            body={"type": "object", "required": ["model_groups"], "properties": {"model_groups": {"type": "object"}}},
            tags=("settings",),
        ),
    },
    "/api/system": {
        "get": _op(
            "This worker: request-log counters and per-lane in_flight/queued",
            {"200": _json({"type": "object"})},
            tags=("settings",),
        )
    },
    "/api/logs": {
        "get": _op(
            "List request-log records (newest first by default)",
            {"200": _json(_ref("LogPage"))},
            params=FILTERS + PAGING,
            tags=("logs",),
        )
    },
    "/api/logs/stats": {
        "get": _op(
            "Count, success rate, avg/p50/p99 latency, tokens, per-stage overhead, by "
            "provider and model (default range: last 24 h)",
            {"200": _json(_ref("Stats"))},
            params=[
                *FILTERS,
                _q(
                    "group_by",
                    "virtual_key: add by_virtual_key [{virtual_key_id, count, success, total_tokens, cost}]",
                    {"type": "string", "enum": ["virtual_key"]},
                ),
            ],
            tags=("logs",),
        )
    },
    "/api/logs/histogram": {
        "get": _op(
            "Requests, errors, latency (avg/p50/p99), tokens per time bucket, overall "
            "and per provider (default range: last hour)",
            {"200": _json(_ref("Histogram"))},
            params=[*FILTERS, _q("buckets", "Number of buckets, 1-500", {"type": "integer", "default": 60})],
            tags=("logs",),
        )
    },
    "/api/logs/facets": {
        "get": _op("Providers and models present in the log", {"200": _json({"type": "object"})}, tags=("logs",))
    },
    "/api/logs/{id}": {
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "get": _op(
            "One record in full: request, response, attempts, stage timings",
            {"200": _json(_ref("LogRecord")), "404": _json(_ref("Error"))},
            tags=("logs",),
        ),
    },
    "/api/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"})}, tags=("meta",))},
    "/ws": {
        "get": _op(
            "WebSocket: {type: hello} then {type: logs, items: [LogRecord]} per committed batch "
            "(input/output trimmed); {type: lagged} when a slow client skipped batches. Browsers cannot set "
            "headers on a WebSocket, so this route (and only this one) also accepts the admin token as ?token=",
            {"101": {"description": "Switching protocols"}},
            tags=("logs",),
        )
    },
}


LIST_PARAMS = [
    _q("search", "A case-insensitive part of the name or id"),
    _q("limit", "Page size, 0 (all) to 1000", {"type": "integer", "default": 0}),
    _q("offset", "Entries to skip", {"type": "integer", "default": 0}),
]


def _governance_paths() -> J:
    """CRUD paths of the governance entities: {list, create} on the collection, {get, update, delete} on one."""
    paths: J = {}
    tags = ("governance",)
    conflict = {"409": _json(_ref("Error"), "The id exists already (already_exists) or is in use (in_use)")}
    missing = {"404": _json(_ref("Error"), "No such id (not_found)")}
    for route, many, one, schema, path_param, filters in (
        ("virtual-keys", "virtual_keys", "virtual_key", "VirtualKey", "vk_id", ("team_id", "customer_id")),
        ("teams", "teams", "team", "Team", "id", ("customer_id",)),
        ("customers", "customers", "customer", "Customer", "id", ()),
        ("budgets", "budgets", "budget", "Budget", "id", ()),
        ("rate-limits", "rate_limits", "rate_limit", "RateLimit", "id", ()),
    ):
        base = f"/api/governance/{route}"
        listing = {
            "type": "object",
            "properties": {
                many: {"type": "array", "items": _ref(schema)},
                "count": {"type": "integer", "description": "Entries in this answer"},
                "total_count": {"type": "integer", "description": "Entries matching the filters"},
                "limit": {"type": "integer"},
                "offset": {"type": "integer"},
            },
        }
        single = {"type": "object", "properties": {one: _ref(schema)}}
        changed = {"type": "object", "properties": {"message": {"type": "string"}, one: _ref(schema)}}
        paths[base] = {
            "get": _op(
                f"List {many.replace('_', ' ')} with current usage",
                {"200": _json(listing)},
                params=[
                    *(_q(f, f"Only those with this {f}") for f in filters),
                    *LIST_PARAMS,
                ],
                tags=tags,
            ),
            "post": _op(
                f"Create a {one.replace('_', ' ')} (live at once; stored in config.json)",
                {"201": _json(changed), **conflict},
                body=_ref(schema),
                tags=tags,
            ),
        }
        paths[f"{base}/{{{path_param}}}"] = {
            "parameters": [{"name": path_param, "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": _op(f"One {one.replace('_', ' ')} with current usage", {"200": _json(single), **missing}, tags=tags),
            "put": _op(
                f"Update a {one.replace('_', ' ')}: the fields given change, null removes a field",
                {"200": _json(changed), **missing},
                body=_ref(schema),
                tags=tags,
            ),
            "delete": _op(
                f"Delete a {one.replace('_', ' ')} (409 in_use while anything refers to it)",
                {"200": _json({"type": "object"}), **missing, **conflict},
                tags=tags,
            ),
        }
    paths["/api/governance/virtual-keys/{vk_id}/rotate"] = {
        "parameters": [{"name": "vk_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "post": _op(
            "New value for a virtual key (shown once); the old value stops working at once",
            {
                "200": _json(
                    {"type": "object", "properties": {"message": {"type": "string"}, "virtual_key": _ref("VirtualKey")}}
                ),
                **missing,
            },
            tags=tags,
        ),
    }
    return paths


PATHS.update(_governance_paths())


def _cache_paths() -> J:
    """/api/cache (runtime/http/admin_cache.py): Go Bifrost's two clear routes and ours."""
    tags = ("cache",)
    off = {"409": _json(_ref("Error"), "Response caching is off (cache_disabled)")}
    slow = {"503": _json(_ref("Error"), "The cache store did not answer within 10 s (cache_store_timeout)")}
    missing = {"404": _json(_ref("Error"), "No entry with this id (not_found)")}
    deleted = {
        "type": "object",
        "properties": {"message": {"type": "string"}, "deleted": {"type": "integer", "description": "Entries removed"}},
    }
    entry_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "The id of the request whose answer the entry holds (its x-request-id; x-bf-cache-id on hits)",
        "schema": {"type": "string", "maxLength": 128},
    }
    config_body = {
        "type": "object",
        "properties": {
            "enabled": {"type": "boolean", "default": True},
            "config": {
                "type": "object",
                "description": "Go Bifrost's semantic_cache fields (provider, embedding_model, ttl, threshold, "
                "dimension, default_cache_key, conversation_history_threshold, cache_by_model, "
                "cache_by_provider, exclude_system_prompt, keys, ...), checked by the config.json loader; "
                "omitted: the stored settings, or the defaults. Omitted keys keep the stored ones.",
            },
        },
    }
    return {
        "/api/cache/stats": {
            "get": _op(
                "Whether caching is on, its settings (Go names, without keys), entries and bytes, hit rate, "
                "hits and misses by mode (direct, semantic), saved cost / tokens / upstream time, coalesced, "
                "stored / not stored, average lookup time by mode, evicted / expired / write errors. Counters "
                "are every worker's; with caching off: enabled false and zeros",
                {"200": _json(_ref("CacheStats"))},
                tags=tags,
            )
        },
        "/api/cache/entries": {
            "get": _op(
                "Cache entries, newest first (empty with caching off); never the virtual key's value",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "enabled": {"type": "boolean"},
                                "entries": {"type": "array", "items": _ref("CacheEntry")},
                                "count": {"type": "integer"},
                                "total_count": {"type": "integer"},
                                "limit": {"type": "integer"},
                                "offset": {"type": "integer"},
                            },
                        }
                    ),
                    **slow,
                },
                params=[
                    _q(
                        "search",
                        "A case-insensitive part of the prompt, model or cache key (at most 200 characters)",
                        {"type": "string", "maxLength": 200},
                    ),
                    _q("limit", "Page size, 1-500", {"type": "integer", "default": 50, "minimum": 1, "maximum": 500}),
                    _q("offset", "Entries to skip", {"type": "integer", "default": 0, "minimum": 0}),
                ],
                tags=tags,
            )
        },
        "/api/cache/entries/{id}": {
            "parameters": [entry_id],
            "get": _op(
                "One entry with its full prompt text and the stored answer (OpenAI's shape)",
                {
                    "200": _json({"type": "object", "properties": {"entry": _ref("CacheEntry")}}),
                    **missing,
                    **off,
                    **slow,
                },
                tags=tags,
            ),
        },
        "/api/cache/clear": {"delete": _op("Remove every entry", {"200": _json(deleted), **off, **slow}, tags=tags)},
        "/api/cache/clear/{id}": {
            "parameters": [entry_id],
            "delete": _op(
                "Go Bifrost's route: remove the entry made by this request",
                {"200": _json(deleted), **missing, **off, **slow},
                tags=tags,
            ),
        },
        "/api/cache/clear-by-key/{key}": {
            "parameters": [
                {
                    "name": "key",
                    "in": "path",
                    "required": True,
                    "description": "An x-bf-cache-key (or the default_cache_key), percent-encoded",
                    "schema": {"type": "string", "maxLength": 256},
                }
            ],
            "delete": _op(
                "Go Bifrost's route: remove every entry stored under this cache key (deleted: how many, maybe 0)",
                {"200": _json(deleted), **off, **slow},
                tags=tags,
            ),
        },
        "/api/cache/config": {
            "get": _op(
                "The semantic_cache entry of config.json (enabled, config without keys, keys_configured), "
                "whether the running gateway caches (active, effective settings), restart_required, and the "
                "defaults the UI's switch writes",
                {"200": _json(_ref("CacheConfig"))},
                tags=tags,
            ),
            "put": _op(
                "Turn caching on or off and change its settings: written to config.json's plugins through the "
                "config store (validated like the file: a bad field is a 400 whose param is its path, e.g. "
                "plugins[0].config.ttl), applied to the running gateway where it can rebuild the plugin, "
                "else at the next start (restart_required)",
                {"200": _json(_ref("CacheConfig"))},
                body=config_body,
                tags=tags,
            ),
        },
    }


PATHS.update(_cache_paths())
_MODES = {"type": "object", "properties": {"direct": {"type": "number"}, "semantic": {"type": "number"}}}
SCHEMAS["CacheStats"] = {
    "type": "object",
    "properties": {
        "enabled": {"type": "boolean"},
        "config": {"type": "object", "nullable": True, "description": "Go field names; never the keys"},
        "entries": {"type": "integer"},
        "bytes": {"type": "integer"},
        "requests": {"type": "integer", "description": "Requests that consulted the cache"},
        "hits": {**_MODES, "description": "By mode, and total"},
        "misses": {**_MODES, "description": "By mode, and total"},
        "hit_rate": {"type": "number", "description": "hits / requests, 0 to 1"},
        "saved": {
            "type": "object",
            "properties": {
                "cost": {"type": "number", "description": "Dollars the hits would have cost"},
                "prompt_tokens": {"type": "integer"},
                "completion_tokens": {"type": "integer"},
                "upstream_seconds": {"type": "number", "description": "Provider time the hits did not wait for"},
            },
        },
        "coalesced": {"type": "integer"},
        "stored": {"type": "integer"},
        "not_stored": {"type": "integer"},
        "embedding_errors": {"type": "integer"},
        "lookup_ms_avg": {**_MODES, "description": "Average lookup time by mode (null: no lookup yet)"},
        "evicted": {"type": "integer"},
        "expired": {"type": "integer"},
        "write_errors": {"type": "integer"},
    },
}
SCHEMAS["CacheEntry"] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "The request id whose answer this is"},
        "cache_key": {"type": "string"},
        "virtual_key_id": {"type": "string", "nullable": True, "description": "Its id, never its value"},
        "endpoint": {"type": "string"},
        "provider": {"type": "string"},
        "model": {"type": "string"},
        "created_at": {"type": "number", "description": "Unix seconds"},
        "expires_at": {"type": "number", "description": "Unix seconds"},
        "expired": {"type": "boolean"},
        "hits": {"type": "integer"},
        "last_hit_at": {"type": "number", "nullable": True},
        "size": {"type": "integer", "description": "Bytes counted against the cap"},
        "cost": {"type": "number", "nullable": True, "description": "What the original answer cost (dollars)"},
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "upstream_ms": {"type": "number"},
        "prompt_preview": {"type": "string", "maxLength": 200},
        "prompt_text": {"type": "string", "description": "One entry only"},
        "semantic": {"type": "boolean", "description": "One entry only: it has an embedding"},
        "response": {"type": "object", "description": "One entry only: the stored answer"},
    },
}
SCHEMAS["CacheConfig"] = {
    "type": "object",
    "properties": {
        "enabled": {"type": "boolean", "description": "config.json's semantic_cache entry is enabled"},
        "config": {"type": "object", "description": "Its settings, without keys"},
        "keys_configured": {"type": "integer"},
        "active": {"type": "boolean", "description": "The running gateway caches now"},
        "effective": {"type": "object", "nullable": True, "description": "The running plugin's settings"},
        "restart_required": {"type": "boolean"},
        "defaults": {"type": "object"},
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
}

DOCUMENT: J = {
    "openapi": "3.0.3",
    "info": {
        "title": "Bifrost management API",
        "version": "1",
        "description": "Configure providers and client settings of the running gateway and read its request "
        "log. Open on loopback; off loopback every route except /api/session needs the "
        "admin token (Authorization: Bearer, or the cookie set by POST /api/session).",
    },
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "bifrost_admin"},
        },
    },
    "security": [{}, {"bearer": []}, {"cookie": []}],
    "paths": PATHS,
}


async def serve(request: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)
