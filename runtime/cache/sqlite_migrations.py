"""Numbered schema migrations for cache.db, each applied once and recorded in `_migrations`.

Add a migration by appending a function to MIGRATIONS; never edit one that has shipped. They run on the
store's writer thread with the plain sqlite3 module (the store has no aiosqlite connection).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]


def _script(conn: sqlite3.Connection, sql: str) -> None:
    # Statement by statement: executescript would COMMIT the surrounding migration transaction.
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)


def m001_cache_entries(conn: sqlite3.Connection) -> None:
    """One row per entry (runtime/cache/store.py CacheEntry), unique by its exact-mode hash; the
    embedding as little-endian float32 bytes. `seq` only grows (AUTOINCREMENT never reuses a number, and
    a replaced entry is a new row), so a worker finds the rows others wrote with `seq > last seen`.
    `cache_tombstones` carries deletes between the workers that share the file (`shared_file`): a
    worker reads the others' since its last look."""
    _script(
        conn,
        """
        CREATE TABLE cache_entries (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            request_hash TEXT NOT NULL UNIQUE,
            id TEXT NOT NULL,
            params_hash TEXT NOT NULL,
            cache_key TEXT NOT NULL,
            virtual_key_id TEXT,
            endpoint TEXT NOT NULL,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            response TEXT NOT NULL,
            prompt_text TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost REAL,
            upstream_ms REAL NOT NULL DEFAULT 0,
            embedding BLOB,
            size INTEGER NOT NULL DEFAULT 0,
            hits INTEGER NOT NULL DEFAULT 0,
            last_hit_at REAL NOT NULL DEFAULT 0
        );
        CREATE INDEX cache_entries_id ON cache_entries (id);
        CREATE INDEX cache_entries_expires ON cache_entries (expires_at);
        CREATE INDEX cache_entries_key ON cache_entries (cache_key);
        CREATE TABLE cache_tombstones (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            origin TEXT NOT NULL,
            kind TEXT NOT NULL,
            value TEXT,
            at REAL NOT NULL
        )
        """,
    )


MIGRATIONS: tuple[Migration, ...] = (m001_cache_entries,)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations in one immediate transaction (safe with several workers); how many ran.
    `conn` is in autocommit mode (isolation_level=None)."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at REAL)")
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = {row[0] for row in conn.execute("SELECT version FROM _migrations")}
        ran = 0
        for version, migration in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            migration(conn)
            conn.execute("INSERT INTO _migrations VALUES (?, ?, ?)", (version, migration.__name__, time.time()))
            ran += 1
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return ran
