"""The in-process nearest-neighbour index of semantic caching: unit vectors under integer labels.

The store keeps one index per params namespace (model, parameters, cache key, virtual key), so most
indexes are small and a few may be large. An index therefore starts flat, an exact scan of a numpy
matrix (one matrix-vector product: ~0.05 ms for 256 vectors of 1,536 dimensions, and a few KB of
overhead), and becomes an HNSW graph (usearch) once it holds more than FLAT_MAX vectors; it stays a
graph if it shrinks again (no back and forth). A gateway whose namespaces all stay small never loads
usearch at all.

Why usearch for the large ones: an HNSW graph (approximate nearest neighbours in O(log n) distance
computations) in one small C++ extension shipped as pip wheels, with no server, no BLAS and no build
step; it releases the GIL while it works (a bulk build runs in a thread without stalling the event
loop), reuses the slots of removed vectors (churn does not grow it) and stores vectors in 16 bits:
bfloat16 where the CPU computes with it natively (AVX-512 BF16, Arm BF16), else IEEE half (f16). Half
the memory of f32, and faster: on the dev machine (AVX-512 BF16) bf16 searched 1,536-dimension vectors
2.4x faster than f16 and 5.8x faster than f32, and inserted 3.8x faster than f16. A similarity from a
graph is within 1e-3 of the exact cosine (measured: 7e-4 bf16, 1e-4 f16), far below any useful
threshold step. bench/cache_index.py measures both forms. Its cost: each graph reserves a few hundred KB
up front, which is why small namespaces stay flat.

Vectors are normalised here, on add and on search, so the inner product is the cosine similarity and
`search` returns it directly (1 = same direction). A vector of the wrong dimension, with a NaN or an
infinity, or of length zero is refused (`unit` returns None): it could only ever match garbage.

numpy is imported at the top: runtime/cache/sqlite_store.py imports this module only when semantic mode
is configured, so a gateway without semantic caching never loads numpy or usearch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

# Up to this many vectors an index is an exact flat scan; past it, an HNSW graph.
FLAT_MAX = 256
# HNSW parameters. connectivity 16 (edges per node) is usearch's and hnswlib's default. expansion_add 64
# (candidates kept while inserting) instead of 128 halves the insert time. expansion_search 128 (candidates
# kept while searching) instead of 64: on the bench's worst case (100,000 random 256-dimension vectors in
# one namespace, no structure for the graph to follow) 64 found the stored near-duplicate only 87% of
# the time; 128 costs about twice the time of a lookup, still well under the 2 ms target.
CONNECTIVITY = 16
EXPANSION_ADD = 64
EXPANSION_SEARCH = 128
# usearch names the SIMD kernels it picked for a dtype; "serial" means none (plain C++ loops).
_NOT_ACCELERATED = ("", "serial")


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


@functools.cache
def graph_dtype(dimension: int) -> str:
    """bf16 where this CPU has kernels for it, else f16 (always vectorised through F16C/NEON)."""
    from usearch.index import Index

    probe = Index(ndim=dimension, metric="ip", dtype="bf16")
    return "bf16" if str(probe.hardware_acceleration) not in _NOT_ACCELERATED else "f16"


def _graph(dimension: int) -> Any:
    from usearch.index import Index  # only once some namespace outgrows FLAT_MAX

    # metric "ip" on normalised vectors: distance = 1 - cosine, without usearch re-normalising.
    return Index(
        ndim=dimension,
        metric="ip",
        dtype=graph_dtype(dimension),
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )


class VectorIndex:
    """Unit vectors under integer labels; `search` answers the most similar labels first."""

    def __init__(self, dimension: int) -> None:
        if dimension <= 0:
            raise ValueError("dimension must be positive")
        self.dimension = dimension
        # Flat form: rows [0, n) of _matrix hold the vectors of _labels[0:n]; _rows maps label -> row.
        self._matrix = np.empty((0, dimension), dtype=np.float32)
        self._labels: list[int] = []
        self._rows: dict[int, int] = {}
        self._graph: Any = None  # the usearch Index once the index outgrew FLAT_MAX

    @property
    def is_graph(self) -> bool:
        return self._graph is not None

    def __len__(self) -> int:
        return len(self._graph) if self._graph is not None else len(self._labels)

    def __contains__(self, label: int) -> bool:
        if self._graph is not None:
            return bool(self._graph.contains(label))
        return label in self._rows

    @property
    def memory_usage(self) -> int:
        """Bytes the index holds (vectors and graph)."""
        if self._graph is not None:
            return int(self._graph.memory_usage)
        return int(self._matrix.nbytes) + 100 * len(self._rows)

    def add(self, label: int, vector: Sequence[float] | np.ndarray) -> bool:
        """Index `vector` under `label` (replacing what the label held); False if the vector is refused."""
        arr = unit(vector, self.dimension)
        if arr is None:
            return False
        self.remove(label)
        if self._graph is not None:
            self._graph.add(label, arr)
            return True
        n = len(self._labels)
        if n == FLAT_MAX:
            self._to_graph().add(label, arr)
            return True
        if n == self._matrix.shape[0]:  # grow by doubling
            grown = np.empty((min(max(8, 2 * n), FLAT_MAX), self.dimension), dtype=np.float32)
            grown[:n] = self._matrix[:n]
            self._matrix = grown
        self._matrix[n] = arr
        self._labels.append(label)
        self._rows[label] = n
        return True

    def add_many(self, labels: Sequence[int] | np.ndarray, vectors: np.ndarray, threads: int = 0) -> None:
        """Bulk insert of new labels (the start-up build): rows of `vectors` must already be unit vectors
        (see `unit`). `threads` 0 = all cores; the GIL is released meanwhile."""
        if len(self) + len(labels) <= FLAT_MAX and self._graph is None:
            for label, vec in zip(labels, vectors, strict=True):
                self.add(int(label), vec)
            return
        graph = self._graph if self._graph is not None else self._to_graph()
        if len(labels):
            graph.add(np.asarray(labels, dtype=np.uint64), np.asarray(vectors, dtype=np.float32), threads=threads)

    def _to_graph(self) -> Any:
        graph = _graph(self.dimension)
        n = len(self._labels)
        if n:
            graph.add(np.asarray(self._labels, dtype=np.uint64), self._matrix[:n])
        self._graph = graph
        self._matrix = np.empty((0, self.dimension), dtype=np.float32)
        self._labels, self._rows = [], {}
        return graph

    def remove(self, label: int) -> bool:
        """Forget `label`; whether it was there."""
        if self._graph is not None:
            if not self._graph.contains(label):
                return False
            self._graph.remove(label)
            return True
        row = self._rows.pop(label, None)
        if row is None:
            return False
        last = len(self._labels) - 1
        if row != last:  # move the last vector into the hole
            moved = self._labels[last]
            self._matrix[row] = self._matrix[last]
            self._labels[row] = moved
            self._rows[moved] = row
        self._labels.pop()
        return True

    def search(self, vector: Sequence[float] | np.ndarray, k: int) -> list[tuple[int, float]]:
        """Up to `k` (label, cosine similarity) pairs, most similar first; [] for a refused vector."""
        if k <= 0 or len(self) == 0:
            return []
        arr = unit(vector, self.dimension)
        if arr is None:
            return []
        return self.search_unit(arr, k)

    def search_unit(self, arr: np.ndarray, k: int) -> list[tuple[int, float]]:
        """`search` for a vector already made by `unit` (the store normalises once)."""
        n = len(self)
        if k <= 0 or n == 0:
            return []
        if self._graph is not None:
            matches: Any = self._graph.search(arr, k)
            return [(int(lb), 1.0 - float(dist)) for lb, dist in zip(matches.keys, matches.distances, strict=True)]
        sims = self._matrix[:n] @ arr
        if k < n:
            top = np.argpartition(-sims, k - 1)[:k]
            top = top[np.argsort(-sims[top])]
        else:
            top = np.argsort(-sims)
        labels = self._labels
        return [(labels[i], float(sims[i])) for i in top.tolist()]
