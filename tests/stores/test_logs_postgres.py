"""The PostgreSQL request-log engine (runtime/stores/logs_postgres/) against a real PostgreSQL server
(tests/harness/postgres.py): import, writer, partitions, retention, outages, several instances, and the
same answers as the SQLite engine for the same rows (tests/stores/test_logs_parity.py)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from admin.conftest import browser_page  # noqa: F401  (a fixture, found by name in this module)
from fakes import FakeOpenAI
from harness import Gateway, StartGateway, make_config, openai_provider
from harness.config import key
from harness.postgres import PostgresServer

from runtime.config.model import PostgresSettings
from runtime.requestlog.filters import LogFilter, Page
from runtime.requestlog.record import COLUMNS
from runtime.stores.logs import LogQueryTooSlow, LogReadError
from runtime.stores.logs_postgres import PostgresLogQueries, PostgresLogWriter, batch, import_rows, partitions, rollup
from runtime.stores.logs_sqlite.writer import LogWriter as SQLiteLogWriter
from runtime.stores.status import StoreStatus

DAY_MS = 86_400_000


def settings_for(server: PostgresServer, db: str) -> PostgresSettings:
    return PostgresSettings(host="127.0.0.1", port=server.port, user="bifrost", database=db)


def make_row(i: int, ts_ms: int | None = None, **values: Any) -> tuple[Any, ...]:
    """A row as `record.to_row` builds it (Python values; the writers encode them)."""
    base: dict[str, Any] = {c: None for c in COLUMNS}
    base.update(
        id=f"r{i}",
        ts_ms=int(time.time() * 1000) if ts_ms is None else ts_ms,
        endpoint="chat",
        provider="openai",
        model="gpt-4o",
        status=200,
        stream=0,
        latency_us=1000 + i,
        overhead_us=10,
        queue_wait_us=0,
        key_select_us=0,
        build_us=0,
        encode_us=0,
        upstream_us=900,
        parse_us=0,
        retries=0,
        fallback_index=0,
        input=[{"role": "user", "content": f"hello {i}"}],
        output={"content": f"answer {i}"},
        ingress="openai",
    )
    base.update(values)
    return tuple(base[c] for c in COLUMNS)


async def fetch(server: PostgresServer, db: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(server.dsn(db))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def sqlite_rows(tmp_path: Path, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """`rows` written through the real SQLite writer, read back from logs.db as `bifrost migrate` reads it."""
    path = tmp_path / "logs.db"
    writer = SQLiteLogWriter(path, capacity=100_000)
    await writer.start()
    for row in rows:
        writer.submit(row)
    await writer.close()
    db = sqlite3.connect(path)
    try:
        return list(db.execute(f"SELECT {', '.join(COLUMNS)} FROM logs ORDER BY rowid"))
    finally:
        db.close()


# -- import_rows (bifrost migrate) -----------------------------------------------------------------
async def assert_rollup_matches_the_log(server: PostgresServer, db: str, rows: int) -> None:
    """bifrost_logs_hourly holds exactly the aggregates of the rows in bifrost_logs (`rows` of them)."""
    dims = "provider, model, virtual_key_id, endpoint, cache, status, stream"
    raw = await fetch(
        server,
        db,
        f"SELECT ts_ms / 3600000 * 3600000, {dims}, count(*), sum(latency_us), sum(overhead_us), sum(parse_us), "
        f"coalesce(sum(total_tokens), 0), sum(cost) FROM bifrost_logs GROUP BY 1, {dims} ORDER BY 1, {dims}",
    )
    buckets = " + ".join(rollup.BUCKET_COLUMNS)
    rolled = await fetch(
        server,
        db,
        f"SELECT hour_ms, {dims}, n, latency_sum, overhead_sum, parse_us_sum, total_tokens, cost, {buckets} "
        f"FROM bifrost_logs_hourly ORDER BY 1, {dims}",
    )
    assert [tuple(r[:-1]) for r in rolled] == [tuple(r) for r in raw]
    assert all(r[-1] == r["n"] for r in rolled)  # every row in exactly one latency bucket
    assert sum(r["n"] for r in rolled) == rows


async def test_import_rows_creates_the_schema_and_is_idempotent_by_id(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path
) -> None:
    now = int(time.time() * 1000)
    source = await sqlite_rows(tmp_path, [make_row(i, now - i * DAY_MS // 2, cost=0.25 * i) for i in range(40)])
    settings = settings_for(postgres_server, postgres_db)

    assert await import_rows(settings, source, batch=7) == 40
    assert await import_rows(settings, source, batch=7) == 0  # run again: every row is already there
    more = await sqlite_rows(tmp_path / "more", [make_row(i, now) for i in range(40, 45)])
    assert await import_rows(settings, source[:10] + more) == 5  # only the new ones

    stored = await fetch(postgres_server, postgres_db, f"SELECT {', '.join(COLUMNS)} FROM bifrost_logs ORDER BY seq")
    assert [tuple(r) for r in stored] == source + more  # every value as logs.db held it, in order
    versions = await fetch(postgres_server, postgres_db, "SELECT version FROM bifrost_logs_migrations")
    assert sorted(r[0] for r in versions) == [1, 2, 3, 4, 5]
    await assert_rollup_matches_the_log(postgres_server, postgres_db, 45)  # imports run twice counted once
    # The rows of the last 20 days landed in their days' partitions (none left in the default one).
    default = await fetch(postgres_server, postgres_db, "SELECT count(*) FROM bifrost_logs_default")
    assert default[0][0] == 0


async def test_a_log_made_by_the_first_schema_is_upgraded_in_place(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    from runtime.stores.logs_postgres import migrations

    conn = await asyncpg.connect(postgres_server.dsn(postgres_db))
    try:
        first = migrations.MIGRATIONS
        migrations.MIGRATIONS = first[:1]  # what main shipped first (m001 only)
        try:
            await migrations.migrate(conn)
            await conn.execute(  # a row as the writer of that schema stored it
                "INSERT INTO bifrost_logs (id, ts_ms, endpoint, status, latency_us, overhead_us, cost) "
                "VALUES ('r1', $1, 'chat', 200, 1234, 10, 0.5)",
                int(time.time() * 1000),
            )
        finally:
            migrations.MIGRATIONS = first
        assert await migrations.migrate(conn) == len(first) - 1
        assert await migrations.migrate(conn) == 0
        indexes = {r[0] for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'bifrost_logs'")}
        assert {"bifrost_logs_ts_cover", "bifrost_logs_pm_cover", "bifrost_logs_tokens_ts"} <= indexes
        assert "bifrost_logs_ts" not in indexes and "bifrost_logs_tokens" not in indexes
        assert await conn.fetchval("SELECT count(*) FROM bifrost_logs") == 1
    finally:
        await conn.close()
    await assert_rollup_matches_the_log(postgres_server, postgres_db, 1)  # m003 rolled up the existing row


async def test_import_rows_takes_an_async_iterable_and_skips_rows_that_cannot_be_stored(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path
) -> None:
    source = await sqlite_rows(tmp_path, [make_row(i, error="bad\x00byte") for i in range(5)])
    broken = list(source[0])
    broken[COLUMNS.index("id")] = "broken"
    broken[COLUMNS.index("status")] = "not a number"  # SQLite stores whatever it is given

    async def rows() -> AsyncIterator[tuple[Any, ...]]:
        for row in [*source, tuple(broken), source[1][:3]]:
            yield row
            await asyncio.sleep(0)

    assert await import_rows(settings_for(postgres_server, postgres_db), rows(), batch=2) == 5
    stored = await fetch(postgres_server, postgres_db, "SELECT id, error FROM bifrost_logs ORDER BY seq")
    assert [(r[0], r[1]) for r in stored] == [(f"r{i}", "bad\ufffdbyte") for i in range(5)]  # NUL: not storable


async def test_import_rows_to_a_server_that_is_down_raises_unavailable_without_the_password(
    postgres_server: PostgresServer,
) -> None:
    from harness.process import free_port

    from runtime.stores.pg import PostgresUnavailable

    settings = PostgresSettings(host="127.0.0.1", port=free_port(), user="bifrost", password="s3cret-pw", database="x")
    with pytest.raises(PostgresUnavailable) as caught:
        await import_rows(settings, [make_row(1)])
    assert "s3cret-pw" not in str(caught.value) and "127.0.0.1" in str(caught.value)


# -- the writer ------------------------------------------------------------------------------------
def writer_for(server: PostgresServer, db: str, **kw: Any) -> tuple[PostgresLogWriter, PostgresLogQueries]:
    status = StoreStatus("postgres", db)
    settings = settings_for(server, db)
    kw.setdefault("capacity", 10_000)
    return PostgresLogWriter(settings, status, **kw), PostgresLogQueries(settings, status)


async def wait_for(predicate: Any, timeout_s: float = 10.0) -> float:
    """Poll `predicate` until true (generous bound: a noisy machine); returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout_s, "condition not met in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_writer_batches_rows_and_calls_listeners_with_committed_batches(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    writer, reader = writer_for(postgres_server, postgres_db, batch_size=10, flush_interval_s=0.05)
    batches: list[list[tuple[Any, ...]]] = []
    writer.listeners.append(batches.append)
    try:
        await writer.start()
        assert writer.status.state == "standby"  # nothing written yet: no connection was needed
        for i in range(25):
            writer.submit(make_row(i, input=b'{"raw": "json"}', key_name="caf\udce9"))  # a lone surrogate
        await wait_for(lambda: writer.written == 25)
        assert writer.status.state == "up" and writer.pending == 0
        assert sum(len(b) for b in batches) == 25 and all(len(b) <= 25 for b in batches)
        # Listeners get rows as stored (content as JSON text), as the SQLite writer hands them.
        assert batches[0][0][COLUMNS.index("input")] == '{"raw": "json"}'
        record = await reader.get("r3")
        assert record is not None and record["input"] == {"raw": "json"} and record["key_name"] == "caf\ufffd"
    finally:
        await writer.close()
        await reader.close()
    assert (writer.written, writer.dropped, writer.failed) == (25, 0, 0)


