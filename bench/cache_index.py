"""Benchmark the semantic cache's lookup (runtime/cache/sqlite_store.py + vectors.py) at 100,000 entries.

    python -m bench.cache_index                          # 100,000 entries, dimension 256
    python -m bench.cache_index --dims 256,1536          # 1536 takes ~5x longer to build
    python -m bench.cache_index --entries 20000 --json

Method. For each dimension and each layout (the entries spread over 1,000 params namespaces, i.e. models
/ parameter sets / cache keys, and all in ONE namespace), random unit vectors (the worst case for an
HNSW graph: no clusters to exploit) are written as cache.db rows with the store's own schema, then the
real store is opened on that file: `open()` loads the rows, `ready()` waits for the background index
build; both are timed (this is a restart of a full cache). Then 2,000 lookups go through the store's
`nearest()` as the plugin calls it (the query a Python list of floats, as an embeddings response
decodes to; threshold 0.9): 1,000 near-duplicates of stored prompts (noise of similarity ~0.98, each
should hit its own entry: `recall` counts those that did) and 1,000 random vectors (misses). We report
p50/p99 of each in ms, the time of 1,000 `put()`s of new entries (the HNSW insert a stored miss pays on
the event loop), and memory: the indexes' own count (`index MB`: usearch counts the arena it reserved)
and the process's RSS growth from before the file was opened to the end of the build (the entries,
their decoded responses and the indexes). The embedding call is excluded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from runtime.cache.sqlite_store import INSERT_SQL, SqliteCacheStore, _row
from runtime.cache.store import CacheEntry

QUERIES = 2_000
PUTS = 1_000
THRESHOLD = 0.9
NOW = 1_700_000_000.0
RESPONSE = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "An answer of some length. " * 8}}],
    "usage": {"prompt_tokens": 40, "completion_tokens": 60, "total_tokens": 100},
}


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 1e6
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def entry(i: int, namespaces: int) -> CacheEntry:
    return CacheEntry(
        id=f"req-{i}",
        request_hash=f"h{i}",
        params_hash=f"ns{i % namespaces}",
        cache_key="bench",
        virtual_key_id=None,
        endpoint="chat",
        provider="openai",
        model="gpt-4o-mini",
        created_at=NOW + i * 1e-3,
        expires_at=NOW + 86400,
        response=RESPONSE,
        prompt_text=f"a prompt of about this length, number {i}, asking something",
    )


def fill(path: Path, vectors: np.ndarray, namespaces: int) -> None:
    """Write the rows as the store would (its schema, its row layout), in one transaction."""
    response_json = json.dumps(RESPONSE)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        batch = []
        for i, vec in enumerate(vectors):
            e = entry(i, namespaces)
            e.size = len(response_json) + len(e.prompt_text) + 4 * vectors.shape[1]
            batch.append(_row(e, response_json, vec.astype("<f4").tobytes()))
            if len(batch) == 5000:
                conn.executemany(INSERT_SQL, batch)
                batch.clear()
        conn.executemany(INSERT_SQL, batch)
        conn.execute("COMMIT")
    finally:
        conn.close()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


async def run_one(entries: int, dim: int, namespaces: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    vectors = unit_rows(rng, entries, dim)
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        path = Path(tmp) / "cache.db"
        schema = SqliteCacheStore(path, max_entries=10, max_bytes=10**6, dimension=None)
        await schema.open()  # creates the file with its migrations
        await schema.close()
        fill(path, vectors, namespaces)

        rss0 = rss_mb()
        store = SqliteCacheStore(path, max_entries=entries + PUTS, max_bytes=10**12, dimension=dim, clock=lambda: NOW)
        t0 = time.perf_counter()
        await store.open()
        t_open = time.perf_counter() - t0
        await store.ready()
        t_ready = time.perf_counter() - t0
        rss = rss_mb() - rss0
        try:
            sample = rng.choice(entries, QUERIES // 2, replace=False)
            noise = rng.standard_normal((len(sample), dim), dtype=np.float32)
            noise *= 0.2 / np.sqrt(dim)  # similarity to the stored vector ~0.98
            near = [((vectors[i] + noise[j]).tolist(), int(i)) for j, i in enumerate(sample)]
            far = [(v.tolist(), -1) for v in unit_rows(rng, QUERIES // 2, dim)]
            hit_t: list[float] = []
            miss_t: list[float] = []
            recall = 0
            false_hits = 0
            for query, i in near + far:
                ns = f"ns{(i if i >= 0 else int(rng.integers(entries))) % namespaces}"
                t = time.perf_counter()
                found = await store.nearest(ns, query, THRESHOLD, NOW)
                (hit_t if i >= 0 else miss_t).append(time.perf_counter() - t)
                if i >= 0 and found is not None and found[0].id == f"req-{i}":
                    recall += 1
                elif i < 0 and found is not None:
                    false_hits += 1
            extra = unit_rows(rng, PUTS, dim)
            t = time.perf_counter()
            for j in range(PUTS):
                e = entry(entries + j, namespaces)
                e.embedding = extra[j].tolist()
                store.put(e)
            put_s = time.perf_counter() - t
            index_mb = sum(ix.memory_usage for ix in store._semantic.indexes.values()) / 1e6
        finally:
            await store.close()
    return {
        "entries": entries,
        "dimension": dim,
        "namespaces": namespaces,
        "open_s": round(t_open, 2),
        "index_build_s": round(t_ready, 2),
        "hit_p50_ms": round(pct(hit_t, 50), 3),
        "hit_p99_ms": round(pct(hit_t, 99), 3),
        "miss_p50_ms": round(pct(miss_t, 50), 3),
        "miss_p99_ms": round(pct(miss_t, 99), 3),
        "recall": round(recall / len(near), 4),
        "false_hits": false_hits,
        "put_ms": round(put_s / PUTS * 1000, 3),
        "index_mb": round(index_mb, 1),
        "rss_growth_mb": round(rss, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_index", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--dims", default="256", help="comma-separated dimensions (default 256)")
    parser.add_argument("--namespaces", default="1000,1", help="comma-separated namespace counts")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--json", action="store_true", help="one JSON object per run instead of a table")
    args = parser.parse_args(argv)
    dims = [int(d) for d in args.dims.split(",")]
    layouts = [int(n) for n in args.namespaces.split(",")]
    cols = [
        *("entries", "dimension", "namespaces", "open_s", "index_build_s"),
        *("hit_p50_ms", "hit_p99_ms", "miss_p50_ms", "miss_p99_ms", "recall", "false_hits"),
        *("put_ms", "index_mb", "rss_growth_mb"),
    ]
    if not args.json:
        print(" ".join(f"{c:>13}" for c in cols))
    for dim in dims:
        for namespaces in layouts:
            result = asyncio.run(run_one(args.entries, dim, namespaces, args.seed))
            if args.json:
                print(json.dumps(result))
            else:
                print(" ".join(f"{result[c]!s:>13}" for c in cols))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
