"""The request log's `guardrails` column (issue 15) in both engines: `ctx.guardrails` -> the row (JSON text,
like `attempts`) -> `/api/logs` rows and the detail; databases made at the previous migration upgraded in
place (SQLite logs.db at m006, PostgreSQL at m004 with partitions and rows in the default one); `bifrost
migrate`'s log copy carrying the column, from an up-to-date logs.db and from one an older gateway left."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest
from harness.postgres import PostgresServer

from bifrost_cli.commands.migrate import _log_rows
from runtime.core.context import RequestContext
from runtime.requestlog.filters import FilterError, LogFilter, Page, parse_filter
from runtime.requestlog.record import COLUMNS, GUARDRAILS_COL, row_summary, to_row
from runtime.stores.logs_postgres import PostgresLogQueries, batch, import_rows, partitions
from runtime.stores.logs_postgres import migrations as pg_migrations
from runtime.stores.logs_postgres.writer import upgrade_row
from runtime.stores.logs_sqlite import migrations as lite_migrations
from runtime.stores.logs_sqlite.queries import LogQueries
from runtime.stores.logs_sqlite.writer import LogWriter, encode
from runtime.stores.status import StoreStatus

from .test_logs_postgres import DAY_MS, fetch, make_row, settings_for, writer_for

FIRED = [
    {
        "rule": "mask-pii",
        "provider": "cards",
        "stage": "input",
        "action": "redact",
        "types": ["credit_card", "email"],
        "count": 3,
    },
    {
        "rule": "judge",
        "provider": "llm",
        "stage": "output",
        "action": "flag",
        "types": [],
        "count": 0,
        "error": "timeout",
    },
]


def stored(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """`row` as the PostgreSQL writer stores it (content columns as JSON text, typed)."""
    return batch.coerce(encode(row))


def ctx_row(request_id: str, guardrails: list[dict[str, Any]] | None) -> tuple[Any, ...]:
    """A row built by record.to_row from a RequestContext whose guardrails were set (as the engine sets them)."""
    ctx = RequestContext(request_id, "chat")
    ctx.provider, ctx.model, ctx.status = "openai", "gpt-4o-mini", 200
    ctx.input_raw = b'{"messages": []}'
    ctx.guardrails = guardrails
    return to_row(ctx, with_content=True)


def test_the_row_carries_ctx_guardrails_last_and_the_live_feed_decodes_stored_text() -> None:
    assert COLUMNS[-1] == "guardrails" and len(COLUMNS) - 1 == GUARDRAILS_COL
    row = ctx_row("a", FIRED)
    assert row[GUARDRAILS_COL] == FIRED
    assert ctx_row("b", None)[GUARDRAILS_COL] is None
    assert row_summary(row)["guardrails"] == FIRED  # a live row: the list as it is
    stored = list(row)
    stored[GUARDRAILS_COL] = '[{"rule":"mask-pii","action":"redact"}]'  # a row read back by the tail
    assert row_summary(tuple(stored))["guardrails"] == [{"rule": "mask-pii", "action": "redact"}]


# -- SQLite ----------------------------------------------------------------------------------------
async def test_sqlite_writes_the_column_as_json_and_the_readers_return_it(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    writer = LogWriter(path, capacity=100)
    await writer.start()
    writer.submit(ctx_row("fired", FIRED))
    writer.submit(ctx_row("quiet", None))
    await writer.close()
    with sqlite3.connect(path) as db:
        stored = dict(db.execute("SELECT id, guardrails FROM logs"))
    assert stored["quiet"] is None and stored["fired"].startswith('[{"rule":"mask-pii"')
    queries = LogQueries(path)
    try:
        detail = await queries.get("fired")
        assert detail is not None and detail["guardrails"] == FIRED
        listed = await queries.list(LogFilter(), Page())
        assert {i["id"]: i["guardrails"] for i in listed["items"]} == {"fired": FIRED, "quiet": None}
        only = await queries.list(LogFilter(guardrail="judge", guardrail_action="flag"), Page())
        assert [i["id"] for i in only["items"]] == ["fired"] and only["total"] == 1
        assert (await queries.list(LogFilter(guardrail_action="block"), Page()))["items"] == []
    finally:
        await queries.close()


async def make_old_sqlite_log(path: Path) -> None:
    """A logs.db as the previous release left it: migrations up to m006, one row written then."""
    async with aiosqlite.connect(path) as db:
        shipped = lite_migrations.MIGRATIONS
        lite_migrations.MIGRATIONS = shipped[:6]
        try:
            await lite_migrations.migrate(db)
        finally:
            lite_migrations.MIGRATIONS = shipped
        await db.execute(
            "INSERT INTO logs (id, ts_ms, endpoint, status, latency_us, overhead_us, cache) "
            "VALUES ('old', ?, 'chat', 200, 1234, 10, 'miss')",
            (int(time.time() * 1000),),
        )
        await db.commit()


async def test_a_sqlite_log_of_the_previous_release_gets_the_column_in_place(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    await make_old_sqlite_log(path)
    with sqlite3.connect(path) as db:
        assert "guardrails" not in {r[1] for r in db.execute("PRAGMA table_info(logs)")}
    writer = LogWriter(path, capacity=100)
    await writer.start()  # the gateway's start: pending migrations run
    writer.submit(ctx_row("new", FIRED))
    await writer.close()
    with sqlite3.connect(path) as db:
        versions = [r[0] for r in db.execute("SELECT version FROM _migrations ORDER BY version")]
        rows = dict(db.execute("SELECT id, guardrails FROM logs"))
    assert versions == list(range(1, len(lite_migrations.MIGRATIONS) + 1)) and versions[-1] == 7
    assert rows["old"] is None and rows["new"] is not None
    queries = LogQueries(path)
    try:
        old = await queries.get("old")
        assert old is not None and old["guardrails"] is None and old["cache"] == "miss"
        found = await queries.list(LogFilter(guardrail="mask-pii"), Page())
        assert [i["id"] for i in found["items"]] == ["new"]
    finally:
        await queries.close()


# -- PostgreSQL ------------------------------------------------------------------------------------
async def test_postgres_writes_the_column_and_filters_read_it(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    writer, reader = writer_for(postgres_server, postgres_db, flush_interval_s=0.05)
    nul = [{**FIRED[0], "rule": "odd\x00name"}]  # PostgreSQL's JSON operators refuse an escaped NUL
    try:
        await writer.start()
        writer.submit(make_row(1, guardrails=FIRED))
        writer.submit(make_row(2))
        writer.submit(make_row(3, guardrails=nul))
        while writer.written < 3:
            assert writer.dropped == 0
            await _tick()
        detail = await reader.get("r1")
        assert detail is not None and detail["guardrails"] == FIRED
        assert (await reader.get("r2") or {})["guardrails"] is None
        assert (await reader.get("r3") or {})["guardrails"][0]["rule"] == "odd\ufffdname"
        listed = await reader.list(LogFilter(guardrail="mask-pii"), Page())
        assert [i["id"] for i in listed["items"]] == ["r1"] and listed["items"][0]["guardrails"] == FIRED
        assert (await reader.list(LogFilter(guardrail_action="redact"), Page()))["total"] == 2
        assert (await reader.list(LogFilter(guardrail="mask-pii", guardrail_action="flag"), Page()))["total"] == 0
    finally:
        await writer.close()
        await reader.close()


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.02)


async def test_a_postgres_log_of_the_previous_release_gets_the_column_in_every_partition(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    """At m004 (the previous release), with a day partition holding a row and a row of a day without a
    partition in the default one: m005 adds the column to the table and every partition; the old rows read
    NULL; the default partition's row still moves into its day's partition when that is made (the move
    copies whole rows: column order must match)."""
    today = partitions.today()
    conn = await asyncpg.connect(postgres_server.dsn(postgres_db))
    try:
        shipped = pg_migrations.MIGRATIONS
        pg_migrations.MIGRATIONS = shipped[:4]
        try:
            await pg_migrations.migrate(conn)
        finally:
            pg_migrations.MIGRATIONS = shipped
        await partitions.ensure(conn, [today])
        earlier = (today - 2) * DAY_MS + 5000  # a day with no partition yet: the row lands in the default one
        for log_id, ts in (("old", today * DAY_MS + 1000), ("stray", earlier)):
            await conn.execute(
                "INSERT INTO bifrost_logs (id, ts_ms, endpoint, status, latency_us, overhead_us) "
                "VALUES ($1, $2, 'chat', 200, 1, 1)",
                log_id,
                ts,
            )
        assert await pg_migrations.migrate(conn) == 1
        assert await pg_migrations.migrate(conn) == 0
        tables = [r[0] for r in await conn.fetch("SELECT relname FROM pg_class WHERE relname LIKE 'bifrost_logs%'")]
        for name in (pg_migrations.TABLE, pg_migrations.DEFAULT_PARTITION, partitions.partition_name(today)):
            assert name in tables
            columns = [
                r[0]
                for r in await conn.fetch(
                    "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
                    "AND NOT attisdropped ORDER BY attnum",
                    name,
                )
            ]
            assert columns[-1] == "guardrails", name
        assert await conn.fetchval("SELECT count(*) FROM bifrost_logs WHERE guardrails IS NULL") == 2
        await partitions.ensure(conn, [today - 2])  # moves 'stray' out of the default partition
        assert await conn.fetchval("SELECT count(*) FROM bifrost_logs_default") == 0
        moved = f"SELECT id FROM {partitions.partition_name(today - 2)}"
        assert [r[0] for r in await conn.fetch(moved)] == ["stray"]
        await batch.insert(conn, [stored(make_row(9, today * DAY_MS + 2000, guardrails=[{"rule": "x"}]))])
    finally:
        await conn.close()
    reader = PostgresLogQueries(settings_for(postgres_server, postgres_db), StoreStatus("postgres", postgres_db))
    try:
        assert [i["id"] for i in (await reader.list(LogFilter(guardrail="x"), Page()))["items"]] == ["r9"]
        assert (await reader.get("old") or {})["guardrails"] is None
    finally:
        await reader.close()


def test_coerce_keeps_json_arrays_and_makes_other_text_a_json_string() -> None:
    arrays = stored(make_row(1, guardrails=[{"rule": "a"}]))
    assert arrays[GUARDRAILS_COL] == '[{"rule":"a"}]'
    by_hand = list(encode(make_row(2)))
    by_hand[GUARDRAILS_COL] = "not json"  # as a logs.db edited by hand could hold it
    assert batch.coerce(tuple(by_hand))[GUARDRAILS_COL] == '"not json"'
    assert stored(make_row(3))[GUARDRAILS_COL] is None


def test_a_row_spooled_by_the_previous_release_is_padded_not_refused() -> None:
    old = make_row(1)[: len(pg_migrations.M001_COLUMNS)]
    upgraded = upgrade_row(old)
    assert len(upgraded) == len(COLUMNS) and upgraded[GUARDRAILS_COL] is None
    assert stored(upgraded)[0] == "r1"
    assert upgrade_row(old[:3]) == old[:3]  # not a row of any release: left to be refused


# -- bifrost migrate -------------------------------------------------------------------------------
async def test_migrate_copies_the_column_and_reads_a_log_an_older_gateway_left(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path
) -> None:
    current = tmp_path / "current" / "logs.db"
    current.parent.mkdir()
    writer = LogWriter(current, capacity=100)
    await writer.start()
    writer.submit(ctx_row("fired", FIRED))
    writer.submit(ctx_row("quiet", None))
    await writer.close()
    old = tmp_path / "old" / "logs.db"
    old.parent.mkdir()
    await make_old_sqlite_log(old)  # never opened by this version: no guardrails column

    read = list(_log_rows(current))
    assert [len(r) for r in read] == [len(COLUMNS)] * 2
    from_old = list(_log_rows(old))
    assert len(from_old) == 1 and from_old[0][GUARDRAILS_COL] is None and from_old[0][COLUMNS.index("cache")] == "miss"

    settings = settings_for(postgres_server, postgres_db)
    assert await import_rows(settings, read + from_old) == 3
    stored = await fetch(postgres_server, postgres_db, "SELECT id, guardrails FROM bifrost_logs ORDER BY seq")
    as_sqlite = {r[0]: r[GUARDRAILS_COL] for r in read}
    assert {r[0]: r[1] for r in stored} == {**as_sqlite, "old": None}  # the text as logs.db held it
    reader = PostgresLogQueries(settings, StoreStatus("postgres", postgres_db))
    try:
        assert (await reader.get("fired") or {})["guardrails"] == FIRED
    finally:
        await reader.close()


# -- the filter's query parameters ---------------------------------------------------------------
def test_guardrail_query_parameters_are_checked() -> None:
    f = parse_filter({"guardrail": " mask-pii ", "guardrail_action": "BLOCK"})
    assert (f.guardrail, f.guardrail_action, f.needs_table) == ("mask-pii", "block", True)
    assert parse_filter({"guardrail": ""}).guardrail is None
    for query, param in (
        ({"guardrail_action": "drop"}, "guardrail_action"),
        ({"guardrail": "x" * 257}, "guardrail"),
        ({"guardrail": "a\x00b"}, "guardrail"),
        ({"guardrail": "line\nbreak"}, "guardrail"),
    ):
        with pytest.raises(FilterError) as caught:
            parse_filter(query)
        assert caught.value.param == param


async def test_a_quote_in_the_rule_name_is_a_value_not_sql(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    writer = LogWriter(path, capacity=10)
    await writer.start()
    writer.submit(ctx_row("q", [{**FIRED[0], "rule": "it's') OR 1=1 --"}]))
    writer.submit(ctx_row("other", FIRED))
    await writer.close()
    queries = LogQueries(path)
    try:
        found = await queries.list(parse_filter({"guardrail": "it's') OR 1=1 --"}), Page())
        assert [i["id"] for i in found["items"]] == ["q"]
    finally:
        await queries.close()
