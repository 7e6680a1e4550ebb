"""The cost on the admin side of the request log: every listed row and record carries `cost`, the stats,
per-model/provider groups and histogram series total it, and they do so from the covering indexes
(migration m003 adds `cost` to them), in-process on rows written by the real LogWriter."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from runtime.requestlog.filters import LogFilter, Page
from runtime.requestlog.record import COLUMNS
from runtime.stores.logs_sqlite.migrations import m001_logs, m002_covering_indexes
from runtime.stores.logs_sqlite.queries import LogQueries
from runtime.stores.logs_sqlite.writer import LogWriter

NOW = int(time.time() * 1000)


def row(i: int, provider: str, cost: float | None) -> tuple[Any, ...]:
    base: dict[str, Any] = {c: None for c in COLUMNS}
    base.update(
        id=f"c{i}",
        ts_ms=NOW - 10_000 + i,
        endpoint="chat",
        provider=provider,
        model="m",
        status=200,
        stream=0,
        latency_us=1000,
        overhead_us=10,
        prompt_tokens=10,
        completion_tokens=5,
        total_tokens=15,
        retries=0,
        fallback_index=0,
        ingress="openai",
        cost=cost,
    )
    return tuple(base[c] for c in COLUMNS)


@pytest.fixture
async def queries(tmp_path: Path) -> Any:
    writer = LogWriter(tmp_path / "logs.db", capacity=100)
    await writer.start()
    for i, (provider, cost) in enumerate([("openai", 0.25), ("openai", 0.5), ("anthropic", None), ("anthropic", 1.0)]):
        writer.submit(row(i, provider, cost))
    await writer.close()
    q = LogQueries(tmp_path / "logs.db")
    yield q
    await q.close()


async def test_rows_records_stats_and_series_carry_cost(queries: LogQueries) -> None:
    page = await queries.list(LogFilter(), Page(limit=10))
    assert {r["id"]: r["cost"] for r in page["items"]} == {"c0": 0.25, "c1": 0.5, "c2": None, "c3": 1.0}
    record = await queries.get("c1")
    assert record is not None and record["cost"] == 0.5
    stats = await queries.stats(LogFilter())
    assert stats["cost"] == pytest.approx(1.75)
    assert {g["provider"]: g["cost"] for g in stats["by_model"]} == {"openai": 0.75, "anthropic": 1.0}
    assert {g["provider"]: g["cost"] for g in stats["by_provider"]} == {"openai": 0.75, "anthropic": 1.0}
    histogram = await queries.histogram(LogFilter(since_ms=NOW - 20_000, until_ms=NOW))
    assert sum(b["cost"] or 0 for b in histogram["series"]) == pytest.approx(1.75)


async def test_cost_totals_are_read_from_the_covering_indexes(queries: LogQueries) -> None:
    db = sqlite3.connect(queries.path)
    try:
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT count(*), sum(cost) FROM logs INDEXED BY logs_ts_cover WHERE ts_ms >= 0"
        ).fetchall()
        assert any("COVERING INDEX logs_ts_cover" in str(step) for step in plan), plan
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT sum(cost) FROM logs INDEXED BY logs_pm_cover "
            "WHERE provider = 'x' AND model = 'm'"
        ).fetchall()
        assert any("COVERING INDEX logs_pm_cover" in str(step) for step in plan), plan
    finally:
        db.close()


async def test_a_log_made_before_cost_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    async with aiosqlite.connect(path) as db:  # a logs.db as the previous version left it
        await db.execute("CREATE TABLE _migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at REAL)")
        for version, migration in ((1, m001_logs), (2, m002_covering_indexes)):
            await migration(db)
            await db.execute("INSERT INTO _migrations VALUES (?, ?, 0)", (version, migration.__name__))
        await db.commit()
    writer = LogWriter(path, capacity=10)
    await writer.start()
    writer.submit(row(0, "openai", 0.125))
    await writer.close()
    db2 = sqlite3.connect(path)
    try:
        columns = [r[2] for r in db2.execute("PRAGMA index_info(logs_ts_cover)")]
        assert columns[-1] == "cost"
        assert db2.execute("SELECT cost FROM logs").fetchone() == (0.125,)
    finally:
        db2.close()
