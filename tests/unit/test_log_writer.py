"""The request-log writer against a real SQLite file: batching, drain, overflow, retention, and where
the work happens (one transaction per batch, many rows per INSERT, encoding off the event loop)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from runtime.core.context import RequestContext
from runtime.providers.base import Usage
from runtime.requestlog.record import COLUMNS, to_row
from runtime.stores.logs_sqlite.writer import CHUNK_ROWS, LogWriter, chunk_rows_for, write_batch

STATUS = COLUMNS.index("status")


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


async def test_a_batch_is_one_transaction_of_multi_row_inserts(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "logs.db", capacity=10_000, batch_size=5_000, flush_interval_s=10)
    await writer.start()
    assert writer._db is not None
    statements: list[str] = []
    await writer._db.set_trace_callback(statements.append)  # SQLite reports each statement it runs
    assert writer._chunk_rows == CHUNK_ROWS, "this SQLite takes whole chunks"
    n = CHUNK_ROWS * 6 + 37  # whole chunks and a rest
    for i in range(n):
        writer.submit(row(i))
    await writer.close()
    assert count(tmp_path / "logs.db") == n == writer.written
    verbs = [s.split(None, 1)[0].upper() for s in statements]
    assert verbs.count("BEGIN") == 1 and verbs.count("COMMIT") == 1, "the whole batch commits at once"
    inserts = verbs.count("INSERT")
    assert inserts < n / 10, f"{inserts} INSERT statements for {n} rows: rows go many to a statement"


class _WhereEncoded:
    """A content value that notes which thread turned it into JSON (ujson calls __json__)."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def __json__(self) -> str:
        self.threads.append(threading.current_thread().name)
        return '{"probe": 1}'


async def test_rows_are_encoded_on_the_writers_thread_not_the_event_loop(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "logs.db", capacity=100, batch_size=10, flush_interval_s=10)
    await writer.start()
    probe = _WhereEncoded()
    ctx = RequestContext("id-probe", "chat")
    ctx.provider, ctx.model, ctx.status = "openai", "gpt-4o-mini", 200
    ctx.output = [probe]
    writer.submit(to_row(ctx, with_content=True))
    await writer.close()
    assert probe.threads and threading.current_thread().name not in probe.threads, probe.threads
    with sqlite3.connect(tmp_path / "logs.db") as db:
        assert db.execute("SELECT output FROM logs WHERE id = 'id-probe'").fetchone()[0] == '[{"probe": 1}]'


async def test_a_refused_row_inside_a_full_chunk_costs_only_that_row(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "logs.db", capacity=10_000, batch_size=5_000, flush_interval_s=10)
    await writer.start()
    n = CHUNK_ROWS * 2 + 5
    bad = CHUNK_ROWS + 7  # inside the second whole chunk
    for i in range(n):
        r = row(i)
        if i == bad:
            r = (*r[:STATUS], 2**70, *r[STATUS + 1 :])  # SQLite: "Python int too large"
        writer.submit(r)
    await writer.close()
    assert writer.written == n - 1 and writer.failed == 1 and writer.dropped == 1
    with sqlite3.connect(tmp_path / "logs.db") as db:
        ids = {r[0] for r in db.execute("SELECT id FROM logs")}
    assert ids == {f"id-{i}" for i in range(n) if i != bad}


async def test_rows_submitted_while_a_batch_is_being_written_are_drained_by_close(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "logs.db", capacity=10_000, batch_size=500, flush_interval_s=10)
    await writer.start()
    for i in range(500):
        writer.submit(row(i))  # a full batch: the writer task starts its flush
    await asyncio.sleep(0)
    for i in range(500, 1_777):
        writer.submit(row(i))  # accepted while that batch is in the writer's thread
    await writer.close()
    assert writer.written == 1_777 and writer.dropped == 0 and writer.pending == 0
    assert count(tmp_path / "logs.db") == 1_777


async def test_rows_are_kept_and_counted_when_the_connection_is_gone(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "logs.db", capacity=100, batch_size=10, flush_interval_s=0.01)
    await writer.start()
    assert writer._db is not None
    await writer._db.close()  # the connection and its thread end under the writer
    for i in range(30):
        writer.submit(row(i))
    for _ in range(20):
        await asyncio.sleep(0.01)  # several flushes fail meanwhile
    assert writer.pending == 30, "a failed hand-off keeps its rows"
    await writer.close()
    assert writer.written == 0 and writer.dropped == 30 and writer.pending == 0


def test_a_small_bound_parameter_limit_gives_smaller_chunks_never_failing_batches(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "limit.db") as conn:
        assert chunk_rows_for(conn) == CHUNK_ROWS
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # SQLite before 3.32
        assert chunk_rows_for(conn) == 999 // len(COLUMNS)
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)
        assert chunk_rows_for(conn) == 1


async def test_batches_fit_an_old_sqlites_bound_parameter_limit(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "logs.db", capacity=10)
    await writer.start()  # the schema
    await writer.close()
    conn = sqlite3.connect(tmp_path / "logs.db", isolation_level=None)
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        out = write_batch(conn, [row(i) for i in range(250)], chunk_rows_for(conn))
    finally:
        conn.close()
    assert out.error is None and not out.refused and len(out.written) == 250
    assert count(tmp_path / "logs.db") == 250
