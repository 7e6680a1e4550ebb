"""Numbered schema migrations for the PostgreSQL stores (config, log, cache): one runner, one table each.

Each store keeps its own list of migrations (async functions taking a connection, applied in order; the
n-th is version n) and its own record table (`bifrost_<store>_migrations`), since the stores may share a
database but evolve apart. The run is one transaction under a transaction-level advisory lock, so of
several instances starting at once exactly one applies each migration and the others wait, then see it
recorded. A migration already recorded is never run again; one never recorded is run, whatever its
neighbours' state (a migration is never edited once released: a change is a new one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Migration = Callable[[Any], Awaitable[None]]


async def run_migrations(conn: Any, table: str, lock: int, migrations: Sequence[Migration]) -> int:
    """Apply the migrations of `migrations` not yet recorded in `table`, on `conn` (an asyncpg
    connection), in one transaction under advisory lock `lock`; how many ran."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} "
            "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in await conn.fetch(f"SELECT version FROM {table}")}
        ran = 0
        for version, migration in enumerate(migrations, start=1):
            if version in done:
                continue
            await migration(conn)
            await conn.execute(f"INSERT INTO {table} (version, name) VALUES ($1, $2)", version, migration.__name__)
            ran += 1
    return ran
