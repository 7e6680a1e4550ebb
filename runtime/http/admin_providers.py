"""/api/providers, /api/client, /api/config, /api/system: view and change the running gateway.

Every change goes through ConfigStore.mutate (validate, then write config.json atomically) and is
then applied to this worker at once; other workers pick it up from the file within a second. Edits
are serialised per worker by a lock and across workers by the store's file lock, so two concurrent
edits never lose each other's changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from runtime.config.load import ConfigError
from runtime.config.model import GatewayConfig
from runtime.core.context import RequestContext
from runtime.core.gateway import Gateway, encode_json
from runtime.errors import GatewayError
from runtime.http.admin_common import ADMIN, AdminBadRequest, AdminState, fail, json_response, read_object
from runtime.http.admin_views import NAME_RE, clean_entry, lane_view, merge_secrets, provider_view
from runtime.http.keys import CONFIG, GATEWAY, LOG_WRITER
from runtime.http.metrics import WORKER_METRICS, WorkerMetrics
from runtime.live import apply_config, restart_required
from runtime.providers.registry import PROVIDER_SPECS
from runtime.stores.config import ConfigWriteError, Raw, env_providers_raw

_EDIT_LOCK: web.AppKey[asyncio.Lock] = web.AppKey("admin_edit_lock")
CLIENT_FIELDS = (
    "drop_excess_requests",
    "initial_pool_size",
    "enable_logging",
    "disable_content_logging",
    "log_retention_days",
    "max_request_body_size_mb",
)


def _raw_providers(state: AdminState) -> dict[str, Any]:
    block = state.store.raw.get("providers")
    return block if isinstance(block, dict) else {}


def _view(request: web.Request, name: str) -> dict[str, Any] | None:
    gw: Gateway = request.app[GATEWAY]
    cfg = gw.config.providers.get(name)
    if cfg is None:
        return None
    block = request.app[ADMIN].store.raw.get("providers")
    if isinstance(block, dict):
        entry = block.get(name)
        source = "config" if isinstance(entry, dict) else ("builtin" if name == "mock" else "environment")
    else:  # no providers block yet: show what the first save will write for providers taken from the env
        entry = env_providers_raw(gw.config).get(name)
        source = "builtin" if name == "mock" else "environment"
    return provider_view(name, cfg, entry if isinstance(entry, dict) else None, gw.router.handles.get(name), source)


async def _edit(request: web.Request, change: Callable[[Raw], Any]) -> tuple[GatewayConfig, Any]:
    """Validate + persist + apply one edit. Raises AdminBadRequest with the field path on bad input."""
    state = request.app[ADMIN]
    async with request.app[_EDIT_LOCK]:
        try:
            new, result = await state.store.apply(change)
        except ConfigError as exc:
            raise AdminBadRequest(exc.args[0], param=exc.path or None, code="invalid_config") from None
        except UnicodeError:  # read_object refuses such text first; this keeps any other path a 400 too
            raise AdminBadRequest("text must be valid Unicode", code="invalid_config") from None
        except ConfigWriteError as exc:
            # 503: the store (a full disk, a PostgreSQL server that is down) may take the edit again later.
            # strerror names the file or host:port/db, never a secret (runtime/stores/pg.py scrubs it).
            raise AdminBadRequest(
                f"{exc.strerror}; the configuration was left as it was", status=503, code="config_write_failed"
            ) from None
        apply_config(request.app[GATEWAY], new, request.app.get(LOG_WRITER))
        if state.auth.reconfigure(new) and state.auth.sessions is not None:
            await asyncio.to_thread(state.auth.sessions.revoke_all)  # a new token ends every session
        return new, result


def _checked_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise AdminBadRequest(
            "provider name must be 1-64 letters, digits, '.', '_' or '-' (no '/'), starting with a letter or digit",
            param="name",
        )
    return name


def _entry(body: dict[str, Any]) -> dict[str, Any]:
    try:
        return clean_entry(body)
    except ValueError as exc:
        raise AdminBadRequest(str(exc)) from None


# -- providers ---------------------------------------------------------------------------------------
async def list_providers(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    items = [_view(request, name) for name in sorted(gw.config.providers)]
    return json_response({"providers": items})


async def get_provider(request: web.Request) -> web.Response:
    view = _view(request, request.match_info["name"])
    if view is None:
        return fail(f"no provider named {request.match_info['name']!r}", 404, code="not_found", param="name")
    return json_response(view)


async def create_provider(request: web.Request) -> web.Response:
    try:
        body = await read_object(request)
        name = _checked_name(body.get("name"))
        entry = _entry(body)
        if name in request.app[GATEWAY].config.providers and name != "mock":
            raise AdminBadRequest(
                f"provider {name!r} already exists; update it with PUT /api/providers/{name}",
                status=409,
                code="already_exists",
                param="name",
            )

        def change(raw: Raw) -> None:
            if name in raw["providers"]:
                raise ConfigError(f"providers.{name}", "already exists")
            raw["providers"][name] = entry

        await _edit(request, change)
    except AdminBadRequest as exc:
        return exc.response()
    return json_response(_view(request, name), status=201)


async def update_provider(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in request.app[GATEWAY].config.providers:
        return fail(f"no provider named {name!r}; create it with POST /api/providers", 404, code="not_found")
    try:
        entry = _entry(await read_object(request))

        def change(raw: Raw) -> None:
            old = raw["providers"].get(name)
            raw["providers"][name] = merge_secrets(entry, old if isinstance(old, dict) else None)

        await _edit(request, change)
    except AdminBadRequest as exc:
        return exc.response()
    return json_response(_view(request, name))


async def delete_provider(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in request.app[GATEWAY].config.providers:
        return fail(f"no provider named {name!r}", 404, code="not_found")
    if name == "mock" and "mock" not in _raw_providers(request.app[ADMIN]):
        return fail("the built-in mock provider cannot be deleted", 400, code="builtin_provider")
    try:
        await _edit(request, lambda raw: raw["providers"].pop(name, None))
    except AdminBadRequest as exc:
        return exc.response()
    return json_response({"deleted": name})


def _default_model(gw: Gateway, name: str) -> str | None:
    handle = gw.router.handles.get(name)
    if handle is None:
        return None
    cfg = handle.config
    for key in cfg.keys:
        if key.models:
            return key.models[0]
        if key.azure is not None and key.azure.deployments:
            return next(iter(key.azure.deployments))
    if cfg.models:
        return cfg.models[0]
    return handle.listed_models[0] if handle.listed_models else None


def _answer_text(data: dict[str, Any]) -> str:
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return message["content"]
        if isinstance(choices[0].get("text"), str):
            return choices[0]["text"]
    return ""


async def test_provider(request: web.Request) -> web.Response:
    """Send one small chat request through the gateway's real path (lane, keys, retries, request log)."""
    name = request.match_info["name"]
    gw: Gateway = request.app[GATEWAY]
    if name not in gw.router.handles:
        return fail(f"no provider named {name!r}", 404, code="not_found")
    try:
        body = await read_object(request) if request.can_read_body else {}
    except AdminBadRequest as exc:
        return exc.response()
    model = body.get("model") or _default_model(gw, name)
    if not isinstance(model, str) or not model:
        return fail(f"provider {name!r} lists no model; say which one to try in 'model'", param="model")
    prompt = body.get("prompt") or "Say hello in five words."
    payload = {"model": f"{name}/{model}", "messages": [{"role": "user", "content": str(prompt)}], "max_tokens": 64}
    ctx = RequestContext(gw.new_id(), "chat", ingress="admin-test")
    ctx.input_raw = encode_json(payload)
    ctx.body = dict(payload)
    started = time.perf_counter()
    try:
        targets = gw.targets(ctx, ctx.body)
        result = await gw.complete(ctx, targets)
        ctx.usage = result.usage
        ctx.output = result.raw if result.raw is not None else encode_json(result.data)
        ctx.status = 200
        data = result.data if result.data else {}
        usage = result.usage
        return json_response(
            {
                "ok": True,
                "id": ctx.id,
                "provider": name,
                "model": model,
                "status": 200,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                "answer": _answer_text(data),
                "usage": None
                if usage is None
                else {
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "total_tokens": usage.total_tokens,
                },
                "attempts": ctx.attempts,
            }
        )
    except GatewayError as err:
        ctx.status, ctx.error, ctx.error_type = err.status, err.message, err.type
        return json_response(
            {
                "ok": False,
                "id": ctx.id,
                "provider": name,
                "model": model,
                "status": err.status,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                "error": {"message": err.message, "type": err.type, "code": err.code},
                "attempts": ctx.attempts,
            }
        )
    finally:
        gw.finish(ctx)


