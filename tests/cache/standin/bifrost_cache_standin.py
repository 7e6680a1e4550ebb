"""A small stand-in for the `semantic_cache` plugin, for the admin API, /metrics and UI tests.

The real plugin is runtime/cache/plugin.py (built by another part of issue 12, registered as a built-in);
a built-in always wins over an entry point of the same name (runtime/plugins/registry.py `find`), so
once it lands these tests drive the real plugin and this module is simply not loaded. Until then this
one, installed the real way (a dist-info whose entry_points.txt declares it, as tests/test_hooks.py does),
gives the admin side what the contract says a cache plugin exposes: `name`, `counters` (CacheCounters),
`store` (a CacheStore) and `settings` (with `to_config()` in Go's field names). It caches only
non-streaming chat answers, in exact mode, in memory: enough to make hits, misses and entries real.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from runtime.cache.stats import CacheCounters
from runtime.cache.store import CacheEntry, StoreStats
from runtime.core.context import RequestContext
from runtime.providers.base import ParsedResponse, Usage

GO_DEFAULTS: dict[str, Any] = {
    "dimension": 1,
    "ttl": 300,
    "threshold": 0.8,
    "conversation_history_threshold": 3,
    "cache_by_model": True,
    "cache_by_provider": True,
    "exclude_system_prompt": False,
}


class MemoryStore:
    """The CacheStore interface (runtime/cache/store.py) over two dicts."""

    def __init__(self) -> None:
        self.by_id: dict[str, CacheEntry] = {}
        self.by_hash: dict[str, CacheEntry] = {}
        self.expired = 0

    async def open(self) -> None:
        return None

    async def get(self, request_hash: str, now: float) -> CacheEntry | None:
        entry = self.by_hash.get(request_hash)
        if entry is not None and entry.expires_at <= now:
            self._drop(entry)
            self.expired += 1
            return None
        return entry

    async def nearest(
        self, params_hash: str, vector: Sequence[float], threshold: float, now: float
    ) -> tuple[CacheEntry, float] | None:
        return None

    def put(self, entry: CacheEntry) -> None:
        old = self.by_hash.get(entry.request_hash)
        if old is not None:
            self._drop(old)
        entry.size = len(json.dumps(entry.response)) + len(entry.prompt_text)
        self.by_id[entry.id] = entry
        self.by_hash[entry.request_hash] = entry

    def touch(self, entry: CacheEntry, now: float) -> None:
        entry.hits += 1
        entry.last_hit_at = now

    def _drop(self, entry: CacheEntry) -> None:
        self.by_id.pop(entry.id, None)
        self.by_hash.pop(entry.request_hash, None)

    async def find(self, entry_id: str) -> CacheEntry | None:
        return self.by_id.get(entry_id)

    async def delete(self, entry_id: str) -> bool:
        entry = self.by_id.get(entry_id)
        if entry is None:
            return False
        self._drop(entry)
        return True

    async def delete_by_cache_key(self, cache_key: str) -> int:
        doomed = [e for e in self.by_id.values() if e.cache_key == cache_key]
        for entry in doomed:
            self._drop(entry)
        return len(doomed)

    async def clear(self) -> int:
        n = len(self.by_id)
        self.by_id.clear()
        self.by_hash.clear()
        return n

    async def list(self, search: str | None, limit: int, offset: int) -> tuple[list[CacheEntry], int]:
        entries = sorted(self.by_id.values(), key=lambda e: e.created_at, reverse=True)
        if search:
            s = search.casefold()
            entries = [
                e
                for e in entries
                if s in e.prompt_text.casefold() or s in e.model.casefold() or s in e.cache_key.casefold()
            ]
        return entries[offset : offset + limit], len(entries)

    def stats(self) -> StoreStats:
        return StoreStats(
            entries=len(self.by_id),
            bytes=sum(e.size for e in self.by_id.values()),
            evicted=0,
            expired=self.expired,
            write_errors=0,
        )

    async def close(self) -> None:
        return None


class Settings:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = {**GO_DEFAULTS, **config}

    def to_config(self) -> dict[str, Any]:
        return dict(self.config)


class StandinCache:
    name = "semantic_cache"
    # Go Bifrost's fields (config.schema.json), checked by the loader like any plugin's.
    config_fields = {
        "provider": str,
        "keys": list,
        "embedding_model": str,
        "cleanup_on_shutdown": bool,
        "ttl": (int, str),
        "threshold": (int, float),
        "vector_store_namespace": str,
        "dimension": int,
        "default_cache_key": str,
        "conversation_history_threshold": int,
        "cache_by_model": bool,
        "cache_by_provider": bool,
        "exclude_system_prompt": bool,
    }

    def __init__(self, config: dict[str, Any]) -> None:
        self.settings = Settings(config)
        self.counters = CacheCounters()
        self.store = MemoryStore()
        self.pending: dict[str, tuple[str, str]] = {}  # request id -> (hash, cache key) of a miss

    async def pre_hook(self, ctx: RequestContext) -> Any:
        cache_key = ctx.headers.get("x-bf-cache-key") or self.settings.config.get("default_cache_key")
        if ctx.endpoint != "chat" or ctx.stream or not cache_key:
            return None
        started = time.perf_counter()
        self.counters.requests += 1
        vk = getattr(ctx.caller, "virtual_key_id", None)
        body = {k: v for k, v in ctx.body.items() if k not in ("stream", "stream_options", "user")}
        digest = hashlib.sha256(json.dumps([cache_key, vk, body], sort_keys=True).encode()).hexdigest()
        entry = await self.store.get(digest, time.time())
        self.counters.lookup_seconds_sum["direct"] += time.perf_counter() - started
        self.counters.lookup_count["direct"] += 1
        if entry is None:
            self.counters.misses["direct"] += 1
            ctx.cache = "miss"
            ctx.response_headers = {**(ctx.response_headers or {}), "x-bf-cache": "miss"}
            self.pending[ctx.id] = (digest, cache_key)
            return None
        self.store.touch(entry, time.time())
        c = self.counters
        c.hits["direct"] += 1
        c.saved_cost += entry.cost or 0.0
        c.saved_prompt_tokens += entry.prompt_tokens
        c.saved_completion_tokens += entry.completion_tokens
        c.saved_upstream_ms += entry.upstream_ms
        ctx.cache = "hit-direct"
        ctx.response_headers = {**(ctx.response_headers or {}), "x-bf-cache": "hit-direct", "x-bf-cache-id": entry.id}
        ctx.provider, ctx.model, ctx.cost = entry.provider, entry.model, 0.0
        return ParsedResponse(dict(entry.response), Usage(entry.prompt_tokens, entry.completion_tokens))

    async def post_hook(self, ctx: RequestContext, response: ParsedResponse | None) -> None:
        pending = self.pending.pop(ctx.id, None)
        if pending is None:
            return
        if response is None or ctx.status != 200:
            self.counters.not_stored += 1
            return
        data = response.data if response.data is not None else json.loads(response.raw or b"{}")
        messages = ctx.body.get("messages") or []
        prompt = str(messages[-1].get("content", "")) if messages and isinstance(messages[-1], dict) else ""
        ttl = self.settings.config.get("ttl", 300)
        now = time.time()
        usage = ctx.usage
        self.store.put(
            CacheEntry(
                id=ctx.id,
                request_hash=pending[0],
                params_hash=pending[0],
                cache_key=pending[1],
                virtual_key_id=getattr(ctx.caller, "virtual_key_id", None),
                endpoint=ctx.endpoint,
                provider=ctx.provider,
                model=ctx.model,
                created_at=now,
                expires_at=now + (ttl if isinstance(ttl, int) else 300),
                response=data,
                prompt_text=prompt,
                prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                cost=ctx.cost,
                upstream_ms=ctx.upstream_ns / 1e6,
            )
        )
        self.counters.stored += 1
