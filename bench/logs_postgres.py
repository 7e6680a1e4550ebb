"""Benchmark the PostgreSQL request log: the /api/logs queries the UI issues, and the writer's rate.

    python -m bench.logs_postgres --rows 1000000          # a throwaway PostgreSQL server in a temp dir
    python -m bench.logs_postgres --rows 200000 --runs 10 --write-rows 100000
    python -m bench.logs_postgres --dsn-port 5432 --db bench_logs --keep   # reuse a server and its rows

Method. A real PostgreSQL server is started with the test harness's launcher (tests/harness/postgres.py:
initdb in a temp dir, loopback, fsync off: the numbers are the engine's, not a disk's). N rows are made
server-side (INSERT ... SELECT FROM generate_series: no Python per row, the hourly rollup in the same
statement, as the writer maintains it) through the gateway's own schema and day partitions, spread evenly
over the last 30 days across 4 providers / 5 models / 6 virtual keys,
5% errors, 30% streams, lognormal latencies and ~250-byte request and response bodies. The real app
(`runtime.create_app` with `logs_store` postgres) serves on 127.0.0.1 and every query of bench/logs_query.py
(the SQLite bench, whose list this reuses) plus 30-day variants is a real HTTP request; we report p50 and
p99 of the wall time over `--runs` runs after one warm-up. Then the writer: `--write-rows` rows submitted
to a real PostgresLogWriter as fast as the event loop allows (the gateway's default batch size and flush
interval), timed until every row is committed: sustained rows/s through COPY + the idempotent insert.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bench.logs_query import QUERIES as SQLITE_QUERIES
from runtime.app import create_app
from runtime.config.model import ClientConfig, GatewayConfig, PostgresSettings, StoresConfig
from runtime.requestlog.record import COLUMNS
from runtime.stores.logs_postgres import PostgresLogWriter, partitions, rollup
from runtime.stores.logs_postgres.migrations import PAIRS, TABLE, migrate
from runtime.stores.status import StoreStatus

DAY_MS = 86_400_000
SPAN_DAYS = 30
PROVIDERS = ("openai", "azure", "groq", "mock")
# (provider index, model) per row class: 5 models over 4 providers, as bench/logs_query.py.
PAIRS_SQL = (
    "(ARRAY['openai','openai','azure','groq','mock'])[k]",
    "(ARRAY['gpt-4o','gpt-4o-mini','gpt-4o','llama-3.3-70b','mock-chat'])[k]",
)
WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi "
    "chi psi omega"
)


def queries(rows: int) -> list[tuple[str, str]]:
    """The SQLite bench's queries (its 7-day windows are this data's last 7 days) plus 30-day ones; the
    detail and deep-page queries point inside this data."""
    out = []
    for label, path in SQLITE_QUERIES:
        if path.startswith("/api/logs/bench-"):
            path = f"/api/logs/bench-{rows // 2:09d}"
        elif "offset=500000" in path:
            path = f"/api/logs?offset={rows // 2}"
            label = f"list: page at offset {rows // 2:,}"
        out.append((label, path))
    out += [
        ("stats: all 30 days", f"/api/logs/stats?last={SPAN_DAYS * 86400}"),
        (
            "stats: 30 days, virtual key + group_by",
            f"/api/logs/stats?last={SPAN_DAYS * 86400}&virtual_key_id=vk-3&group_by=virtual_key",
        ),
        ("histogram: all 30 days, 120 buckets", f"/api/logs/histogram?last={SPAN_DAYS * 86400}&buckets=120"),
        ("list: 30 days, sort by tokens asc", f"/api/logs?last={SPAN_DAYS * 86400}&sort=tokens&order=asc"),
        # The dashboard's 7-day view (ui_dist/assets/pages/dashboard.js histogramWindow): whole hours, 3-hour
        # buckets, answered from the hourly rollup alone; and a month the same way.
        ("histogram: 7 days hour-aligned, 56 buckets (the dashboard)", _aligned_histogram(7)),
        ("histogram: 30 days hour-aligned, 240 buckets", _aligned_histogram(SPAN_DAYS)),
        # bench/logs_query.py's "common" term (omega psi) never occurs in these bodies (a word is always
        # followed by the one 13 places on in WORDS): "omega nu" is in every row.
        ("list: text search, in every row", "/api/logs?q=omega%20nu"),
    ]
    return out


def _aligned_histogram(days: int) -> str:
    hour = 3_600_000
    until = -(-int(time.time() * 1000) // hour) * hour
    return f"/api/logs/histogram?since={until - days * DAY_MS}&until={until}&buckets={days * 8}"


def _fill_sql(lo: int, hi: int, n: int, now_ms: int) -> str:
    """Rows lo..hi of n, made by the server (one INSERT ... SELECT)."""
    span = SPAN_DAYS * DAY_MS
    cols = ", ".join(c for c in COLUMNS)
    words = f"string_to_array('{WORDS}', ' ')"
    text = f"array_to_string(ARRAY(SELECT ({words})[1 + ((g * 7 + j * 13) % 24)] FROM generate_series(1, 30) j), ' ')"
    provider, model = PAIRS_SQL
    # The rows and their hourly rollup in one statement, as the writer does (batch.INSERT_SQL).
    return f"""
        WITH ins AS (INSERT INTO {TABLE} ({cols})
        SELECT 'bench-' || lpad(g::text, 9, '0'), {now_ms - span} + g * {span}::bigint / {n}, 'chat',
               {provider}, {model}, {provider} || '/' || {model},
               CASE WHEN failed THEN (ARRAY[429, 500, 502, 504])[1 + g % 4] ELSE 200 END,
               (random() < 0.3)::int, latency, latency - upstream, 5, 2, 20, 10, upstream, 15,
               30, 60, 90, NULL, (failed AND random() < 0.5)::int, 0, 'k1',
               CASE WHEN failed THEN 'upstream failed' END, CASE WHEN failed THEN 'api_error' END,
               '[{{"role": "user", "content": "' || body || '"}}]',
               CASE WHEN NOT failed THEN '{{"choices": [{{"message": {{"role": "assistant", "content": "'
                    || reverse(body) || '"}}}}]}}' END,
               NULL, 'openai', CASE WHEN NOT failed THEN latency * 1e-9 END,
               CASE WHEN g % 7 < 6 THEN 'vk-' || (g % 7) END, NULL,
               (ARRAY[NULL, 'miss', 'hit-direct', 'miss', 'hit-semantic'])[1 + g % 5],
               CASE WHEN g % 5 = 4 THEN 0.93 END
        FROM (
            SELECT g, 1 + (g % 5) AS k, random() < 0.05 AS failed,
                   -- lognormal (Box-Muller): ~270 ms median, a long tail
                   greatest(1000, exp(12.5 + 0.6 * sqrt(-2 * ln(random())) * cos(2 * pi() * random())))::bigint
                       AS latency,
                   {text} AS body
            FROM generate_series({lo}, {hi}) g
        ) r, LATERAL (SELECT (latency * 0.97)::bigint AS upstream) u
        RETURNING {rollup.SOURCE_COLUMNS})
        {rollup.upsert_sql("ins")}
    """


async def fill(settings: PostgresSettings, n: int, chunk: int = 500_000) -> float:
    """N rows over the last 30 days, made server-side; returns the seconds it took (with ANALYZE)."""
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    conn = await asyncpg.connect(
        host=settings.host, port=settings.port, user=settings.user, database=settings.database, command_timeout=3600
    )
    try:
        await migrate(conn)
        today = partitions.today()
        await partitions.ensure(conn, range(today - SPAN_DAYS - 1, today + 2))
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET work_mem = '256MB'")  # each chunk's rollup GROUP BY hashed in memory
        for lo in range(1, n + 1, chunk):
            hi = min(n, lo + chunk - 1)
            await conn.execute(_fill_sql(lo, hi, n, now_ms))
            print(f"\r  rows: {hi:,} ({time.perf_counter() - started:.0f} s)", end="", file=sys.stderr, flush=True)
        await conn.execute(
            f"INSERT INTO {PAIRS} (provider, model) SELECT DISTINCT provider, model FROM {TABLE} "
            "ON CONFLICT ((coalesce(provider, '')), (coalesce(model, ''))) DO NOTHING"
        )
        # What autovacuum does to an append-only table soon after (PostgreSQL 13+: insert-triggered
        # vacuum): statistics, and the visibility map that lets the covering indexes answer alone.
        await conn.execute(f"VACUUM ANALYZE {TABLE}")
        await conn.execute(f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'seq'), (SELECT max(seq) FROM {TABLE}))")
    finally:
        await conn.close()
    print(file=sys.stderr)
    return time.perf_counter() - started


def _note(body: Any) -> str:
    """What an answer says about its own precision (estimated totals, bucketed percentiles)."""
    if not isinstance(body, dict):
        return ""
    notes = []
    if body.get("total_exact") is False:
        notes.append("total estimated")
    if isinstance(body.get("searched_until"), int):
        notes.append("search stopped early")
    percentiles = body.get("percentiles")
    if isinstance(percentiles, dict) and percentiles.get("latency_buckets"):
        notes.append("percentiles bucketed")
    elif isinstance(percentiles, dict) and percentiles.get("sampled"):
        notes.append("percentiles sampled/bucketed")
    return ", ".join(notes)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def measure(settings: PostgresSettings, rows: int, runs: int, app_dir: Path) -> list[dict[str, Any]]:
    config = GatewayConfig(
        app_dir=app_dir, client=ClientConfig(log_retention_days=0), stores=StoresConfig(logs=settings)
    )
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    results = []
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            for label, path in queries(rows):
                wall: list[float] = []
                statuses: set[int] = set()
                for i in range(runs + 1):
                    started = time.perf_counter()
                    async with http.get(path) as response:
                        body = await response.json()
                        # A query past the 10 s budget answers 503 log_query_too_slow: recorded, not fatal.
                        assert response.status in (200, 503), (path, response.status, body)
                        statuses.add(response.status)
                    if i:  # the first run is a warm-up (opens the pool, reads the catalog)
                        wall.append((time.perf_counter() - started) * 1000)
                p50, p99 = statistics.median(wall), _percentile(wall, 0.99)
                note = _note(body)
                if 503 in statuses:
                    note = "503 (past the query budget)"
                results.append({"query": label, "path": path, "p50_ms": p50, "p99_ms": p99, "note": note})
                print(f"  {label:46s} p50 {p50:8.1f} ms  p99 {p99:8.1f} ms  {note}", file=sys.stderr)
    finally:
        await runner.cleanup()
    return results


def _writer_row(i: int, now_ms: int) -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(COLUMNS)
    values.update(
        id=f"w-{i:09d}", ts_ms=now_ms + i % 1000, endpoint="chat", provider=PROVIDERS[i % 4], model="gpt-4o",
        model_requested="openai/gpt-4o", status=200 if i % 20 else 500, stream=i % 3 == 0, latency_us=250_000 + i % 999,
        overhead_us=120, queue_wait_us=5, key_select_us=2, build_us=20, encode_us=10, upstream_us=249_000,
        parse_us=15, prompt_tokens=30, completion_tokens=60, total_tokens=90, retries=0, fallback_index=0,
        key_name="k1", input=[{"role": "user", "content": WORDS}],
        output={"choices": [{"message": {"content": WORDS}}]},
        ingress="openai", cost=2.5e-4, virtual_key_id=f"vk-{i % 6}",
    )  # fmt: skip
    return tuple(values[c] for c in COLUMNS)


async def write_rate(settings: PostgresSettings, n: int) -> dict[str, float]:
    """Submit `n` rows to a real writer (default batch size and interval) as fast as possible; rows/s to
    commit, and the most the event loop was held by one submit burst of 1,000 rows."""
    writer = PostgresLogWriter(settings, StoreStatus("postgres", "bench"), capacity=n + 1)
    await writer.start()
    now_ms = int(time.time() * 1000)
    rows = [_writer_row(i, now_ms) for i in range(n)]
    started = time.perf_counter()
    for i in range(0, n, 1000):
        for row in rows[i : i + 1000]:
            writer.submit(row)
        await asyncio.sleep(0)
    while writer.written + writer.dropped < n:
        await asyncio.sleep(0.005)
    took = time.perf_counter() - started
    await writer.close()
    return {"rows": n, "seconds": took, "rows_per_s": n / took, "dropped": writer.dropped}


async def run(args: argparse.Namespace, settings: PostgresSettings, app_dir: Path) -> dict[str, Any]:
    conn = await asyncpg.connect(
        host=settings.host, port=settings.port, user=settings.user, database=settings.database, command_timeout=3600
    )
    try:
        started = time.perf_counter()
        if await migrate(conn):  # an existing log: its upgrade (m003 rolls the rows up) is timed
            print(f"  migrations applied in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        have = int(await conn.fetchval(f"SELECT count(*) FROM {TABLE}"))
    finally:
        await conn.close()
    fill_s = None
    if have < args.rows:
        print(f"filling {args.rows:,} rows", file=sys.stderr)
        fill_s = await fill(settings, args.rows)
        print(f"  filled in {fill_s:.1f} s", file=sys.stderr)
    conn = await asyncpg.connect(host=settings.host, port=settings.port, user=settings.user, database=settings.database)
    try:
        rows = int(await conn.fetchval(f"SELECT count(*) FROM {TABLE}"))
        size_mb = int(await conn.fetchval("SELECT pg_database_size(current_database())")) / 1e6
        rollup_rows = int(await conn.fetchval(f"SELECT count(*) FROM {rollup.HOURLY}"))
        rollup_mb = int(await conn.fetchval(f"SELECT pg_total_relation_size('{rollup.HOURLY}')")) / 1e6
        print(f"rollup: {rollup_rows:,} rows, {rollup_mb:,.1f} MB", file=sys.stderr)
    finally:
        await conn.close()
    print(f"measuring {rows:,} rows ({size_mb:,.0f} MB database), {args.runs} runs per query", file=sys.stderr)
    results = await measure(settings, rows, args.runs, app_dir)
    writes = await write_rate(settings, args.write_rows) if args.write_rows else None
    return {
        "rows": rows,
        "db_mb": size_mb,
        "rollup_rows": rollup_rows,
        "rollup_mb": rollup_mb,
        "fill_s": fill_s,
        "results": results,
        "writer": writes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.logs_postgres", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per query (after one warm-up)")
    parser.add_argument("--write-rows", type=int, default=200_000, help="rows through the real writer (0: skip)")
    parser.add_argument("--port", type=int, help="use the PostgreSQL server on 127.0.0.1:PORT (role bifrost)")
    parser.add_argument("--db", default="bifrost_logs_bench", help="database name with --port")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(prefix="bifrost-pglog-bench-")
    server = None
    try:
        if args.port is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from harness.postgres import server_directory, start_postgres  # the tests' launcher

            # A directory the server's own user can reach when we run as root (a TemporaryDirectory
            # is 0700): the harness's, removed with the temp dir below.
            server_dir = server_directory()
            shutil.move(str(server_dir), Path(tmp.name) / "pg-root")
            Path(tmp.name).chmod(0o711)
            server = start_postgres(Path(tmp.name) / "pg-root" / "pg")
            server.psql(f"CREATE DATABASE {args.db} OWNER bifrost")
            port = server.port
        else:
            port = args.port
        settings = PostgresSettings(host="127.0.0.1", port=port, user="bifrost", database=args.db)
        app_dir = Path(tmp.name) / "app"
        app_dir.mkdir()
        out = asyncio.run(run(args, settings, app_dir))
    finally:
        if server is not None:
            server.stop()
        tmp.cleanup()
    fill = "" if out["fill_s"] is None else f", filled in {out['fill_s']:.0f} s"
    print(f"\n## PostgreSQL request-log queries on {out['rows']:,} rows ({out['db_mb']:,.0f} MB{fill})\n")
    print(f"hourly rollup: {out['rollup_rows']:,} rows, {out['rollup_mb']:,.1f} MB\n")
    print("| query | p50 ms | p99 ms | note |")
    print("|---|---:|---:|---|")
    for r in out["results"]:
        print(f"| {r['query']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['note']} |")
    if out["writer"]:
        w = out["writer"]
        rate = f"{w['rows_per_s']:,.0f} rows/s (dropped {w['dropped']})"
        print(f"\nwriter: {w['rows']:,} rows in {w['seconds']:.2f} s = {rate}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