async def provider_types(request: web.Request) -> web.Response:
    types = [
        {
            "name": s.name,
            "kind": s.kind,
            "label": s.label,
            "base_url": s.base_url,
            "key_required": s.key_required,
            "env_key": s.env_key,
            "default_models": list(s.default_models),
        }
        for s in sorted(PROVIDER_SPECS.values(), key=lambda s: s.name)
    ]
    return json_response({"types": types, "custom_base_types": sorted({s.kind for s in PROVIDER_SPECS.values()})})


# -- client settings, config, system -----------------------------------------------------------------
def _client_view(config: GatewayConfig) -> dict[str, Any]:
    client = config.client
    view = {f.name: getattr(client, f.name) for f in dataclasses.fields(client)}
    view["allowed_origins"] = list(client.allowed_origins)
    view["context_window_fallbacks"] = {k: list(v) for k, v in client.context_window_fallbacks.items()}
    return view


async def get_client(request: web.Request) -> web.Response:
    return json_response(_client_view(request.app[GATEWAY].config))


async def update_client(request: web.Request) -> web.Response:
    try:
        body = await read_object(request)
        unknown = sorted(set(body) - set(CLIENT_FIELDS))
        if unknown:
            raise AdminBadRequest(
                f"unknown client setting(s) {', '.join(unknown)}; known: {', '.join(CLIENT_FIELDS)}", param=unknown[0]
            )

        def change(raw: Raw) -> None:
            client = raw.get("client")
            raw["client"] = {**(client if isinstance(client, dict) else {}), **body}

        new, _ = await _edit(request, change)
    except AdminBadRequest as exc:
        return exc.response()
    view = _client_view(new)
    view["restart_required"] = restart_required(request.app[CONFIG].client, new.client)
    return json_response(view)


