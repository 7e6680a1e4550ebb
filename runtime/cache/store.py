"""What a cache store holds and the interface every engine implements (embedded SQLite today; PostgreSQL
and Redis in cluster mode, issue 14).

An entry is one complete, successful answer, stored in OpenAI's shape (a `chat.completion`, a
`text_completion` or an embeddings `list`): the plugin turns it back into whatever the client speaks
(runtime/cache/replay.py). Its `id` is the id of the request that produced it, so the request log row of
that request and the entry name each other, and Go Bifrost's `DELETE /api/cache/clear/{id}` takes it.

Lookups are on the request path, so an engine answers them from memory where it can; writes
(`put`, `touch`) never make a request wait: they are visible to lookups at once and persisted in the
background, in batches. Every method that reads the store is bounded in time by the engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import ujson


@dataclass(slots=True)
class CacheEntry:
    id: str  # the id of the request whose answer this is
    request_hash: str  # the exact-mode key (runtime/cache/key.py): unique per store, namespace included
    params_hash: str  # everything but the prompt text, namespace included: a semantic match must equal it
    cache_key: str  # the x-bf-cache-key (or default_cache_key) it was stored under, for clear-by-key
    virtual_key_id: str | None  # the virtual key's id (never its value) the entry is scoped to, None: none
    endpoint: str  # "chat" | "completions" | "embeddings"
    provider: str  # the provider and model that answered
    model: str
    created_at: float  # unix seconds
    expires_at: float  # unix seconds; an entry is never served at or after it
    response: dict[str, Any]  # the answer in OpenAI's shape, usage included
    prompt_text: str  # the text semantic mode embeds (and the UI shows and searches), bounded by the plugin
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None  # what the original answer cost in dollars (a hit saves this); None: unpriced
    upstream_ms: float = 0.0  # how long the provider took (a hit saves this)
    embedding: Sequence[float] | None = None  # semantic mode only: the prompt's unit-length vector
    size: int = 0  # bytes the entry counts against the store's byte cap (set by the store on put)
    hits: int = 0
    last_hit_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # engine-private bookkeeping (never serialised)


# How the engines' tables hold an entry, column by column (the embedding as little-endian float32 bytes).
ENTRY_COLUMNS = (
    "request_hash",
    "id",
    "params_hash",
    "cache_key",
    "virtual_key_id",
    "endpoint",
    "provider",
    "model",
    "created_at",
    "expires_at",
    "response",
    "prompt_text",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "upstream_ms",
    "embedding",
    "size",
    "hits",
    "last_hit_at",
)


def entry_from_record(record: Mapping[str, Any]) -> tuple[CacheEntry, bytes | None]:
    """A stored row, by ENTRY_COLUMNS name, as an entry and its embedding bytes. Raises ValueError,
    TypeError or KeyError for a row that cannot be one (the engines skip it)."""
    entry = CacheEntry(
        id=record["id"],
        request_hash=record["request_hash"],
        params_hash=record["params_hash"],
        cache_key=record["cache_key"],
        virtual_key_id=record["virtual_key_id"],
        endpoint=record["endpoint"],
        provider=record["provider"],
        model=record["model"],
        created_at=record["created_at"],
        expires_at=record["expires_at"],
        response=ujson.loads(record["response"]),
        prompt_text=record["prompt_text"],
        prompt_tokens=record["prompt_tokens"],
        completion_tokens=record["completion_tokens"],
        cost=record["cost"],
        upstream_ms=record["upstream_ms"],
        size=record["size"],
        hits=record["hits"],
        last_hit_at=record["last_hit_at"],
    )
    return entry, record["embedding"]


@dataclass(slots=True)
class StoreStats:
    entries: int
    bytes: int
    evicted: int  # entries dropped for the caps since start (expired ones are not counted here)
    expired: int  # entries dropped because their TTL passed, since start
    write_errors: int  # background writes that failed or were dropped (queue full); the entry stays served


class CacheStore(Protocol):
    """One engine's cache entries. `now` is unix seconds (the plugin's clock, injectable in tests)."""

    async def open(self) -> None:
        """Load what the engine keeps between restarts. Called once, before the first lookup."""
        ...

    async def get(self, request_hash: str, now: float) -> CacheEntry | None:
        """The live entry stored under `request_hash` (exact mode), else None. Expired entries are None."""
        ...

    async def nearest(
        self, params_hash: str, vector: Sequence[float], threshold: float, now: float
    ) -> tuple[CacheEntry, float] | None:
        """Semantic mode: the live entry with `params_hash` whose embedding is most similar (cosine) to
        `vector`, with its similarity, if that is at least `threshold`; else None."""
        ...

    def put(self, entry: CacheEntry, response_json: str | None = None) -> None:
        """Store (or replace, by request_hash) an entry: visible to lookups at once, persisted in the
        background. Enforces the caps by evicting the least recently used entries. `response_json`:
        `entry.response` already encoded by the caller (ujson, ensure_ascii and escape_forward_slashes
        off), so it is not encoded again."""
        ...

    def touch(self, entry: CacheEntry, now: float) -> None:
        """Count a hit (hits, last_hit_at; recency for eviction). Persisted in the background."""
        ...

    async def find(self, entry_id: str) -> CacheEntry | None:
        """The entry with this id (live or not yet swept), for the admin API."""
        ...

    async def delete(self, entry_id: str) -> bool:
        """Remove the entry with this id; whether there was one."""
        ...

    async def delete_by_cache_key(self, cache_key: str) -> int:
        """Remove every entry stored under this cache key; how many."""
        ...

    async def clear(self) -> int:
        """Remove every entry; how many."""
        ...

    async def list(self, search: str | None, limit: int, offset: int) -> tuple[list[CacheEntry], int]:
        """Entries newest first, optionally only those whose prompt text, model, cache key or id contains
        `search` (case-insensitive); and how many match in all. `limit` is capped at 500."""
        ...

    def stats(self) -> StoreStats:
        """Counts from memory (no I/O)."""
        ...

    async def close(self) -> None:
        """Flush pending writes and release the engine (at shutdown, or when the plugin is switched off)."""
        ...
