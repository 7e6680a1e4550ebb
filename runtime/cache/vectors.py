"""The in-process nearest-neighbour index of semantic caching: unit vectors under integer labels.

Why usearch: an HNSW graph (approximate nearest neighbours in O(log n) distance computations) in one
small C++ extension shipped as pip wheels, with no server, no BLAS and no build step; it releases the
GIL while it works (a bulk build runs in a thread without stalling the event loop), reuses the slots of
removed vectors (churn does not grow it) and stores vectors in half precision (f16: half the memory of
f32, faster distance computations; a similarity is off by about 1e-3 at most, far below any useful
threshold step). bench/cache_index.py measures it.

Vectors are normalised here, on add and on search, so the inner product is the cosine similarity and
`search` returns it directly (1 = same direction). A vector of the wrong dimension, with a NaN or an
infinity, or of length zero is refused (`unit` returns None): it could only ever match garbage.

This module imports numpy and usearch at the top: runtime/cache/sqlite_store.py imports it only when
semantic mode is configured, so a gateway without semantic caching never loads either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from usearch.index import Index

# HNSW parameters. connectivity 16 (edges per node) is usearch's and hnswlib's default; expansion_add
# 64 (candidates kept while inserting) instead of 128 halves the insert time at the same recall on the
# bench (recall@1 = 1.0 for near-duplicates at 100,000 entries); expansion_search 64 is the default.
CONNECTIVITY = 16
EXPANSION_ADD = 64
EXPANSION_SEARCH = 64
DTYPE = "f16"


def unit(vector: Sequence[float] | np.ndarray, dimension: int) -> np.ndarray | None:
    """`vector` as a float32 unit vector of `dimension`, or None if it cannot be one."""
    try:
        arr = np.asarray(vector, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        return None
    if arr.shape[0] != dimension or not np.isfinite(arr).all():
        return None
    norm = float(np.linalg.norm(arr))
    if norm == 0.0 or not np.isfinite(norm):
        return None
    return arr / norm


class VectorIndex:
    """Unit vectors under integer labels; `search` answers the most similar labels first."""

    def __init__(self, dimension: int, *, dtype: str = DTYPE) -> None:
        if dimension <= 0:
            raise ValueError("dimension must be positive")
        self.dimension = dimension
        # metric "ip" on normalised vectors: distance = 1 - cosine, without usearch re-normalising.
        self._index = Index(
            ndim=dimension,
            metric="ip",
            dtype=dtype,
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, label: int) -> bool:
        return bool(self._index.contains(label))

    @property
    def memory_usage(self) -> int:
        """Bytes the index holds (vectors and graph)."""
        return int(self._index.memory_usage)

    def add(self, label: int, vector: Sequence[float] | np.ndarray) -> bool:
        """Index `vector` under `label` (replacing what the label held); False if the vector is refused."""
        arr = unit(vector, self.dimension)
        if arr is None:
            return False
        if self._index.contains(label):
            self._index.remove(label)
        self._index.add(label, arr)
        return True

    def add_many(self, labels: Sequence[int] | np.ndarray, vectors: np.ndarray, threads: int = 0) -> None:
        """Bulk insert of new labels (the start-up build): rows of `vectors` must already be unit vectors
        (see `unit`). `threads` 0 = all cores; the GIL is released meanwhile."""
        if len(labels):
            self._index.add(np.asarray(labels, dtype=np.uint64), vectors, threads=threads)

    def remove(self, label: int) -> bool:
        """Forget `label`; whether it was there."""
        if not self._index.contains(label):
            return False
        self._index.remove(label)
        return True

    def search(self, vector: Sequence[float] | np.ndarray, k: int) -> list[tuple[int, float]]:
        """Up to `k` (label, cosine similarity) pairs, most similar first; [] for a refused vector."""
        if k <= 0 or len(self._index) == 0:
            return []
        arr = unit(vector, self.dimension)
        if arr is None:
            return []
        return self.search_unit(arr, k)

    def search_unit(self, arr: np.ndarray, k: int) -> list[tuple[int, float]]:
        """`search` for a vector already made by `unit` (the store normalises once for several indexes)."""
        if k <= 0 or len(self._index) == 0:
            return []
        matches: Any = self._index.search(arr, k)
        return [(int(label), 1.0 - float(dist)) for label, dist in zip(matches.keys, matches.distances, strict=True)]
