"""What semantic lookups search, for every cache engine that keeps its entries in memory (the embedded
SQLite store and the cluster store): one vector index per parameters hash (a semantic match must have the
same model and parameters, so each namespace is searched alone), the entries by label, and the start-up
build that indexes what an engine loaded without blocking the loop.

    add(entry, vec) / remove(entry)   keep an entry's vector in its namespace's index (its label lives in
                                      entry.extra["label"])
    search(...)                       the most similar live entry at or above the threshold, and the
                                      expired entries met on the way (the engine drops them)
    building / build()                while an engine loads, changes are logged; build() indexes them in a
                                      thread, then applies what was logged meanwhile; searches miss until then

Imported only in semantic mode: it loads numpy and usearch (runtime/cache/vectors.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from runtime.cache.store import CacheEntry
from runtime.cache.vectors import VectorIndex, unit

log = logging.getLogger("bifrost.cache")

# Candidates asked of an index per search, widened once when none of the first is live (the nearest may be
# expired, or a label whose entry was replaced).
CANDIDATES = (16, 128)


class SemanticIndex:
    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.indexes: dict[str, VectorIndex] = {}
        self.by_label: dict[int, CacheEntry] = {}
        self._next_label = 1
        self.building = False  # while the engine loads: changes go to _log, searches miss
        self._log: list[tuple[str, str, int, Any]] = []

    # -- vectors ---------------------------------------------------------------------------------------
    def unit(self, vector: Sequence[float] | np.ndarray) -> np.ndarray | None:
        """`vector` at unit length, or None when it cannot be used (wrong size, zero, not finite)."""
        return unit(vector, self.dimension)

    def from_blob(self, blob: bytes | None) -> np.ndarray | None:
        """A stored embedding (little-endian float32). One of another size was stored under another
        embedding model: None, the entry serves exact lookups only."""
        if blob is None or len(blob) != 4 * self.dimension:
            return None
        return unit(np.frombuffer(blob, dtype="<f4"), self.dimension)

    # -- entries ---------------------------------------------------------------------------------------
    def add(self, entry: CacheEntry, vec: np.ndarray) -> None:
        label = self._next_label
        self._next_label += 1
        entry.extra["label"] = label
        self.by_label[label] = entry
        self._op("add", entry.params_hash, label, vec)

    def remove(self, entry: CacheEntry) -> None:
        label = entry.extra.pop("label", None)
        if label is not None:
            self.by_label.pop(label, None)
            self._op("remove", entry.params_hash, label, None)

    def _op(self, kind: str, params_hash: str, label: int, vec: Any) -> None:
        if self.building:
            self._log.append((kind, params_hash, label, vec))
            return
        index = self.indexes.get(params_hash)
        if kind == "add":
            if index is None:
                index = self.indexes[params_hash] = VectorIndex(self.dimension)
            # On the loop: a flat insert is a row copy; a graph insert ~0.5 ms at 256 dimensions and 100,000
            # entries, ~1.4 ms at 1,536 and 20,000 (bench/cache_index.py). Once per stored semantic miss,
            # which also paid an embedding call and an upstream call.
            index.add(label, vec)
        elif index is not None:
            index.remove(label)
            if not len(index):
                del self.indexes[params_hash]

    async def build(self) -> None:
        """Index what was logged while the engine loaded, in a thread; then apply what was logged
        meanwhile, on the loop. A failed build leaves semantic lookups empty, never the engine down."""
        snapshot, self._log = self._log, []
        final: dict[int, tuple[str, Any]] = {}
        for kind, params_hash, label, vec in snapshot:
            if kind == "add":
                final[label] = (params_hash, vec)
            else:
                final.pop(label, None)
        groups: dict[str, tuple[list[int], list[Any]]] = {}
        for label, (params_hash, vec) in final.items():
            labels, vecs = groups.setdefault(params_hash, ([], []))
            labels.append(label)
            vecs.append(vec)
        dimension = self.dimension

        def build() -> dict[str, VectorIndex]:
            built: dict[str, VectorIndex] = {}
            for params_hash, (labels, vecs) in groups.items():
                index = built[params_hash] = VectorIndex(dimension)
                index.add_many(labels, np.stack(vecs))
            return built

        try:
            self.indexes = await asyncio.to_thread(build)
        except Exception:
            log.exception("cache: building the vector index failed; semantic lookups start empty")
            self.indexes = {}
        finally:
            self.building = False
            pending, self._log = self._log, []
            for kind, params_hash, label, vec in pending:
                self._op(kind, params_hash, label, vec)

    # -- lookups ---------------------------------------------------------------------------------------
    def search(
        self, params_hash: str, vector: Sequence[float], threshold: float, now: float
    ) -> tuple[tuple[CacheEntry, float] | None, list[CacheEntry]]:
        """(the most similar live entry of `params_hash` with its similarity, if at least `threshold`;
        the expired entries met on the way, for the engine to drop)."""
        expired: list[CacheEntry] = []
        # (a NaN threshold compares False with everything: it would accept anything)
        if self.building or not threshold <= 1.0:
            return None, expired
        index = self.indexes.get(params_hash)
        if index is None:
            return None, expired
        query = self.unit(vector)
        if query is None:
            return None, expired
        for k in CANDIDATES:
            matches = index.search_unit(query, k)
            for label, similarity in matches:
                if similarity < threshold:
                    break  # most similar first: the rest are below too
                entry = self.by_label.get(label)
                if entry is None or entry.params_hash != params_hash:
                    continue
                if entry.expires_at <= now:
                    expired.append(entry)
                    continue
                return (entry, min(similarity, 1.0)), expired
            if len(matches) < k or (matches and matches[-1][1] < threshold):
                break
        return None, expired