async def test_a_backlog_is_written_in_bounded_transactions(postgres_server: PostgresServer, postgres_db: str) -> None:
    """A buffer that grew large (an outage, a burst) is written chunk_rows per transaction, never as one
    statement that could outlast the command timeout and be retried forever."""
    writer, reader = writer_for(postgres_server, postgres_db, batch_size=1000, flush_interval_s=30, chunk_rows=40)
    batches: list[int] = []
    writer.listeners.append(lambda rows: batches.append(len(rows)))
    try:
        await writer.start()
        for i in range(150):
            writer.submit(make_row(i))
    finally:
        await writer.close()
        total = (await reader.list(LogFilter(), Page()))["total"]
        await reader.close()
    assert batches == [40, 40, 40, 30] and total == 150 and (writer.written, writer.dropped) == (150, 0)


async def test_a_full_buffer_drops_the_newest_rows_and_counts_them(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    writer, reader = writer_for(postgres_server, postgres_db, capacity=5, batch_size=1000, flush_interval_s=30)
    try:
        await writer.start()
        for i in range(8):
            writer.submit(make_row(i))  # the flush task sleeps (30 s interval): the buffer fills
        assert (writer.pending, writer.dropped) == (5, 3)
    finally:
        await writer.close()  # drains the buffer
        ids = [r["id"] for r in (await reader.list(LogFilter(), Page(sort="ts", descending=False)))["items"]]
        await reader.close()
    assert ids == ["r0", "r1", "r2", "r3", "r4"]  # the oldest kept, in order
    assert (writer.written, writer.dropped, writer.failed) == (5, 3, 0)


async def test_a_row_postgres_refuses_is_dropped_alone(postgres_server: PostgresServer, postgres_db: str) -> None:
    writer, reader = writer_for(postgres_server, postgres_db, batch_size=1000, flush_interval_s=30)
    try:
        await writer.start()
        writer.submit(make_row(1))
        writer.submit(make_row(2, status=2**40))  # out of the integer column's range
        writer.submit(make_row(3, latency_us="slow"))
        writer.submit(make_row(4))
    finally:
        await writer.close()
        page = await reader.list(LogFilter(), Page(sort="ts", descending=False))
        await reader.close()
    assert [r["id"] for r in page["items"]] == ["r1", "r4"]
    assert (writer.written, writer.dropped, writer.failed) == (2, 2, 2)


# -- outages ---------------------------------------------------------------------------------------
async def test_server_stopped_mid_write_buffers_rows_and_writes_them_after_restart(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    writer, reader = writer_for(postgres_server, postgres_db, capacity=500, batch_size=20, flush_interval_s=0.05)
    try:
        await writer.start()
        for i in range(50):
            writer.submit(make_row(i))
        await wait_for(lambda: writer.written == 50)
        postgres_server.stop()
        try:
            for i in range(50, 350):  # while the server is down: buffered (within capacity)
                writer.submit(make_row(i))
                if i % 50 == 0:
                    await asyncio.sleep(0.05)
            await wait_for(lambda: writer.status.state == "down")
            assert writer.written == 50 and writer.dropped == 0 and writer.pending == 300
            assert "s3cret" not in (writer.status.error or "") and str(postgres_server.port) in (
                writer.status.error or ""
            )
            with pytest.raises(LogReadError):  # the admin API's 503
                await reader.stats(LogFilter())
        finally:
            postgres_server.start()
        took = await wait_for(lambda: writer.written == 350, timeout_s=30)
        print(f"buffered rows written {took:.2f} s after the restart")
        assert writer.status.state == "up"
        page = await reader.list(LogFilter(), Page(limit=1))
        assert page["total"] == 350
        assert await reader.last_rowid() >= 350
    finally:
        await writer.close()
        await reader.close()
    assert (writer.written, writer.dropped) == (350, 0)


async def test_a_database_error_that_is_not_a_rows_keeps_the_batch_for_a_retry(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    """Refused for a reason of the database's (here: no INSERT privilege), the rows are kept and written
    once it is fixed: a row is only dropped when PostgreSQL refuses its values."""
    writer, reader = writer_for(postgres_server, postgres_db, batch_size=10, flush_interval_s=0.02)
    try:
        await writer.start()
        writer.submit(make_row(0))
        await wait_for(lambda: writer.written == 1)
        postgres_server.psql("REVOKE INSERT ON bifrost_logs FROM bifrost", postgres_db)
        for i in range(1, 6):
            writer.submit(make_row(i))
        await wait_for(lambda: writer.status.state == "down")
        assert "InsufficientPrivilege" in (writer.status.error or "")
        assert (writer.written, writer.dropped, writer.pending) == (1, 0, 5)
        postgres_server.psql("GRANT INSERT ON bifrost_logs TO bifrost", postgres_db)
        await wait_for(lambda: writer.written == 6)
        assert writer.status.state == "up" and (await reader.list(LogFilter(), Page()))["total"] == 6
    finally:
        await writer.close()
        await reader.close()
    assert (writer.dropped, writer.failed) == (0, 0)


async def test_close_is_bounded_with_the_server_down_and_counts_what_it_lost(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    writer, reader = writer_for(postgres_server, postgres_db, batch_size=10, flush_interval_s=0.05, close_timeout_s=3)
    await writer.start()
    writer.submit(make_row(0))
    await wait_for(lambda: writer.written == 1)
    postgres_server.stop()
    try:
        for i in range(1, 41):
            writer.submit(make_row(i))
        await wait_for(lambda: writer.status.state == "down")
        started = time.monotonic()
        await writer.close()
        took = time.monotonic() - started
        print(f"close() with the server down took {took:.2f} s (bound 3 s)")
        assert took < 3 + 5  # the bound, plus a generous margin for a noisy machine
        assert (writer.written, writer.dropped, writer.pending) == (1, 40, 0)
    finally:
        postgres_server.start()
        await reader.close()


async def test_readers_of_a_server_that_never_answers_fail_together_not_one_timeout_each() -> None:
    """A server that accepts and never answers (a hung host): the view's concurrent queries share one
    bounded connect (pg.CONNECT_TIMEOUT_S) instead of queueing one timeout after another."""
    accepted: list[asyncio.StreamWriter] = []

    async def hang(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader = PostgresLogQueries(settings_for_port(port), StoreStatus("postgres", "hung"))
    try:
        f = LogFilter(since_ms=0, until_ms=int(time.time() * 1000))
        results = await asyncio.gather(
            reader.list(f, Page()), reader.stats(f), reader.histogram(f), reader.facets(), return_exceptions=True
        )
        assert all(isinstance(r, LogReadError) for r in results), results
        assert len(accepted) <= reader.settings.max_idle_conns  # one pool open was tried, not one per query
        assert reader.status.state == "down" and "TimeoutError" in (reader.status.error or "")
    finally:
        await reader.close()
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()


def settings_for_port(port: int) -> PostgresSettings:
    return PostgresSettings(host="127.0.0.1", port=port, user="bifrost", database="x")


async def test_close_is_bounded_when_a_flush_hangs_on_a_live_server(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    """The server answers but the batch waits (here: another session holds the write lock): close() stops
    the flush, tries once more on a fresh connection, and returns within its bound, counting the rows."""
    settings = settings_for(postgres_server, postgres_db)
    assert await import_rows(settings, [make_row(0, input="[]", output="{}")]) == 1
    from runtime.stores.logs_postgres.migrations import LOG_WRITE_LOCK

    blocker = await asyncpg.connect(postgres_server.dsn(postgres_db))
    writer, reader = writer_for(postgres_server, postgres_db, flush_interval_s=0.01, close_timeout_s=3)
    try:
        await partitions.ensure(blocker, [partitions.today(), partitions.today() + 1])
        hold = blocker.transaction()
        await hold.start()
        await blocker.execute("SELECT pg_advisory_xact_lock($1)", LOG_WRITE_LOCK)
        await writer.start()
        for i in range(1, 11):
            writer.submit(make_row(i))
        await asyncio.sleep(0.3)  # the flush is now waiting for the lock
        started = time.monotonic()
        await writer.close()
        took = time.monotonic() - started
        print(f"close() with a flush stuck on a lock took {took:.2f} s (bound 3 s)")
        assert took < 3 + 5
        assert (writer.written, writer.dropped, writer.pending) == (0, 10, 0)
        await hold.rollback()
        await asyncio.sleep(0.3)  # the abandoned sessions' inserts, if any, would land now
        assert (await reader.list(LogFilter(), Page()))["total"] == 1  # nothing half-written
    finally:
        await blocker.close()
        await reader.close()


# -- partitions and retention ----------------------------------------------------------------------
async def partition_names(server: PostgresServer, db: str) -> list[str]:
    rows = await fetch(
        server,
        db,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'bifrost_logs'::regclass ORDER BY 1",
    )
    return [r[0] for r in rows]


async def test_partitions_are_made_ahead_and_retention_drops_whole_old_ones(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    now = int(time.time() * 1000)
    today = partitions.today()
    settings = settings_for(postgres_server, postgres_db)
    # Rows of 10 days ago .. today, and one from before the horizon (it lands in the default partition).
    old = [make_row(100 + d, now - d * DAY_MS, input="[]", output="{}") for d in range(10, -1, -1)]
    ancient = make_row(1, now - (partitions.PARTITION_HORIZON_DAYS + 5) * DAY_MS, input="[]", output="{}")
    assert await import_rows(settings, [ancient, *old]) == 12
    names = await partition_names(postgres_server, postgres_db)
    assert partitions.partition_name(today) in names and "bifrost_logs_default" in names
    assert partitions.partition_name(today - 10) in names

    writer, reader = writer_for(postgres_server, postgres_db, retention_days=3, flush_interval_s=0.05)
    try:
        await writer.start()
        writer.submit(make_row(0, now))
        await wait_for(lambda: writer.written == 1)
        names = await partition_names(postgres_server, postgres_db)
        assert partitions.partition_name(today + 1) in names  # tomorrow's, made ahead
        # Retention: every partition whose day ended more than 3 days ago is gone, with the default's old row.
        assert partitions.partition_name(today - 4) not in names and partitions.partition_name(today - 10) not in names
        assert partitions.partition_name(today - 3) in names  # its day ends within the window: kept
        left = {r["id"] for r in (await reader.list(LogFilter(), Page(limit=100)))["items"]}
        assert left == {"r0", "r100", "r101", "r102", "r103"}
        await assert_rollup_matches_the_log(postgres_server, postgres_db, 5)  # the dropped days' hours went too
        assert (await reader.stats(LogFilter()))["count"] == 5
    finally:
        await writer.close()
        await reader.close()


async def test_a_day_without_a_partition_moves_out_of_the_default_when_its_partition_is_made(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    settings = settings_for(postgres_server, postgres_db)
    ts = (partitions.today() + 1) * DAY_MS + 5000  # tomorrow: a skewed clock, before any partition for it
    conn = await asyncpg.connect(postgres_server.dsn(postgres_db))
    try:
        from runtime.stores.logs_postgres.migrations import migrate

        await migrate(conn)
        row = batch.coerce(make_row(1, ts, input="[]", output="{}"))
        await batch.insert(conn, [row])  # no partition exists yet: ensure() makes tomorrow's ...
        assert (await conn.fetchval("SELECT count(*) FROM bifrost_logs_default")) == 0
        await conn.execute(f"DROP TABLE {partitions.partition_name(partitions.today() + 1)}")
        await conn.execute(
            "INSERT INTO bifrost_logs (id, ts_ms, endpoint, status, latency_us, overhead_us) "
            "VALUES ('late', $1, 'chat', 200, 1, 1)",
            ts,
        )  # ... with it gone, a row of that day lands in the default partition
        seq = await conn.fetchval("SELECT seq FROM bifrost_logs WHERE id = 'late'")
        await partitions.ensure(conn, [partitions.today() + 1])
        assert (await conn.fetchval("SELECT count(*) FROM bifrost_logs_default")) == 0
        moved = await conn.fetchrow(
            f"SELECT seq FROM {partitions.partition_name(partitions.today() + 1)} WHERE id = 'late'"
        )
        assert moved is not None and moved["seq"] == seq  # moved, cursor kept (tail never sees it twice)
    finally:
        await conn.close()
    assert settings.database == postgres_db


# -- several instances -----------------------------------------------------------------------------
async def test_two_writers_and_tail_sees_every_row_once(postgres_server: PostgresServer, postgres_db: str) -> None:
    one, reader = writer_for(postgres_server, postgres_db, batch_size=7, flush_interval_s=0.01)
    two, other_reader = writer_for(postgres_server, postgres_db, batch_size=5, flush_interval_s=0.01)
    seen: list[str] = []
    cursor = 0
    try:
        await one.start()
        await two.start()

        async def produce(writer: PostgresLogWriter, prefix: str) -> None:
            for i in range(400):
                writer.submit(make_row(i, id=f"{prefix}{i}"))
                if i % 9 == 0:
                    await asyncio.sleep(0.001)

        async def follow() -> None:
            nonlocal cursor
            while len(seen) < 800:
                for seq, row in await reader.tail(cursor, limit=50):
                    assert seq > cursor
                    cursor = seq
                    seen.append(row[0])
                await asyncio.sleep(0.005)

        await asyncio.wait_for(asyncio.gather(produce(one, "a"), produce(two, "b"), follow()), 60)
    finally:
        await one.close()
        await two.close()
        await reader.close()
        await other_reader.close()
    assert len(seen) == 800 and set(seen) == {f"{p}{i}" for p in "ab" for i in range(400)}


async def test_a_batch_committing_late_is_not_skipped_by_tail(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    """Instance A draws its seq, then B commits before A does: without the write lock B's higher seq would
    be read first and A's row skipped by every cursor past it. With it, B waits for A's commit."""
    settings = settings_for(postgres_server, postgres_db)
    assert await import_rows(settings, [make_row(0, input="[]", output="{}")]) == 1  # schema and partitions
    writer, reader = writer_for(postgres_server, postgres_db, flush_interval_s=0.01)
    conn = await asyncpg.connect(postgres_server.dsn(postgres_db))
    try:
        await partitions.ensure(conn, [partitions.today(), partitions.today() + 1])  # the writer's start DDL
        cursor = await reader.last_rowid()
        late = conn.transaction()
        await late.start()
        await batch.insert(conn, [batch.coerce(make_row(1, input="[]", output="{}"))])  # seq drawn, not committed
        await writer.start()
        writer.submit(make_row(2))
        await asyncio.sleep(0.5)  # B is waiting for the lock, so nothing after the cursor is visible yet
        assert await reader.tail(cursor) == [] and writer.written == 0
        await late.commit()
        await wait_for(lambda: writer.written == 1)
        assert [row[0] for _, row in await reader.tail(cursor)] == ["r1", "r2"]
    finally:
        await conn.close()
        await writer.close()
        await reader.close()


async def test_a_query_past_its_budget_is_stopped_and_the_pool_still_answers(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    _, reader = writer_for(postgres_server, postgres_db)
    reader.budget_s = 0.5
    try:
        with pytest.raises(LogQueryTooSlow, match="narrow the time range"):
            await reader._fetch("SELECT pg_sleep(5)")
        assert (await reader.list(LogFilter(), Page()))["total"] == 0  # schema made on first use; empty
        assert reader.status.state == "up"
    finally:
        await reader.close()


async def test_a_batch_retried_after_a_lost_commit_is_not_rolled_up_twice(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    """The rollup is written by the rows' own INSERT (its RETURNING): a batch written again after a commit
    whose answer was lost adds its new rows only, and stats over the rollup stay exact."""
    now = int(time.time() * 1000)
    first = [
        batch.coerce(make_row(i, now - i * 600_000, cost=0.5, total_tokens=3, input="[]", output="{}"))
        for i in range(20)
    ]
    again = [*first, batch.coerce(make_row(99, now, status=500, latency_us=2_000_000, input="[]", output="{}"))]
    conn = await asyncpg.connect(postgres_server.dsn(postgres_db))
    try:
        from runtime.stores.logs_postgres.migrations import migrate

        await migrate(conn)
        assert (await batch.insert(conn, first))[0] == 20
        assert (await batch.insert(conn, again))[0] == 1  # the retry: 20 already there, one new
    finally:
        await conn.close()
    await assert_rollup_matches_the_log(postgres_server, postgres_db, 21)
    _, reader = writer_for(postgres_server, postgres_db)
    try:
        stats = await reader.stats(LogFilter(since_ms=now - 5 * 3_600_000))
        assert (stats["count"], stats["errors"], stats["total_tokens"], stats["cost"]) == (21, 1, 60, 10.0)
    finally:
        await reader.close()


async def test_a_text_search_reads_newest_first_stops_when_the_page_is_full_and_says_how_far_it_searched(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    """A content search reads every row of its range: over a month of a busy log one query would pass the
    10 s budget. Sorted by time it reads a window at a time from the newest, stops once the page is
    full, and when its own budget runs out answers what it found with `searched_until`."""
    writer, reader = writer_for(postgres_server, postgres_db, batch_size=500)
    now = int(time.time() * 1000)
    try:
        await writer.start()
        for i in range(200):  # one row every 20 minutes: ~66 hours
            writer.submit(make_row(i, ts_ms=now - i * 1_200_000, input=[{"role": "user", "content": f"common {i}"}]))
        await wait_for(lambda: writer.written == 200)
        queries: list[str] = []
        fetch_real = reader._fetch

        async def spy(sql: str, params: Any = (), budget_s: float | None = None) -> Any:
            queries.append(sql)
            return await fetch_real(sql, params, budget_s)

        reader._fetch = spy  # type: ignore[method-assign]
        page = await reader.list(LogFilter(text="common"), Page(limit=5))
        assert [r["id"] for r in page["items"]] == ["r0", "r1", "r2", "r3", "r4"] and page["has_more"]
        assert "searched_until" not in page and page["total"] is None
        windows = [q for q in queries if "ILIKE" in q]
        assert len(windows) <= 3, len(windows)  # 1 h, 2 h, 4 h: not the 66 hours
        # The whole range when the page needs it; oldest first for order=asc; same rows as one query.
        everything = await reader.list(LogFilter(text="common"), Page(limit=500))
        assert len(everything["items"]) == 200 and not everything["has_more"]
        oldest = await reader.list(LogFilter(text="common"), Page(limit=3, descending=False))
        assert [r["id"] for r in oldest["items"]] == ["r199", "r198", "r197"]
        deep = await reader.list(LogFilter(text="common 1"), Page(limit=4, offset=3))
        assert [r["id"] for r in deep["items"]] == ["r12", "r13", "r14", "r15"]
        # Its budget spent before the first window: nothing found, and it says it searched nothing.
        reader.search_budget_s = 0.0
        until = now + 1000
        stopped = await reader.list(LogFilter(text="common", until_ms=until), Page(limit=5))
        assert (stopped["items"], stopped["searched_until"], stopped["has_more"]) == ([], until, True)
    finally:
        await writer.close()
        await reader.close()


async def test_totals_are_exact_up_to_the_cap_then_an_estimate_that_says_so(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    """An exact count(*) of a range is linear in its rows (seconds at 10M): past `total_cap` matching rows
    the total is the planner's estimate, never below cap + 1, flagged `total_exact: false`."""
    writer, reader = writer_for(postgres_server, postgres_db, batch_size=500)
    now = int(time.time() * 1000)
    try:
        await writer.start()
        for i in range(300):
            writer.submit(make_row(i, ts_ms=now - i * 1000, status=500 if i % 10 == 0 else 200))
        await wait_for(lambda: writer.written == 300)
        await fetch(postgres_server, postgres_db, "ANALYZE bifrost_logs")
        reader.total_cap = 100
        page = await reader.list(LogFilter(), Page(limit=5))
        assert page["total_exact"] is False and page["total"] > 100 and len(page["items"]) == 5
        assert page["has_more"] is True
        # The planner's statistics make it close to the truth (300) here.
        assert 150 <= page["total"] <= 600, page["total"]
        errors = await reader.list(LogFilter(statuses=("error",)), Page(limit=5))
        assert (errors["total"], errors["total_exact"]) == (30, True)  # under the cap: exact
        at_cap = await reader.list(LogFilter(since_ms=now - 99_500), Page(limit=5))
        assert (at_cap["total"], at_cap["total_exact"]) == (100, True)  # exactly the cap: still exact
        reader.total_cap = 10_000
        assert (await reader.list(LogFilter(), Page()))["total"] == 300
        searched = await reader.list(LogFilter(text="hello 7"), Page())
        assert searched["total"] is None  # a content search never counts
    finally:
        await writer.close()
        await reader.close()


# -- a real gateway process ------------------------------------------------------------------------
PASSWORD = "pw-s3cret-value"  # trust auth on the test server ignores it; it must never be shown


def pg_gateway(start_gateway: StartGateway, fake: FakeOpenAI, server: PostgresServer, db: str) -> Gateway:
    config = make_config({"openai": openai_provider(fake.url, keys=[key("sk-fake-1", name="k1")])})
    config["logs_store"] = {
        "enabled": True,
        "type": "postgres",
        "config": {**server.settings(db), "password": PASSWORD},
    }
    return start_gateway(config)


async def chat(session: aiohttp.ClientSession, gateway: Gateway, i: int) -> str:
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": f"request {i}"}]}
    if i % 4 == 0:
        body["stream"] = True
    async with session.post(gateway.url("/v1/chat/completions"), json=body) as resp:
        assert resp.status == 200
        await resp.read()
        return resp.headers["x-request-id"]


async def send_many(gateway: Gateway, start: int, n: int) -> set[str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        return set(await asyncio.gather(*(chat(session, gateway, i) for i in range(start, start + n))))


async def api_get(gateway: Gateway, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
        session.get(gateway.url(path)) as resp,
    ):
        return resp.status, await resp.json()


async def stored_ids(server: PostgresServer, db: str) -> list[str]:
    """The ids in the log table (none before the gateway's writer has made it)."""
    try:
        return [r[0] for r in await fetch(server, db, "SELECT id FROM bifrost_logs")]
    except asyncpg.UndefinedTableError:
        return []


async def test_gateway_rows_are_visible_via_the_api_and_sigterm_loses_none(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, postgres_server: PostgresServer, postgres_db: str
) -> None:
    gateway = pg_gateway(start_gateway, fake_openai, postgres_server, postgres_db)
    first = await send_many(gateway, 0, 60)
    deadline = time.monotonic() + 15
    while True:
        status, page = await api_get(gateway, "/api/logs?limit=500")
        assert status == 200, page
        if page["total"] == 60 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert {item["id"] for item in page["items"]} == first
    assert (await api_get(gateway, "/api/logs/stats"))[1]["count"] == 60
    assert (await api_get(gateway, "/api/logs/facets"))[1] == {"providers": ["openai"], "models": ["gpt-4o-mini"]}
    one = next(iter(first))
    assert (await api_get(gateway, f"/api/logs/{one}"))[1]["id"] == one
    second = await send_many(gateway, 60, 40)  # answered, still in the writer's buffer ...
    code = await asyncio.to_thread(gateway.stop, signal.SIGTERM)  # ... drained by the shutdown
    assert code == 0, gateway.output()
    ids = await stored_ids(postgres_server, postgres_db)
    assert len(ids) == 100 and set(ids) == first | second
    assert PASSWORD not in gateway.output()


async def test_gateway_kill_9_loses_no_row_once_the_instance_is_back(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, postgres_server: PostgresServer, postgres_db: str
) -> None:
    """SIGKILL right after the last answers: the rows still in the writer's memory are in the spool
    (<app_dir>/log-spool), and the next process on the app dir (systemd's restart) writes them first."""
    gateway = pg_gateway(start_gateway, fake_openai, postgres_server, postgres_db)
    flushed = await send_many(gateway, 0, 50)
    await wait_for_rows(postgres_server, postgres_db, 50)
    recent = await send_many(gateway, 50, 30)
    gateway.kill()  # no shutdown, no drain
    ids = await stored_ids(postgres_server, postgres_db)
    assert flushed <= set(ids)  # everything flushed before the kill is there
    print(f"\nkill -9: {80 - len(ids)} of the last 30 rows were only in memory and the spool")
    again = start_gateway(
        {**json.loads((gateway.app_dir / "config.json").read_text())}, app_dir=gateway.app_dir
    )  # the same app dir, as a restart of the unit would
    await wait_for_rows(postgres_server, postgres_db, 80)
    ids = await stored_ids(postgres_server, postgres_db)
    assert len(ids) == len(set(ids)) == 80 and set(ids) == flushed | recent  # none lost, none twice
    assert again.running()


async def wait_for_rows(server: PostgresServer, db: str, n: int) -> None:
    deadline = time.monotonic() + 15
    while len(await stored_ids(server, db)) < n:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_gateway_with_the_log_server_down_answers_requests_and_a_readable_503(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, postgres_server: PostgresServer, postgres_db: str
) -> None:
    gateway = pg_gateway(start_gateway, fake_openai, postgres_server, postgres_db)
    before = await send_many(gateway, 0, 5)
    await wait_for_rows(postgres_server, postgres_db, 5)
    postgres_server.stop()
    try:
        during = await send_many(gateway, 5, 20)  # requests never wait on the log store
        status, body = await api_get(gateway, "/api/logs")
        assert status == 503 and body["error"]["code"] == "log_query_failed"
        assert str(postgres_server.port) in body["error"]["message"] and PASSWORD not in body["error"]["message"]
    finally:
        postgres_server.start()
    await wait_for_rows(postgres_server, postgres_db, 25)  # the buffered rows, written after the restart
    assert set(await stored_ids(postgres_server, postgres_db)) == before | during
    status, page = await api_get(gateway, "/api/logs?limit=100")
    assert status == 200 and page["total"] == 25
    assert PASSWORD not in gateway.output()


async def test_two_gateways_on_one_database_each_show_every_instances_rows(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, postgres_server: PostgresServer, postgres_db: str
) -> None:
    one = pg_gateway(start_gateway, fake_openai, postgres_server, postgres_db)
    two = pg_gateway(start_gateway, fake_openai, postgres_server, postgres_db)
    sent = await send_many(one, 0, 15) | await send_many(two, 15, 15)
    await wait_for_rows(postgres_server, postgres_db, 30)
    for gateway in (one, two):
        status, page = await api_get(gateway, "/api/logs?limit=100")
        assert status == 200 and page["total"] == 30 and {item["id"] for item in page["items"]} == sent


@pytest.mark.browser
def test_the_logs_page_says_about_n_when_the_total_is_an_estimate(
    browser_page: Any,  # noqa: F811  (the fixture imported above)
    start_gateway: StartGateway,
    fake_openai: FakeOpenAI,
    postgres_server: PostgresServer,
    postgres_db: str,
) -> None:
    """Past 10,000 matching rows the PostgreSQL engine estimates the total (`total_exact: false`): the
    Logs page must not present the estimate as a count."""
    gateway = pg_gateway(start_gateway, fake_openai, postgres_server, postgres_db)
    page = browser_page
    page.goto(gateway.base_url + "/#/logs")  # its first /api/logs made the schema
    page.get_by_test_id("log-count").wait_for()
    postgres_server.psql(
        "INSERT INTO bifrost_logs (id, ts_ms, endpoint, provider, model, status, latency_us, overhead_us) "
        "SELECT 'bulk-' || g, (extract(epoch FROM now()) * 1000)::bigint - g * 1000, 'chat', 'openai', "
        "'gpt-4o', 200, 1000, 10 FROM generate_series(1, 12000) g; ANALYZE bifrost_logs",
        postgres_db,
        user="bifrost",
    )
    page.reload()
    count = page.get_by_test_id("log-count")
    count.filter(has_text="about").wait_for()
    assert re.search(r"of about [\d,]+", count.inner_text()), count.inner_text()
