"""Numbered schema migrations of the PostgreSQL request log, each applied once and recorded in
`bifrost_logs_migrations`. Every object is prefixed `bifrost_logs` (the config store and the cache may
share the database).

Add a migration by appending a function to MIGRATIONS; never edit one that has shipped. `migrate` runs
them in one transaction under an advisory lock, so instances starting together apply each exactly once.

The table mirrors logs.db (runtime/stores/logs_sqlite/migrations.py): the same columns in
`record.COLUMNS` order, plus
    seq    the tail cursor (bigserial). Batches take LOG_WRITE_LOCK before drawing values (writer.py), so
           values are drawn in commit order: a reader never sees a higher seq committed before a lower one.
    extra  as in logs.db (unused by the writer today; returned by get()).
It is RANGE-partitioned by day on ts_ms (partitions.py); unique keys of a partitioned table must hold
the partition key, so the primary key is (id, ts_ms): a request's ts_ms never changes, so it is unique
by id in practice, and the idempotent insert (ON CONFLICT (id, ts_ms) DO NOTHING) skips a row seen before.
"""

from __future__ import annotations

import asyncpg

from runtime.stores.pg_migrations import Migration, run_migrations

TABLE = "bifrost_logs"
PAIRS = "bifrost_logs_pairs"
DEFAULT_PARTITION = "bifrost_logs_default"
# Advisory locks (one 64-bit key space per database): schema changes, and the batch inserts (seq order).
MIGRATE_LOCK = 0x62665F6C6F67_01  # "bf_log" 1
LOG_WRITE_LOCK = 0x62665F6C6F67_02
# A partition DDL waits at most this long for the table lock (queries queue behind a waiting DDL, so
# short); partitions are made a day ahead, so one that waits too long is simply retried later.
DDL_LOCK_TIMEOUT = "1s"

# The columns m001 created (frozen: a migration that shipped never changes what it makes).
M001_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "text NOT NULL"),
    ("ts_ms", "bigint NOT NULL"),
    ("endpoint", "text NOT NULL"),
    ("provider", "text"),
    ("model", "text"),
    ("model_requested", "text"),
    ("status", "integer NOT NULL"),
    ("stream", "integer NOT NULL DEFAULT 0"),
    ("latency_us", "bigint NOT NULL"),
    ("overhead_us", "bigint NOT NULL"),
    ("queue_wait_us", "bigint NOT NULL DEFAULT 0"),
    ("key_select_us", "bigint NOT NULL DEFAULT 0"),
    ("build_us", "bigint NOT NULL DEFAULT 0"),
    ("encode_us", "bigint NOT NULL DEFAULT 0"),
    ("upstream_us", "bigint NOT NULL DEFAULT 0"),
    ("parse_us", "bigint NOT NULL DEFAULT 0"),
    ("prompt_tokens", "bigint"),
    ("completion_tokens", "bigint"),
    ("total_tokens", "bigint"),
    ("cached_tokens", "bigint"),
    ("retries", "integer NOT NULL DEFAULT 0"),
    ("fallback_index", "integer NOT NULL DEFAULT 0"),
    ("key_name", "text"),
    ("error", "text"),
    ("error_type", "text"),
    ("input", "text"),
    ("output", "text"),
    ("attempts", "text"),
    ("ingress", "text"),
    ("cost", "double precision"),
    ("virtual_key_id", "text"),
    ("skipped_events", "integer"),
    ("cache", "text"),
    ("cache_similarity", "double precision"),
)
# Columns later migrations added, each appended (ALTER TABLE ... ADD COLUMN puts it last in the table and
# in every partition, so record.COLUMNS order is kept).
ADDED_COLUMNS: tuple[tuple[str, str], ...] = (("guardrails", "text"),)  # m005
# (name, PostgreSQL type), in record.COLUMNS order.
COLUMN_TYPES: tuple[tuple[str, str], ...] = M001_COLUMNS + ADDED_COLUMNS


# The columns the covering indexes carry (as logs.db's logs_ts_cover / logs_pm_cover).
TS_COVER = (
    "provider, model, status, stream, latency_us, overhead_us, upstream_us, queue_wait_us, key_select_us, "
    "build_us, encode_us, parse_us, prompt_tokens, completion_tokens, total_tokens, cost"
)
PM_COVER = "status, stream, latency_us, overhead_us, prompt_tokens, completion_tokens, total_tokens, cost"


