"""Numbered schema migrations for logs.db, each applied once and recorded in `_migrations`.

Add a migration by appending a function to MIGRATIONS; never edit one that has shipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import aiosqlite

Migration = Callable[[aiosqlite.Connection], object]


async def _script(db: aiosqlite.Connection, sql: str) -> None:
    # Statement by statement: executescript would COMMIT the surrounding migration transaction.
    for statement in sql.split(";"):
        if statement.strip():
            await db.execute(statement)


async def m001_logs(db: aiosqlite.Connection) -> None:
    await _script(
        db,
        """
        CREATE TABLE logs (
            id TEXT PRIMARY KEY,
            ts_ms INTEGER NOT NULL,
            endpoint TEXT NOT NULL,
            provider TEXT,
            model TEXT,
            model_requested TEXT,
            status INTEGER NOT NULL,
            stream INTEGER NOT NULL DEFAULT 0,
            latency_us INTEGER NOT NULL,
            overhead_us INTEGER NOT NULL,
            queue_wait_us INTEGER NOT NULL DEFAULT 0,
            key_select_us INTEGER NOT NULL DEFAULT 0,
            build_us INTEGER NOT NULL DEFAULT 0,
            encode_us INTEGER NOT NULL DEFAULT 0,
            upstream_us INTEGER NOT NULL DEFAULT 0,
            parse_us INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            total_tokens INTEGER,
            cached_tokens INTEGER,
            retries INTEGER NOT NULL DEFAULT 0,
            fallback_index INTEGER NOT NULL DEFAULT 0,
            key_name TEXT,
            error TEXT,
            error_type TEXT,
            input TEXT,
            output TEXT,
            attempts TEXT,
            ingress TEXT,
            cost REAL,
            extra TEXT
        );
        CREATE INDEX logs_ts ON logs (ts_ms);
        CREATE INDEX logs_provider_ts ON logs (provider, ts_ms);
        CREATE INDEX logs_model_ts ON logs (model, ts_ms);
        CREATE INDEX logs_status_ts ON logs (status, ts_ms);
        """,
    )


async def m002_covering_indexes(db: aiosqlite.Connection) -> None:
    """Indexes that answer the admin API's views from the index alone (no table reads, no sort).

    `logs_ts_cover` serves the time-ordered list, stats and histograms over a time range;
    `logs_pm_cover` serves per-provider/model breakdowns as one range seek per (provider, model).
    They replace the narrower `logs_ts` / `logs_provider_ts`, so a write maintains as many indexes
    as before. Measured with bench/logs_query.py on 1,000,000 rows.
    """
    await _script(
        db,
        """
        CREATE INDEX IF NOT EXISTS logs_ts_cover ON logs (ts_ms, provider, model, status, stream, latency_us,
            overhead_us, upstream_us, queue_wait_us, key_select_us, build_us, encode_us, parse_us,
            prompt_tokens, completion_tokens, total_tokens);
        CREATE INDEX IF NOT EXISTS logs_pm_cover ON logs (provider, model, ts_ms, status, stream, latency_us,
            overhead_us, prompt_tokens, completion_tokens, total_tokens);
        DROP INDEX IF EXISTS logs_ts;
        DROP INDEX IF EXISTS logs_provider_ts
        """,
    )


async def m003_cost_in_covering_indexes(db: aiosqlite.Connection) -> None:
    """`cost` (written since issue 11) joins both covering indexes, so the stats, per-model and histogram
    views total it from the index alone, as they do tokens. Rebuilding them is a one-off at upgrade."""
    await _script(
        db,
        """
        DROP INDEX IF EXISTS logs_ts_cover;
        DROP INDEX IF EXISTS logs_pm_cover;
        CREATE INDEX logs_ts_cover ON logs (ts_ms, provider, model, status, stream, latency_us,
            overhead_us, upstream_us, queue_wait_us, key_select_us, build_us, encode_us, parse_us,
            prompt_tokens, completion_tokens, total_tokens, cost);
        CREATE INDEX logs_pm_cover ON logs (provider, model, ts_ms, status, stream, latency_us,
            overhead_us, prompt_tokens, completion_tokens, total_tokens, cost)
        """,
    )


async def m004_virtual_key_id(db: aiosqlite.Connection) -> None:
    """The virtual key a governed request was charged to (its id, never its value): issue 11."""
    await db.execute("ALTER TABLE logs ADD COLUMN virtual_key_id TEXT")


async def m005_skipped_events(db: aiosqlite.Connection) -> None:
    """Malformed upstream stream events the gateway dropped while the stream went on (issue 13)."""
    await db.execute("ALTER TABLE logs ADD COLUMN skipped_events INTEGER")


async def m006_cache(db: aiosqlite.Connection) -> None:
    """What the response cache did for the request (issue 12): "hit-direct" | "hit-semantic" | "miss",
    NULL when it was not consulted; and a semantic hit's similarity."""
    await db.execute("ALTER TABLE logs ADD COLUMN cache TEXT")
    await db.execute("ALTER TABLE logs ADD COLUMN cache_similarity REAL")


async def m007_guardrails(db: aiosqlite.Connection) -> None:
    """What guardrails did for the request (issue 15): JSON text, one object per rule that acted (rule,
    provider, stage, action, finding types and count, a remote detector's error); NULL when nothing fired.
    Never a matched value. Adding a nullable column rewrites nothing: instant on a log of any size."""
    await db.execute("ALTER TABLE logs ADD COLUMN guardrails TEXT")


MIGRATIONS: tuple[Callable[[aiosqlite.Connection], object], ...] = (
    m001_logs,
    m002_covering_indexes,
    m003_cost_in_covering_indexes,
    m004_virtual_key_id,
    m005_skipped_events,
    m006_cache,
    m007_guardrails,
)


async def migrate(db: aiosqlite.Connection) -> int:
    """Apply pending migrations in one immediate transaction (safe with several workers). Returns how
    many ran."""
    await db.execute("CREATE TABLE IF NOT EXISTS _migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at REAL)")
    await db.commit()
    await db.execute("BEGIN IMMEDIATE")
    try:
        async with db.execute("SELECT version FROM _migrations") as cur:
            done = {row[0] for row in await cur.fetchall()}
        ran = 0
        for version, migration in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            await migration(db)  # type: ignore[misc]
            await db.execute("INSERT INTO _migrations VALUES (?, ?, ?)", (version, migration.__name__, time.time()))
            ran += 1
        await db.commit()
    except BaseException:
        await db.rollback()
        raise
    return ran