async def get_config(request: web.Request) -> web.Response:
    from runtime.http.admin_groups import groups_view  # it imports this module's _edit

    gw: Gateway = request.app[GATEWAY]
    config = gw.config
    return json_response(
        {
            "profile": config.tuning.profile,
            "tuning": dataclasses.asdict(config.tuning),
            "host": config.host,
            "port": config.port,
            "workers": config.workers,
            "app_dir": str(config.app_dir),
            # Where the document and the log live: a file here, or the PostgreSQL server (no password).
            "config_path": config.stores.config.describe() if config.stores.config else str(config.config_path),
            "log_db_path": config.stores.logs.describe() if config.stores.logs else str(config.log_db_path),
            "auth_required": request.app[ADMIN].auth.required,
            "client": _client_view(config),
            # config.json fields accepted but without effect here (Go Bifrost fields not implemented,
            # keys skipped for an unset env.NAME, ...), one line each, as printed at start-up.
            "warnings": list(config.warnings),
            "model_groups": groups_view(gw),  # as GET /api/model-groups (runtime/http/admin_groups.py)
        }
    )


async def get_system(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    state = request.app[ADMIN]
    writer = request.app.get(LOG_WRITER)
    worker = request.app.get(WORKER_METRICS)
    lanes = [{"provider": name, **(lane_view(h) or {})} for name, h in sorted(gw.router.handles.items())]
    return json_response(
        {
            "pid": os.getpid(),
            "workers": gw.config.workers,
            "profile": gw.config.tuning.profile,
            "uptime_s": round(time.time() - state.started_at, 1),
            "request_log": None
            if writer is None
            else {
                "written": writer.written,
                "pending": writer.pending,
                "dropped": writer.dropped,
                "failed": writer.failed,
            },
            "lanes": lanes,
            # All workers together (with one worker: this one), and a 5-second history for the dashboard.
            "totals": None if worker is None else _totals(worker),
            "history": [] if worker is None else list(worker.history),
        }
    )


def _totals(worker: WorkerMetrics) -> dict[str, Any]:
    merged = worker.merged()
    return {
        "workers": merged["workers"],
        "requests": sum(s[0] for s in merged["series"].values()),
        "log_written": merged["log"][0],
        "log_dropped": merged["log"][1],
        "log_pending": merged["log"][2],
        "log_failed": merged["log"][3],
    }


def add_routes(app: web.Application, wrap: Callable[[Any], Any]) -> None:
    app[_EDIT_LOCK] = asyncio.Lock()
    r = app.router
    r.add_get("/api/providers", wrap(list_providers))
    r.add_post("/api/providers", wrap(create_provider))
    r.add_get("/api/providers/{name}", wrap(get_provider))
    r.add_put("/api/providers/{name}", wrap(update_provider))
    r.add_delete("/api/providers/{name}", wrap(delete_provider))
    r.add_post("/api/providers/{name}/test", wrap(test_provider))
    r.add_get("/api/provider-types", wrap(provider_types))
    r.add_get("/api/client", wrap(get_client))
    r.add_put("/api/client", wrap(update_client))
    r.add_get("/api/config", wrap(get_config))
    r.add_get("/api/system", wrap(get_system))
