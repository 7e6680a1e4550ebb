"""Benchmark the request log's guardrail filters (issue 15): `guardrail=` / `guardrail_action=` on both engines.

    python -m bench.logs_guardrails --rows 200000              # SQLite, and PostgreSQL when installed
    python -m bench.logs_guardrails --rows 200000 --no-postgres

Method. N rows, one every 10 ms ending now, 1% of them with a `guardrails` entry (rule mask-pii, action
redact), written through the real SQLite writer into a temp logs.db, and copied into a throwaway PostgreSQL
server (the test harness's launcher: initdb in a temp dir, fsync off) with `import_rows`, as `bifrost
migrate` does. Each filter, over the whole range, is asked of each engine's reader (LogQueries /
PostgresLogQueries, the objects `/api/logs` calls): a 50-row page and the stats, the best of `--runs`.
No index holds the column: these filters read every row of the range (json_each / json_array_elements only
on the rows that have guardrails), so the cost grows with the range, as a text search's does.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runtime.requestlog.filters import LogFilter, Page
from runtime.requestlog.record import COLUMNS
from runtime.stores.logs_sqlite.queries import LogQueries
from runtime.stores.logs_sqlite.writer import LogWriter, encode

FIRED = [{"rule": "mask-pii", "provider": "cards", "stage": "input", "action": "redact", "types": ["card"], "count": 1}]
FILTERS = (
    LogFilter(),
    LogFilter(guardrail="mask-pii"),
    LogFilter(guardrail_action="block"),
    LogFilter(guardrail="mask-pii", guardrail_action="redact"),
)


def rows(n: int, now_ms: int) -> Iterator[tuple[Any, ...]]:
    for i in range(n):
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(
            id=f"r{i}",
            ts_ms=now_ms - (n - i) * 10,
            endpoint="chat",
            provider="openai",
            model="gpt-4o",
            status=200,
            stream=0,
            latency_us=1000 + i % 500,
            overhead_us=10,
            retries=0,
            fallback_index=0,
            input=[{"role": "user", "content": f"hello {i}"}],
            guardrails=FIRED if i % 100 == 7 else None,
        )
        yield tuple(row[c] for c in COLUMNS)


async def measure(name: str, reader: Any, n: int, runs: int) -> None:
    for f in FILTERS:
        best_list = best_stats = float("inf")
        for _ in range(runs):
            started = time.perf_counter()
            await reader.list(f, Page(limit=50))
            best_list = min(best_list, time.perf_counter() - started)
            started = time.perf_counter()
            await reader.stats(f)
            best_stats = min(best_stats, time.perf_counter() - started)
        label = f"guardrail={f.guardrail or '-'} action={f.guardrail_action or '-'}"
        print(f"{name:9s} {n} rows  {label:34s} page {best_list * 1000:7.1f} ms  stats {best_stats * 1000:7.1f} ms")


async def main(args: argparse.Namespace) -> None:
    now_ms = int(time.time() * 1000)
    directory = Path(tempfile.mkdtemp(prefix="bench-guardrails-"))
    try:
        writer = LogWriter(directory / "logs.db", capacity=args.rows + 10, batch_size=5000)
        await writer.start()
        for row in rows(args.rows, now_ms):
            writer.submit(row)
        await writer.close()
        lite = LogQueries(directory / "logs.db")
        try:
            await measure("sqlite", lite, args.rows, args.runs)
        finally:
            await lite.close()
        if args.postgres:
            await postgres(args, now_ms)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def postgres(args: argparse.Namespace, now_ms: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from harness.postgres import server_directory, start_postgres

    from runtime.config.model import PostgresSettings
    from runtime.stores.logs_postgres import PostgresLogQueries, import_rows
    from runtime.stores.status import StoreStatus

    where = server_directory()
    server = start_postgres(where / "cluster")
    try:
        db = server.new_database()
        settings = PostgresSettings(host="127.0.0.1", port=server.port, user="bifrost", database=db)
        await import_rows(settings, (encode(r) for r in rows(args.rows, now_ms)), batch=20_000)
        reader = PostgresLogQueries(settings, StoreStatus("postgres", db))
        try:
            await measure("postgres", reader, args.rows, args.runs)
        finally:
            await reader.close()
    finally:
        server.stop()
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-postgres", dest="postgres", action="store_false")
    asyncio.run(main(parser.parse_args()))
