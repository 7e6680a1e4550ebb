"""The PostgreSQL request-log engine (runtime/stores/logs_postgres/) against a real PostgreSQL server
(tests/harness/postgres.py): import, writer, partitions, retention, outages, several instances, and the
same answers as the SQLite engine for the same rows (tests/stores/test_logs_parity.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from harness.postgres import PostgresServer

from runtime.config.model import PostgresSettings
from runtime.requestlog.record import COLUMNS
from runtime.stores.logs_postgres import import_rows
from runtime.stores.logs_sqlite.writer import LogWriter as SQLiteLogWriter

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
    assert [r[0] for r in versions] == [1]
    # The rows of the last 20 days landed in their days' partitions (none left in the default one).
    default = await fetch(postgres_server, postgres_db, "SELECT count(*) FROM bifrost_logs_default")
    assert default[0][0] == 0


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
