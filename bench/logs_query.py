"""Benchmark the request-log endpoints of the admin API on a large logs.db (default 1,000,000 rows).

    python -m bench.logs_query                       # 1M rows in a temp dir, 5 timed runs per query
    python -m bench.logs_query --rows 200000 --runs 3
    python -m bench.logs_query --db /tmp/big/logs.db # reuse a database made by an earlier run

Method. Rows are written with the gateway's own schema and migrations (runtime.requestlog), spread
evenly over the last 7 days, across 4 providers / 5 models, 5% errors, 30% streams, each with a
~250-byte request and response body (so the table is realistically wide: content makes full scans
expensive). The real app (`runtime.create_app`) then serves on 127.0.0.1 and every query is a real
HTTP request through aiohttp; we report the wall time the client saw (min / median / max over
`--runs` runs after one warm-up) and the query time the server measured (`query_ms`). The machine's
page cache is warm (the rows were just written), which is the steady state of a running gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from runtime.app import create_app
from runtime.config.model import ClientConfig, GatewayConfig
from runtime.requestlog.record import INSERT_SQL
from runtime.stores.logs_sqlite.writer import LogWriter

PROVIDERS = (
    ("openai", ("gpt-4o", "gpt-4o-mini")),
    ("azure", ("gpt-4o",)),
    ("groq", ("llama-3.3-70b",)),
    ("mock", ("mock-chat",)),
)
WORDS = (
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
)
DAY_MS = 86_400_000


def _rows(n: int, now_ms: int, rng: random.Random) -> Any:
    span = 7 * DAY_MS
    for i in range(n):
        provider, models = PROVIDERS[rng.randrange(len(PROVIDERS))]
        model = models[rng.randrange(len(models))]
        failed = rng.random() < 0.05
        status = rng.choice((429, 500, 502, 504)) if failed else 200
        latency = int(rng.lognormvariate(12.5, 0.6))  # ~270 ms median, long tail
        upstream = int(latency * 0.97)
        text = " ".join(rng.choice(WORDS) for _ in range(30))
        request = json.dumps([{"role": "user", "content": text}])
        response = json.dumps({"choices": [{"message": {"role": "assistant", "content": text[::-1]}}]})
        yield (
            f"bench-{i:09d}",
            now_ms - span + i * span // n,
            "chat",
            provider,
            model,
            f"{provider}/{model}",
            status,
            int(rng.random() < 0.3),
            latency,
            latency - upstream,
            5,
            2,
            20,
            10,
            upstream,
            15,
            30,
            60,
            90,
            None,
            int(failed and rng.random() < 0.5),
            0,
            "k1",
            "upstream failed" if failed else None,
            "api_error" if failed else None,
            request,
            None if failed else response,
            None,
            "openai",
            None if failed else latency * 1e-9,  # cost: some dollars, so totals are summed like a real log's
        )


async def _migrate(path: Path) -> None:
    writer = LogWriter(path, capacity=10)  # start() creates the file and runs every migration
    await writer.start()
    await writer.close()


def build_db(path: Path, n: int) -> float:
    started = time.perf_counter()
    asyncio.run(_migrate(path))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    rng = random.Random(42)
    batch: list[tuple[Any, ...]] = []
    for row in _rows(n, int(time.time() * 1000), rng):
        batch.append(row)
        if len(batch) == 50_000:
            db.execute("BEGIN")
            db.executemany(INSERT_SQL, batch)
            db.execute("COMMIT")
            batch.clear()
            print(
                f"\r  writing rows: {db.execute('SELECT max(rowid) FROM logs').fetchone()[0]:,}",
                end="",
                file=sys.stderr,
                flush=True,
            )
    if batch:
        db.execute("BEGIN")
        db.executemany(INSERT_SQL, batch)
        db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    print(file=sys.stderr)
    return time.perf_counter() - started


def row_count(path: Path) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM logs").fetchone()[0])
    finally:
        db.close()


QUERIES = (
    ("list: newest 50 + total", "/api/logs"),
    ("list: provider=openai", "/api/logs?provider=openai"),
    ("list: status=error", "/api/logs?status=error"),
    ("list: model + stream", "/api/logs?model=gpt-4o&stream=true"),
    ("list: min latency 1 s", "/api/logs?min_latency_ms=1000"),
    ("list: last hour", "/api/logs?last=3600"),
    ("list: sort by latency", "/api/logs?sort=latency"),
    ("list: page at offset 500k", "/api/logs?offset=500000"),
    ("list: text search, common", "/api/logs?q=omega%20psi"),
    ("list: text search, no match (full scan)", "/api/logs?q=no-such-text-anywhere"),
    ("detail: one record", "/api/logs/bench-000123456"),
    ("stats: last 24 h (default)", "/api/logs/stats"),
    ("stats: all 7 days", "/api/logs/stats?last=604800"),
    ("stats: all 7 days, provider=openai", "/api/logs/stats?last=604800&provider=openai"),
    ("histogram: last hour, 60 buckets", "/api/logs/histogram?last=3600"),
    ("histogram: last 24 h, 96 buckets", "/api/logs/histogram?last=86400&buckets=96"),
    ("histogram: all 7 days, 100 buckets", "/api/logs/histogram?last=604800&buckets=100"),
    ("facets: providers and models", "/api/logs/facets"),
)


async def measure(app_dir: Path, runs: int) -> list[dict[str, Any]]:
    config = GatewayConfig(app_dir=app_dir, client=ClientConfig(log_retention_days=0))
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    results = []
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            for label, path in QUERIES:
                wall: list[float] = []
                server: list[float] = []
                for i in range(runs + 1):
                    started = time.perf_counter()
                    async with http.get(path) as response:
                        body = await response.json()
                        assert response.status == 200, (path, response.status, body)
                    if i == 0:
                        continue  # warm-up: opens the read connections
                    wall.append((time.perf_counter() - started) * 1000)
                    if "query_ms" in body:
                        server.append(body["query_ms"])
                results.append(
                    {
                        "query": label,
                        "path": path,
                        "min_ms": min(wall),
                        "median_ms": statistics.median(wall),
                        "max_ms": max(wall),
                        "server_median_ms": statistics.median(server) if server else None,
                    }
                )
                print(f"  {label:42s} median {statistics.median(wall):8.1f} ms", file=sys.stderr)
    finally:
        await runner.cleanup()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.logs_query", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", type=Path, help="logs.db to use (created with --rows rows if missing)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    tmp = None
    if args.db is None:
        tmp = tempfile.TemporaryDirectory(prefix="bifrost-logs-bench-")
        args.db = Path(tmp.name) / "logs.db"
    args.db.parent.mkdir(parents=True, exist_ok=True)
    if args.db.exists() and args.db.name != "logs.db":
        parser.error("--db must be a file named logs.db (the app dir is its folder)")
    if not args.db.exists():
        print(f"building {args.db} with {args.rows:,} rows", file=sys.stderr)
        took = build_db(args.db, args.rows)
        print(f"  built in {took:.0f} s", file=sys.stderr)
    rows = row_count(args.db)
    size_mb = sum(p.stat().st_size for p in args.db.parent.glob("logs.db*")) / 1e6
    print(f"measuring {rows:,} rows ({size_mb:,.0f} MB), {args.runs} runs per query", file=sys.stderr)
    results = asyncio.run(measure(args.db.parent, args.runs))
    print(f"\n## Request-log queries on {rows:,} rows ({size_mb:,.0f} MB logs.db)\n")
    print("| query | min ms | median ms | max ms | server query ms |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        server = "" if r["server_median_ms"] is None else f"{r['server_median_ms']:.1f}"
        print(f"| {r['query']} | {r['min_ms']:.1f} | {r['median_ms']:.1f} | {r['max_ms']:.1f} | {server} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "db_mb": size_mb, "results": results}, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
