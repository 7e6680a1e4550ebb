"""The request-log writer against a real SQLite file: batching, drain, overflow, retention."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from runtime.core.context import RequestContext
from runtime.providers.base import Usage
from runtime.requestlog.record import to_row
from runtime.stores.logs_sqlite.writer import LogWriter


def row(i: int, ts_ms: int | None = None) -> tuple:
    ctx = RequestContext(f"id-{i}", "chat")
    if ts_ms is not None:
        ctx.ts_ms = ts_ms
    ctx.provider, ctx.model, ctx.status = "openai", "gpt-4o-mini", 200
    ctx.usage = Usage(3, 4)
    ctx.input_raw = b'{"messages": []}'
    ctx.output = [{"message": {"content": "hi"}}]
    ctx.attempts = [{"status": 500}]
    return to_row(ctx, with_content=True)


def count(path: Path, where: str = "1") -> int:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT count(*) FROM logs WHERE {where}").fetchone()[0]


async def test_every_submitted_row_is_written_by_close(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "logs.db", capacity=10_000, batch_size=100, flush_interval_s=10)
    await writer.start()
    for i in range(2_345):
        writer.submit(row(i))
    await writer.close()
    assert count(tmp_path / "logs.db") == 2_345
    with sqlite3.connect(tmp_path / "logs.db") as db:
        total, text, attempts = db.execute("SELECT total_tokens, output, attempts FROM logs LIMIT 1").fetchone()
    assert total == 7 and '"content":"hi"' in text and '"status":500' in attempts


async def test_flushes_on_interval_while_running(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "logs.db", capacity=100, batch_size=1000, flush_interval_s=0.05)
    await writer.start()
    writer.submit(row(1))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if writer.written:
            break
    assert writer.written == 1
    await writer.close()


async def test_overflow_is_dropped_and_counted_never_blocking(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "logs.db", capacity=10, batch_size=1000, flush_interval_s=10)
    await writer.start()
    for i in range(25):
        writer.submit(row(i))
    assert writer.dropped == 15
    await writer.close()
    assert count(tmp_path / "logs.db") == 10


async def test_retention_deletes_old_rows_at_start(tmp_path: Path) -> None:
    old = int((time.time() - 3 * 86400) * 1000)
    writer = LogWriter(tmp_path / "logs.db", capacity=100)
    await writer.start()
    writer.submit(row(1, ts_ms=old))
    writer.submit(row(2))
    await writer.close()
    writer = LogWriter(tmp_path / "logs.db", capacity=100, retention_days=2)
    await writer.start()
    await writer.close()
    assert count(tmp_path / "logs.db") == 1
