"""/api/cache: the response cache's settings, numbers and entries (issue 12 item 6).

Go Bifrost's two routes, with its paths: `DELETE /api/cache/clear/{id}` (the entry made by that request;
404 when there is none) and `DELETE /api/cache/clear-by-key/{key}` (every entry stored under that
x-bf-cache-key; how many). Ours besides: `DELETE /api/cache/clear` (everything), `GET /api/cache/stats`,
`GET /api/cache/entries` (search and paging), `GET /api/cache/entries/{id}` (with the stored answer), and
`GET|PUT /api/cache/config`, which reads and writes the `semantic_cache` entry of config.json's `plugins`
through the config store like every admin edit (validated by the loader that reads the file, so a bad
field is a 400 naming its path; applied to the running gateway by runtime/live.py).

With caching off (no `semantic_cache` plugin running) stats say `"enabled": false`, the entry list is
empty, and the routes that act on entries answer 409 `cache_disabled`. The embedding provider's `keys`
never appear in an answer. Every input is bounded; every store read is bounded in time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from runtime.http.admin_common import AdminBadRequest, fail, json_response, read_object, unstorable_text
from runtime.http.admin_providers import _edit
from runtime.http.cache_view import (
    PLUGIN_NAME,
    SECRET_FIELDS,
    cache_plugin,
    counters_snapshot,
    entry_view,
    public_config,
    settings_view,
    stats_view,
)
from runtime.http.keys import GATEWAY
from runtime.http.metrics import WORKER_METRICS
from runtime.stores.config import Raw
from runtime.stores.status import StoreUnavailable

T = TypeVar("T")
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_SEARCH = 200
MAX_ID = 128  # entry ids are request ids
MAX_CACHE_KEY = 256
STORE_TIMEOUT_S = 10.0  # a store read or delete that takes longer is answered 503, never waited on forever
# What the UI's on switch (and a PUT without a config, when config.json has none) writes: direct (exact)
# mode with no embedding provider, five minutes, and a default cache key so requests are cached without
# an x-bf-cache-key header.
DEFAULT_CONFIG: dict[str, Any] = {"dimension": 1, "ttl": 300, "default_cache_key": "default"}
PUT_FIELDS = ("enabled", "config")


def _disabled() -> web.Response:
    return fail(
        'response caching is off: turn it on with PUT /api/cache/config {"enabled": true} '
        "(or a semantic_cache entry in config.json's plugins)",
        409,
        code="cache_disabled",
    )


async def _bounded(call: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(call, STORE_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise AdminBadRequest(
            f"the cache store did not answer within {STORE_TIMEOUT_S:g} s", status=503, code="cache_store_timeout"
        ) from None
    except StoreUnavailable as exc:  # cluster mode: PostgreSQL down or refusing (the message has no secret)
        raise AdminBadRequest(
            f"the cache store is unavailable: {exc}", status=503, code="cache_store_unavailable"
        ) from None


def _text(value: str, name: str, maximum: int) -> str:
    """A bounded, storable string: a store (SQLite) could not take a lone surrogate, so it never gets one."""
    if len(value) > maximum:
        raise AdminBadRequest(f"{name} must be at most {maximum} characters", param=name)
    if unstorable_text(value, name) is not None:
        raise AdminBadRequest(f"{name} must be valid Unicode text", param=name)
    return value


def _path_value(request: web.Request, name: str, maximum: int) -> str:
    value = request.match_info[name]
    if not value:
        raise AdminBadRequest(f"{name} must be 1 to {maximum} characters", param=name)
    return _text(value, name, maximum)


def _whole(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise AdminBadRequest(f"{name} must be a whole number from {low} to {high}, got {raw[:40]!r}", param=name)
    return int(raw)


def _plugin_or_none(request: web.Request) -> Any | None:
    return cache_plugin(request.app[GATEWAY])


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _answers_bad_input(handler: Handler) -> Handler:
    """AdminBadRequest raised anywhere in the handler becomes its documented error answer."""

    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except AdminBadRequest as exc:
            return exc.response()

    wrapped.__name__ = handler.__name__
    return wrapped


# -- numbers ----------------------------------------------------------------------------------------
def _counters(request: web.Request, plugin: Any) -> dict[str, Any]:
    """Every worker's counters added up (the same numbers /metrics reports), else this worker's."""
    worker = request.app.get(WORKER_METRICS)
    merged = worker.merged().get("cache") if worker is not None else None
    return merged if merged is not None else counters_snapshot(plugin.counters)


async def get_stats(request: web.Request) -> web.Response:
    plugin = _plugin_or_none(request)
    return json_response(stats_view(plugin, None if plugin is None else _counters(request, plugin)))


# -- entries ----------------------------------------------------------------------------------------
async def list_entries(request: web.Request) -> web.Response:
    search = _text(request.query.get("search") or "", "search", MAX_SEARCH) or None
    limit = _whole(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _whole(request, "offset", 0, 0, 10**9)
    plugin = _plugin_or_none(request)
    if plugin is None:
        return json_response(
            {"enabled": False, "entries": [], "count": 0, "total_count": 0, "limit": limit, "offset": offset}
        )
    entries, total = await _bounded(plugin.store.list(search, limit, offset))
    now = time.time()
    items = [entry_view(e, now) for e in entries]
    return json_response(
        {"enabled": True, "entries": items, "count": len(items), "total_count": total, "limit": limit, "offset": offset}
    )


async def get_entry(request: web.Request) -> web.Response:
    entry_id = _path_value(request, "id", MAX_ID)
    plugin = _plugin_or_none(request)
    if plugin is None:
        return _disabled()
    entry = await _bounded(plugin.store.find(entry_id))
    if entry is None:
        return fail(f"no cache entry with id {entry_id!r}", 404, code="not_found", param="id")
    return json_response({"entry": entry_view(entry, full=True)})


async def clear_entry(request: web.Request) -> web.Response:
    """Go's DELETE /api/cache/clear/{requestId}: the entry that request's answer made."""
    entry_id = _path_value(request, "id", MAX_ID)
    plugin = _plugin_or_none(request)
    if plugin is None:
        return _disabled()
    if not await _bounded(plugin.store.delete(entry_id)):
        return fail(f"no cache entry with id {entry_id!r}", 404, code="not_found", param="id")
    return json_response({"message": "Cache entry deleted successfully", "id": entry_id, "deleted": 1})


async def clear_by_key(request: web.Request) -> web.Response:
    """Go's DELETE /api/cache/clear-by-key/{cacheKey}: every entry stored under that x-bf-cache-key."""
    key = _path_value(request, "key", MAX_CACHE_KEY)
    plugin = _plugin_or_none(request)
    if plugin is None:
        return _disabled()
    deleted = await _bounded(plugin.store.delete_by_cache_key(key))
    return json_response({"message": "Cache entries deleted successfully", "cache_key": key, "deleted": deleted})


