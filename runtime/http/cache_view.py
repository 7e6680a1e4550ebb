"""What the admin API and /metrics read of the response cache (issue 12): the running `semantic_cache`
plugin, its counters as plain JSON, several workers' counters added up, and one entry as the API shows it.

The plugin (runtime/cache/plugin.py) is looked up in `gateway.hooks.plugins` at read time, never cached
here: a live config edit may add, replace or remove it. Absent means caching is off.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any

from runtime.cache.stats import MODES, CacheCounters
from runtime.cache.store import CacheEntry
from runtime.core.gateway import Gateway
from runtime.core.text import repair

PLUGIN_NAME = "semantic_cache"
PREVIEW_CHARS = 200  # of the prompt, in entry lists (the full text is in the one-entry answer)
# Config fields that hold secrets (the embedding provider's keys): never in an answer.
SECRET_FIELDS = ("keys",)


def cache_plugin(gateway: Gateway) -> Any | None:
    for plugin in gateway.hooks.plugins:
        if getattr(plugin, "name", "") == PLUGIN_NAME:
            return plugin
    return None


def counters_snapshot(counters: CacheCounters) -> dict[str, Any]:
    """JSON-able copy (what each worker publishes for /metrics)."""
    return dataclasses.asdict(counters)


def merge_counters(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counter snapshots added up field by field (numbers, and per-mode dicts per mode)."""
    total = counters_snapshot(CacheCounters())
    for snap in snapshots:
        for name, value in snap.items():
            if name not in total:
                continue  # a field of another version: ignore rather than fail the scrape
            if isinstance(value, dict):
                for mode, n in value.items():
                    if isinstance(n, (int, float)):
                        total[name][mode] = total[name].get(mode, 0) + n
            elif isinstance(value, (int, float)):
                total[name] += value
    return total


def public_config(config: Any) -> dict[str, Any]:
    """A semantic_cache config without its secrets."""
    if not isinstance(config, dict):
        return {}
    return {k: v for k, v in config.items() if k not in SECRET_FIELDS}


def settings_view(plugin: Any) -> dict[str, Any] | None:
    settings = getattr(plugin, "settings", None)
    to_config = getattr(settings, "to_config", None)
    if to_config is None:
        return None
    return public_config(to_config())


def stats_view(plugin: Any | None, counters: dict[str, Any] | None) -> dict[str, Any]:
    """GET /api/cache/stats: `counters` are the merged snapshot of every worker (or this one's)."""
    if plugin is None:
        return {"enabled": False, "config": None, **_numbers(counters_snapshot(CacheCounters()))}
    stats = plugin.store.stats()
    return {
        "enabled": True,
        "config": settings_view(plugin),
        **_numbers(counters if counters is not None else counters_snapshot(plugin.counters)),
        "entries": stats.entries,
        "bytes": stats.bytes,
        "evicted": stats.evicted,
        "expired": stats.expired,
        "write_errors": stats.write_errors,
    }


def _numbers(c: dict[str, Any]) -> dict[str, Any]:
    hits = sum(c["hits"].values())
    requests = c["requests"]
    lookup_avg = {
        mode: (c["lookup_seconds_sum"][mode] / c["lookup_count"][mode] * 1000 if c["lookup_count"].get(mode) else None)
        for mode in MODES
    }
    return {
        "requests": requests,
        "hits": {**c["hits"], "total": hits},
        "misses": {**c["misses"], "total": sum(c["misses"].values())},
        "hit_rate": hits / requests if requests else 0.0,
        "saved": {
            "cost": c["saved_cost"],
            "prompt_tokens": c["saved_prompt_tokens"],
            "completion_tokens": c["saved_completion_tokens"],
            "upstream_seconds": c["saved_upstream_ms"] / 1000,
        },
        "coalesced": c["coalesced"],
        "stored": c["stored"],
        "not_stored": c["not_stored"],
        "embedding_errors": c["embedding_errors"],
        "lookup_ms_avg": lookup_avg,
        "entries": 0,
        "bytes": 0,
        "evicted": 0,
        "expired": 0,
        "write_errors": 0,
    }


def entry_view(entry: CacheEntry, now: float | None = None, *, full: bool = False) -> dict[str, Any]:
    """One entry as the API shows it: never the virtual key's value (entries only hold its id), never the
    embedding vector. Text is repaired so a stored lone surrogate cannot break the JSON encoder."""
    now = time.time() if now is None else now
    view: dict[str, Any] = {
        "id": entry.id,
        "cache_key": repair(entry.cache_key),
        "virtual_key_id": entry.virtual_key_id,
        "endpoint": entry.endpoint,
        "provider": entry.provider,
        "model": repair(entry.model),
        "created_at": entry.created_at,
        "expires_at": entry.expires_at,
        "expired": entry.expires_at <= now,
        "hits": entry.hits,
        "last_hit_at": entry.last_hit_at or None,
        "size": entry.size,
        "cost": entry.cost,
        "prompt_tokens": entry.prompt_tokens,
        "completion_tokens": entry.completion_tokens,
        "upstream_ms": entry.upstream_ms,
        "prompt_preview": repair(entry.prompt_text[:PREVIEW_CHARS]),
    }
    if full:
        view["prompt_text"] = repair(entry.prompt_text)
        view["semantic"] = entry.embedding is not None
        view["response"] = entry.response
    return view