async def m001_logs(conn: asyncpg.Connection) -> None:
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in M001_COLUMNS)
    await conn.execute(
        f"""
        CREATE TABLE {TABLE} (
            seq bigserial NOT NULL,
            {columns},
            extra text,
            PRIMARY KEY (id, ts_ms)
        ) PARTITION BY RANGE (ts_ms);
        CREATE TABLE {DEFAULT_PARTITION} PARTITION OF {TABLE} DEFAULT;
        -- Every /api/logs filter and sort (runtime/requestlog/filters.py), within a time range:
        CREATE INDEX bifrost_logs_ts ON {TABLE} (ts_ms, seq);
        CREATE INDEX bifrost_logs_pm_ts ON {TABLE} (provider, model, ts_ms);
        CREATE INDEX bifrost_logs_model_ts ON {TABLE} (model, ts_ms);
        CREATE INDEX bifrost_logs_status_ts ON {TABLE} (status, ts_ms);
        CREATE INDEX bifrost_logs_vk_ts ON {TABLE} (virtual_key_id, ts_ms) WHERE virtual_key_id IS NOT NULL;
        CREATE INDEX bifrost_logs_latency ON {TABLE} (latency_us);
        CREATE INDEX bifrost_logs_seq ON {TABLE} (seq);
        -- The distinct (provider, model) pairs ever logged, upserted per batch by the writers: facets and
        -- the per-model views read this small table, never a DISTINCT over millions of rows.
        CREATE TABLE {PAIRS} (provider text, model text);
        CREATE UNIQUE INDEX bifrost_logs_pairs_key ON {PAIRS} ((coalesce(provider, '')), (coalesce(model, '')));
        """
    )


async def m002_covering_and_sort_indexes(conn: asyncpg.Connection) -> None:
    """Measured with bench/logs_postgres.py on 1,000,000 rows: the time-range and per-model indexes carry
    the columns the stats, histograms and per-model views read (INCLUDE), so those are index-only scans
    (the rows are wide: content); and sort=overhead / sort=tokens get an index each. On an existing log
    the two rebuilt indexes are built once, at the upgrade."""
    await conn.execute(
        f"""
        DROP INDEX IF EXISTS bifrost_logs_ts;
        DROP INDEX IF EXISTS bifrost_logs_pm_ts;
        CREATE INDEX bifrost_logs_ts_cover ON {TABLE} (ts_ms, seq) INCLUDE ({TS_COVER});
        CREATE INDEX bifrost_logs_pm_cover ON {TABLE} (provider, model, ts_ms) INCLUDE ({PM_COVER});
        CREATE INDEX bifrost_logs_overhead ON {TABLE} (overhead_us);
        -- NULLS FIRST: read forwards it is sort=tokens&order=asc, backwards order=desc (NULL lowest, as SQLite)
        CREATE INDEX bifrost_logs_tokens ON {TABLE} (total_tokens NULLS FIRST);
        """
    )


async def m003_hourly_rollup(conn: asyncpg.Connection) -> None:
    """The hourly rollup (rollup.py): stats, histograms and per-key views over long ranges read it
    instead of every log row (at 10M rows a 30-day aggregate of the log took 10-30 s). An existing log
    is rolled up here, once, at the upgrade (one GROUP BY over the table)."""
    from runtime.stores.logs_postgres import rollup  # rollup reads nothing of this module: no cycle

    await conn.execute(rollup.create_sql())
    # One GROUP BY over the whole log: room to hash its groups in memory (for this transaction only).
    await conn.execute("SET LOCAL work_mem = '256MB'")
    await conn.execute(rollup.upsert_sql(TABLE))


async def m004_tokens_sort_index_with_ties(conn: asyncpg.Connection) -> None:
    """sort=tokens picks tied rows oldest first (ts_ms, seq), as the SQLite engine does; token counts tie
    a lot (few distinct values), so the index on total_tokens alone left PostgreSQL sorting each tie
    group: at 10M rows a month's page sorted millions of rows. With ts_ms and seq in the index, the
    ascending page is an index walk stopped at LIMIT (descending still sorts within ties)."""
    await conn.execute(
        f"""
        DROP INDEX IF EXISTS bifrost_logs_tokens;
        CREATE INDEX bifrost_logs_tokens_ts ON {TABLE} (total_tokens NULLS FIRST, ts_ms, seq);
        """
    )


async def m005_guardrails(conn: asyncpg.Connection) -> None:
    """What guardrails did for the request (issue 15), JSON text as in logs.db; NULL when nothing fired.
    On the partitioned table the column reaches every partition, the default one included, and partitions
    made later inherit it. Nullable without a default: a catalog change only, no partition is rewritten."""
    await conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS guardrails text")


MIGRATIONS: tuple[Migration, ...] = (
    m001_logs,
    m002_covering_and_sort_indexes,
    m003_hourly_rollup,
    m004_tokens_sort_index_with_ties,
    m005_guardrails,
)


async def migrate(conn: asyncpg.Connection) -> int:
    """Apply pending migrations in one transaction (safe with several instances). Returns how many ran."""
    return await run_migrations(conn, "bifrost_logs_migrations", MIGRATE_LOCK, MIGRATIONS)
