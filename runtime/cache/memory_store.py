"""An in-memory CacheStore: entries for this process only, lost at restart.

The gateway uses the embedded SQLite engine (runtime/cache/sqlite_store.py); this one is for the
plugin's unit tests and in-process benchmarks, where persistence is not the point. Lookups are dict
reads; `nearest` is a linear scan over the entries with the same params hash (the SQLite engine has an
index for large stores).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import ujson

from runtime.cache.store import CacheEntry, StoreStats


def entry_size(entry: CacheEntry, response_json: str | None = None) -> int:
    """Bytes an entry counts against the byte cap: its answer and prompt, roughly as stored."""
    vector = len(entry.embedding) * 4 if entry.embedding is not None else 0
    if response_json is None:
        response_json = ujson.dumps(entry.response, ensure_ascii=False, escape_forward_slashes=False)
    return len(response_json) + len(entry.prompt_text.encode()) + vector + 256


class MemoryCacheStore:
    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._by_hash: OrderedDict[str, CacheEntry] = OrderedDict()  # least recently used first
        self._bytes = 0
        self._evicted = 0
        self._expired = 0

    async def open(self) -> None:
        return None

    def _drop(self, entry: CacheEntry) -> None:
        if self._by_hash.get(entry.request_hash) is entry:
            del self._by_hash[entry.request_hash]
            self._bytes -= entry.size

    async def get(self, request_hash: str, now: float) -> CacheEntry | None:
        entry = self._by_hash.get(request_hash)
        if entry is None:
            return None
        if now >= entry.expires_at:
            self._drop(entry)
            self._expired += 1
            return None
        return entry

    async def nearest(
        self, params_hash: str, vector: Sequence[float], threshold: float, now: float
    ) -> tuple[CacheEntry, float] | None:
        best: tuple[CacheEntry, float] | None = None
        for entry in list(self._by_hash.values()):
            if entry.params_hash != params_hash or entry.embedding is None or now >= entry.expires_at:
                continue
            score = cosine(vector, entry.embedding)
            if score >= threshold and (best is None or score > best[1]):
                best = (entry, score)
        return best

    def put(self, entry: CacheEntry, response_json: str | None = None) -> None:
        old = self._by_hash.get(entry.request_hash)
        if old is not None:
            self._drop(old)
        entry.size = entry_size(entry, response_json)
        self._by_hash[entry.request_hash] = entry
        self._bytes += entry.size
        while self._by_hash and (len(self._by_hash) > self.max_entries or self._bytes > self.max_bytes):
            _, victim = self._by_hash.popitem(last=False)
            self._bytes -= victim.size
            self._evicted += 1

    def touch(self, entry: CacheEntry, now: float) -> None:
        entry.hits += 1
        entry.last_hit_at = now
        if self._by_hash.get(entry.request_hash) is entry:
            self._by_hash.move_to_end(entry.request_hash)

    async def find(self, entry_id: str) -> CacheEntry | None:
        return next((e for e in self._by_hash.values() if e.id == entry_id), None)

    async def delete(self, entry_id: str) -> bool:
        entry = await self.find(entry_id)
        if entry is None:
            return False
        self._drop(entry)
        return True

    async def delete_by_cache_key(self, cache_key: str) -> int:
        victims = [e for e in self._by_hash.values() if e.cache_key == cache_key]
        for entry in victims:
            self._drop(entry)
        return len(victims)

    async def clear(self) -> int:
        count = len(self._by_hash)
        self._by_hash.clear()
        self._bytes = 0
        return count

    async def list(self, search: str | None, limit: int, offset: int) -> tuple[list[CacheEntry], int]:
        entries = sorted(self._by_hash.values(), key=lambda e: e.created_at, reverse=True)
        if search:
            needle = search.lower()
            entries = [
                e
                for e in entries
                if needle in e.prompt_text.lower() or needle in e.model.lower() or needle in e.cache_key.lower()
            ]
        return entries[offset : offset + limit], len(entries)

    def stats(self) -> StoreStats:
        return StoreStats(len(self._by_hash), self._bytes, self._evicted, self._expired, 0)

    async def close(self) -> None:
        return None


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b):
        return -1.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0
