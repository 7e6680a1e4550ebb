"""The cluster cache's tables in the config store's PostgreSQL database: numbered migrations, each applied
once and recorded by id in `bifrost_cache_migrations` (every table of the cache is prefixed `bifrost_cache_`,
so it shares the database with the config and log stores without a clash).

Add a migration by appending a function to MIGRATIONS; never edit one that has shipped. `migrate` runs
them in one transaction under an advisory lock, so instances starting together apply each exactly once.
"""

from __future__ import annotations

from typing import Any

from runtime.stores.pg_migrations import Migration, run_migrations

MIGRATION_LOCK = 0x6266_6361_6368_6501  # pg_advisory_xact_lock key: "bfcache" + 1
CHANNEL = "bifrost_cache"  # LISTEN/NOTIFY channel of the cache's changes


async def m001_entries(conn: Any) -> None:
    """One row per entry (runtime/cache/store.py CacheEntry), exact and semantic alike, unique by its
    exact-mode hash; the response as JSON text, the embedding as little-endian float32 bytes. `seq` comes
    from one sequence and is taken again when an entry is replaced, so "rows newer than the last seen" is
    `seq > last`. `bifrost_cache_tombstones` records deletes, clears and evictions so an instance that was
    disconnected can catch up with what it missed (pruned after an hour)."""
    await conn.execute(
        """
        CREATE SEQUENCE bifrost_cache_seq;
        CREATE TABLE bifrost_cache_entries (
            seq BIGINT PRIMARY KEY DEFAULT nextval('bifrost_cache_seq'),
            request_hash TEXT NOT NULL UNIQUE,
            id TEXT NOT NULL,
            params_hash TEXT NOT NULL,
            cache_key TEXT NOT NULL,
            virtual_key_id TEXT,
            endpoint TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            response TEXT NOT NULL,
            prompt_text TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost DOUBLE PRECISION,
            upstream_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
            embedding BYTEA,
            size INTEGER NOT NULL DEFAULT 0,
            hits INTEGER NOT NULL DEFAULT 0,
            last_hit_at DOUBLE PRECISION NOT NULL DEFAULT 0
        );
        CREATE INDEX bifrost_cache_entries_id ON bifrost_cache_entries (id);
        CREATE INDEX bifrost_cache_entries_expires ON bifrost_cache_entries (expires_at);
        CREATE INDEX bifrost_cache_entries_key ON bifrost_cache_entries (cache_key);
        CREATE INDEX bifrost_cache_entries_created ON bifrost_cache_entries (created_at);
        CREATE INDEX bifrost_cache_entries_semantic ON bifrost_cache_entries (seq) WHERE embedding IS NOT NULL;
        CREATE TABLE bifrost_cache_tombstones (
            seq BIGSERIAL PRIMARY KEY,
            origin TEXT NOT NULL,
            kind TEXT NOT NULL,
            value TEXT,
            at DOUBLE PRECISION NOT NULL
        );
        """
    )


MIGRATIONS: tuple[Migration, ...] = (m001_entries,)


async def migrate(conn: Any) -> int:
    """Apply the pending migrations on `conn` (an asyncpg connection); how many ran."""
    return await run_migrations(conn, "bifrost_cache_migrations", MIGRATION_LOCK, MIGRATIONS)


async def has_pgvector(conn: Any) -> bool:
    """Whether the server offers the pgvector extension (installable, not necessarily installed)."""
    return bool(await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"))