async def clear_all(request: web.Request) -> web.Response:
    plugin = _plugin_or_none(request)
    if plugin is None:
        return _disabled()
    deleted = await _bounded(plugin.store.clear())
    return json_response({"message": "Cache cleared successfully", "deleted": deleted})


# -- config -----------------------------------------------------------------------------------------
def _file_entry(raw: Any) -> tuple[int, dict[str, Any]] | None:
    plugins = raw.get("plugins") if isinstance(raw, dict) else None
    if isinstance(plugins, list):
        for i, item in enumerate(plugins):
            if isinstance(item, dict) and item.get("name") == PLUGIN_NAME:
                return i, item
    return None


def _config_view(request: web.Request) -> dict[str, Any]:
    gw = request.app[GATEWAY]
    warnings = gw.config.warnings  # the running config's (an edit applied on this worker is running)
    found = _file_entry(dict(gw.config.raw))
    entry = found[1] if found is not None else {}
    stored = entry.get("config")
    config: dict[str, Any] = stored if isinstance(stored, dict) else {}
    enabled = found is not None and entry.get("enabled", True) is True
    plugin = cache_plugin(gw)
    keys = config.get("keys")
    return {
        "enabled": enabled,
        "config": public_config(config),
        "keys_configured": len(keys) if isinstance(keys, list) else 0,
        # What the running gateway does now: a config change that the running gateway did not pick up
        # (no live rebuild of the plugin) takes effect at the next start.
        "active": plugin is not None,
        "effective": settings_view(plugin) if plugin is not None else None,
        "restart_required": enabled != (plugin is not None),
        "defaults": DEFAULT_CONFIG,
        "warnings": [w for w in warnings if found is not None and w.startswith(f"plugins[{found[0]}]")],
    }


async def get_config(request: web.Request) -> web.Response:
    return json_response(_config_view(request))


async def put_config(request: web.Request) -> web.Response:
    body = await read_object(request)
    unknown = sorted(k for k in body if k not in PUT_FIELDS)
    if unknown:
        raise AdminBadRequest(f"unknown field {unknown[0]!r}; fields: {', '.join(PUT_FIELDS)}", param=unknown[0])
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise AdminBadRequest("enabled must be true or false", param="enabled")
    config = body.get("config")
    if config is not None and not isinstance(config, dict):
        raise AdminBadRequest("config must be an object of semantic_cache settings", param="config")
    for secret in SECRET_FIELDS:
        if config is not None and secret in config and not isinstance(config[secret], list):
            raise AdminBadRequest(f"config.{secret} must be a list", param=f"config.{secret}")

    def change(raw: Raw) -> None:
        plugins = raw.setdefault("plugins", [])
        if not isinstance(plugins, list):
            raise AdminBadRequest("config.json `plugins` is not a list; fix the file first", param="plugins")
        found = _file_entry(raw)
        old = found[1] if found is not None else {}
        old_config = old.get("config") if isinstance(old.get("config"), dict) else None
        new_config = dict(config) if config is not None else dict(old_config or DEFAULT_CONFIG)
        for secret in SECRET_FIELDS:  # answers never show the keys, so a config sent back keeps them
            if secret not in new_config and old_config is not None and secret in old_config:
                new_config[secret] = old_config[secret]
        item = {**old, "name": PLUGIN_NAME, "enabled": enabled, "config": new_config}
        if found is None:
            plugins.append(item)
        else:
            plugins[found[0]] = item

    await _edit(request, change)
    return json_response(_config_view(request))


def add_routes(app: web.Application, wrap: Callable[[Any], Any]) -> None:
    r = app.router
    w = lambda handler: wrap(_answers_bad_input(handler))  # noqa: E731
    r.add_get("/api/cache/stats", w(get_stats))
    r.add_get("/api/cache/entries", w(list_entries))
    r.add_get("/api/cache/entries/{id}", w(get_entry))
    r.add_delete("/api/cache/clear", w(clear_all))
    r.add_delete("/api/cache/clear/{id}", w(clear_entry))
    # A cache key may hold a '/' (sent as %2F, which the router sees decoded) or a newline: any character.
    r.add_delete("/api/cache/clear-by-key/{key:[\\s\\S]+}", w(clear_by_key))
    r.add_get("/api/cache/config", w(get_config))
    r.add_put("/api/cache/config", w(put_config))
