"""Day partitions of `bifrost_logs` (RANGE on ts_ms, UTC days), created ahead and dropped by retention.

- The writer keeps today's and tomorrow's partitions in place (`ensure`, at start, at each new day, and
  for any day a batch holds that has none yet), so a live row always lands in its day's partition.
- Rows of a day with no partition (a skewed clock, an import of old rows beyond PARTITION_HORIZON_DAYS)
  land in the DEFAULT partition. Creating a day's partition first moves that day's rows out of the
  default partition in the same transaction (PostgreSQL refuses to create a partition whose range the
  default partition holds rows of), keeping their seq, so nothing is lost or seen twice by tail.
- Retention drops whole partitions whose day ended before the cutoff (no DELETE scan, no bloat), and
  deletes the default partition's rows before the cutoff's hour; the rollup hours of both go with them.
  A row is therefore kept up to a day longer
  than `retention_days` (the SQLite engine deletes at the exact cutoff).

DDL takes LOG DDL advisory lock (instances never race on one partition) and waits at most
DDL_LOCK_TIMEOUT for the table lock: a long admin query delays a partition by one pass, never the writer.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable

import asyncpg

from runtime.stores.logs_postgres.migrations import DDL_LOCK_TIMEOUT, DEFAULT_PARTITION, MIGRATE_LOCK, TABLE
from runtime.stores.logs_postgres.rollup import HOUR_MS, HOURLY

DAY_MS = 86_400_000
PARTITION_HORIZON_DAYS = 400  # days older than this get no partition of their own (the default holds them)
AHEAD_DAYS = 1  # partitions created beyond today
_NAME = re.compile(r"^bifrost_logs_p(\d{8})$")


def day_of(ts_ms: int) -> int:
    """The UTC day number (days since the epoch) of a timestamp in ms."""
    return ts_ms // DAY_MS


def today() -> int:
    return day_of(int(time.time() * 1000))


def partition_name(day: int) -> str:
    return f"{TABLE}_p{dt.datetime.fromtimestamp(day * 86400, dt.UTC):%Y%m%d}"


def _day_of_name(name: str) -> int | None:
    m = _NAME.match(name)
    if m is None:
        return None
    date = dt.datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=dt.UTC)
    return int(date.timestamp()) // 86400


def wanted(days: Iterable[int], now_day: int | None = None) -> set[int]:
    """Of `days`, those that get a partition of their own: within the horizon, at most AHEAD_DAYS ahead."""
    now_day = today() if now_day is None else now_day
    return {d for d in days if now_day - PARTITION_HORIZON_DAYS <= d <= now_day + AHEAD_DAYS}


async def existing(conn: asyncpg.Connection) -> set[int]:
    """The days that have a partition."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass",
        TABLE,
    )
    return {d for r in rows if (d := _day_of_name(r[0])) is not None}


async def ensure(conn: asyncpg.Connection, days: Iterable[int], known: set[int] | None = None) -> set[int]:
    """Create the partitions of `days` (those `wanted`) that do not exist; returns every day that has one
    now. `known` (days already seen to exist) saves the catalog read when nothing is missing."""
    want = wanted(days)
    if known is not None and want <= known:
        return known
    have = await existing(conn)
    for day in sorted(want - have):
        await _create(conn, day)
        have.add(day)
    return have


async def _create(conn: asyncpg.Connection, day: int) -> None:
    name, lo, hi = partition_name(day), day * DAY_MS, (day + 1) * DAY_MS
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATE_LOCK)
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
            return  # another instance made it while we waited for the lock
        # Rows of this day already in the default partition move into the new one (seq kept).
        await conn.execute(
            f"CREATE TEMP TABLE bifrost_logs_moving ON COMMIT DROP AS WITH d AS "
            f"(DELETE FROM {DEFAULT_PARTITION} WHERE ts_ms >= {lo} AND ts_ms < {hi} RETURNING *) SELECT * FROM d"
        )
        await conn.execute(f"CREATE TABLE {name} PARTITION OF {TABLE} FOR VALUES FROM ({lo}) TO ({hi})")
        await conn.execute(f"INSERT INTO {TABLE} SELECT * FROM bifrost_logs_moving")


async def drop_expired(conn: asyncpg.Connection, retention_days: int, now_ms: int | None = None) -> list[str]:
    """Drop the partitions whose whole day is older than `retention_days`; delete older rows of the
    default partition. Returns the partitions dropped."""
    if retention_days <= 0:
        return []
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    cutoff = now_ms - retention_days * DAY_MS
    dropped = []
    for day in sorted(await existing(conn)):
        if (day + 1) * DAY_MS > cutoff:
            continue
        name = partition_name(day)
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATE_LOCK)
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
            # The day's rollup goes with its rows, in the same transaction.
            await conn.execute(
                f"DELETE FROM {HOURLY} WHERE hour_ms >= $1 AND hour_ms < $2", day * DAY_MS, (day + 1) * DAY_MS
            )
        dropped.append(name)
    # The default partition's old rows (days without a partition of their own) by whole hours, so their
    # rollup hours go exactly with them; the hour holding the cutoff is kept whole (a row kept up to an
    # hour longer, as partitions keep a day).
    cutoff_hour = cutoff // HOUR_MS * HOUR_MS
    kept_days = sorted(await existing(conn))
    async with conn.transaction():
        await conn.execute(f"DELETE FROM {DEFAULT_PARTITION} WHERE ts_ms < $1", cutoff_hour)
        await conn.execute(
            f"DELETE FROM {HOURLY} WHERE hour_ms < $1 AND NOT (hour_ms / {DAY_MS} = ANY($2::bigint[]))",
            cutoff_hour,
            kept_days,
        )
    return dropped
