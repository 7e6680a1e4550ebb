"""The embedded shared-state engine: one SQLite file (`<app_dir>/state.db`) shared by every worker.

Correct across `--workers N` on one host because every primitive is one SQLite write statement, and a
write statement is atomic across processes (WAL: one writer at a time, others wait on busy_timeout):

- counters: one row per (key, window span, window index); `incr` is one upsert `... DO UPDATE SET
  value = value + excluded.value RETURNING value`; `reserve` adds `WHERE value + excluded.value <= limit`
  to the same upsert, so the check and the add cannot be separated by another process. Old windows
  are never read (the index is part of the key) and are deleted by the sweep.
- key/value: expiry is checked on read (an expired row reads as absent) and rows are deleted by a
  periodic sweep (`sweep_interval_s`).
- notifications: `publish` inserts into `events`; while this process has subscribers, one poller
  reads `PRAGMA data_version` every `poll_interval_s` (it changes when another connection commits)
  and fetches new events only then. Latency: up to `poll_interval_s` (50 ms by default) plus one
  query; a publish in the same process wakes the poller at once. Events older than
  `event_retention_s` are swept.

All database work runs on one dedicated thread per store (one connection, one transaction at a time),
so the event loop never waits on the disk and each call is a single hop to that thread.
Throughput, see the closing note of issue 10 (`python -m bench.shared_state`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from runtime.paths import ensure_private_dir
from runtime.stores.shared import Number, QueuedSubscription, SharedState, SharedStateError
from runtime.stores.status import StoreStatus

log = logging.getLogger("bifrost.stores")

T = TypeVar("T")
FILE_MODE = 0o600
BUSY_TIMEOUT_MS = 10_000
FETCH_LIMIT = 1000  # events read per poll; a backlog is read in several polls without pausing

SCHEMA = (
    # value has no declared type: int + int stays an exact integer, a float amount makes it REAL.
    "CREATE TABLE IF NOT EXISTS counters (key TEXT NOT NULL, span INTEGER NOT NULL, win INTEGER NOT NULL,"
    " value NOT NULL, expires REAL, PRIMARY KEY (key, span, win)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS counters_expires ON counters (expires) WHERE expires IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires) WHERE expires IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL,"
    " message TEXT NOT NULL, ts REAL NOT NULL)",
)
UPSERT = (
    "INSERT INTO counters (key, span, win, value, expires) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (key, span, win) DO UPDATE SET value = value + excluded.value"
)
INCR_SQL = UPSERT + " RETURNING value"
KV_SET_SQL = (
    "INSERT INTO kv (key, value, expires) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires"
)
RESERVE_SQL = UPSERT + " WHERE value + excluded.value <= ? RETURNING value"


def _window(window_s: float | None, now: float) -> tuple[int, int, float | None]:
    """(span in ms, window index, expiry time) of the window holding `now`; span 0 = one window forever."""
    if window_s is None:
        return 0, 0, None
    span = round(window_s * 1000)
    if span < 1:
        raise ValueError(f"window_s must be at least 0.001 s, got {window_s!r}")
    win = int(now * 1000) // span
    return span, win, (win + 1) * span / 1000.0


class _Subscription(QueuedSubscription):
    """One subscriber's bounded queue (runtime/stores/shared.py); the store's poller fills it."""

    def __init__(self, store: SQLiteSharedState, channel: str, after_id: int, size: int) -> None:
        super().__init__(channel, size)
        self.store = store
        self.after_id = after_id  # events up to this id were published before we subscribed

    def deliver(self, event_id: int, message: str) -> None:
        if event_id > self.after_id:
            self.offer(message)

    async def close(self) -> None:
        self.store._unsubscribe(self)
        self.end()


class SQLiteSharedState:
    def __init__(
        self,
        path: Path,
        *,
        poll_interval_s: float = 0.05,
        sweep_interval_s: float = 30.0,
        event_retention_s: float = 60.0,
        queue_size: int = 1000,
    ) -> None:
        self.path = Path(path)
        self.poll_interval_s = poll_interval_s
        self.sweep_interval_s = sweep_interval_s
        self.event_retention_s = event_retention_s
        self.queue_size = queue_size
        self._db: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._subs: set[_Subscription] = set()
        self._poller: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._last_id = 0
        self._data_version = -1
        self._opening: asyncio.Lock | None = None
        self._closed = False
        self.status = StoreStatus("sqlite", self.path.name)  # read by /health (runtime/stores/status.py)

    # -- plumbing ------------------------------------------------------------------------------------
    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` on the store's thread, opening the store on first use. A database or file error (a
        lock held past the busy timeout, a full or unreadable disk) is a SharedStateError, as with any
        engine, so governance applies its failure policy; `status` follows every call."""
        try:
            if self._executor is None:
                await self.open()
            assert self._executor is not None
            result = await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            error = SharedStateError(f"shared state: {self.path.name}: {type(exc).__name__}: {exc}")
            self.status.failed(str(error))
            raise error from None
        self.status.ok()
        return result

    def _conn(self) -> sqlite3.Connection:
        assert self._db is not None, "the shared-state store is not open"
        return self._db

    # -- lifecycle -----------------------------------------------------------------------------------
    async def open(self) -> None:
        """Create/open state.db. Optional: the first call opens the store, so a worker that never uses
        shared state has no file, no thread and no sweep task. After `close()` it stays closed."""
        if self._closed:
            raise RuntimeError("the shared-state store is closed")
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._executor is not None:
                return
            executor = ThreadPoolExecutor(1, thread_name_prefix="bifrost-state")
            try:
                await asyncio.get_running_loop().run_in_executor(executor, self._open_sync)
            except BaseException:
                executor.shutdown(wait=False)
                raise
            self._executor = executor
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="bifrost-state-sweep")

    def _open_sync(self) -> None:
        ensure_private_dir(self.path.parent)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE))  # 0600 before SQLite creates it
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Switching a new file to WAL needs an exclusive lock and does not wait on busy_timeout:
            # workers started together retry instead of dying with "database is locked".
            for attempt in range(100):
                try:
                    db.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 99:
                        raise
                    time.sleep(min(0.01 * (attempt + 1), 0.2))
            db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across a process crash
            db.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA:
                db.execute(statement)
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        self._db = db

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._poller, self._sweeper) if t is not None]
        self._poller = self._sweeper = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in list(self._subs):
            sub.end()
        self._subs.clear()
        executor, self._executor = self._executor, None
        if executor is None:
            return
        db, self._db = self._db, None
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(executor, db.close)
        executor.shutdown(wait=False)

    # -- counters ------------------------------------------------------------------------------------
    async def incr(self, key: str, amount: Number = 1, window_s: float | None = None) -> Number:
        span, win, expires = _window(window_s, time.time())
        return await self._call(self._incr_sync, (key, span, win, amount, expires))

    def _incr_sync(self, params: tuple[Any, ...]) -> Number:
        rows = self._conn().execute(INCR_SQL, params).fetchall()  # fetchall: the statement (and lock) ends
        return rows[0][0]  # type: ignore[no-any-return]

    async def reserve(self, key: str, amount: Number, limit: Number, window_s: float | None = None) -> bool:
        if amount > limit:
            return False
        span, win, expires = _window(window_s, time.time())
        return await self._call(self._reserve_sync, (key, span, win, amount, expires, limit))

    def _reserve_sync(self, params: tuple[Any, ...]) -> bool:
        return bool(self._conn().execute(RESERVE_SQL, params).fetchall())

    async def total(self, key: str, window_s: float | None = None) -> Number:
        span, win, _ = _window(window_s, time.time())
        return await self._call(self._total_sync, (key, span, win))

    def _total_sync(self, params: tuple[Any, ...]) -> Number:
        sql = "SELECT value FROM counters WHERE key = ? AND span = ? AND win = ?"
        row = self._conn().execute(sql, params).fetchone()
        return 0 if row is None else row[0]  # type: ignore[no-any-return]

    # -- key/value -----------------------------------------------------------------------------------
    async def get(self, key: str) -> str | None:
        return await self._call(self._get_sync, key, time.time())

    def _get_sync(self, key: str, now: float) -> str | None:
        row = self._conn().execute("SELECT value, expires FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= now):
            return None
        return row[0]  # type: ignore[no-any-return]

    async def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        expires = None if ttl_s is None else time.time() + ttl_s
        await self._call(self._execute, KV_SET_SQL, (key, value, expires))

    async def delete(self, key: str) -> bool:
        rows = await self._call(self._query, "DELETE FROM kv WHERE key = ? RETURNING expires", (key,))
        return bool(rows) and (rows[0][0] is None or rows[0][0] > time.time())

    def _execute(self, sql: str, params: tuple[Any, ...]) -> None:
        self._conn().execute(sql, params)

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._conn().execute(sql, params).fetchall()

    # -- notifications -------------------------------------------------------------------------------
    async def publish(self, channel: str, message: str) -> None:
        sql = "INSERT INTO events (channel, message, ts) VALUES (?, ?, ?)"
        await self._call(self._execute, sql, (channel, message, time.time()))
        if self._subs:
            self._wake.set()  # our own commit does not change our data_version: look now

    async def subscribe(self, channel: str) -> _Subscription:
        if self._poller is None or self._poller.done():
            self._last_id, self._data_version = await self._call(self._head_sync)
            self._poller = asyncio.create_task(self._poll_loop(), name="bifrost-state-poll")
        sub = _Subscription(self, channel, self._last_id, self.queue_size)
        self._subs.add(sub)
        return sub

    def _unsubscribe(self, sub: _Subscription) -> None:
        self._subs.discard(sub)

    def _head_sync(self) -> tuple[int, int]:
        db = self._conn()
        last = db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        return last, db.execute("PRAGMA data_version").fetchone()[0]

    def _fetch_sync(self, after_id: int, force: bool) -> tuple[int, list[tuple[int, str, str]]]:
        db = self._conn()
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version and not force:
            return version, []
        sql = "SELECT id, channel, message FROM events WHERE id > ? ORDER BY id LIMIT ?"
        return version, db.execute(sql, (after_id, FETCH_LIMIT)).fetchall()

    async def _poll_loop(self) -> None:
        force = True
        while self._subs:
            try:
                version, rows = await self._call(self._fetch_sync, self._last_id, force)
            except Exception:  # a locked or failing database: say so, keep polling
                log.exception("shared state: reading notifications failed")
                rows, version = [], self._data_version
            if rows:
                self._last_id = rows[-1][0]
            else:
                self._data_version = version  # only once caught up: a partial read polls again
            for event_id, channel, message in rows:
                for sub in self._subs:
                    if sub.channel == channel:
                        sub.deliver(event_id, message)
            force = len(rows) == FETCH_LIMIT
            if force:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
                force = True
        self._poller = None

    # -- expiry --------------------------------------------------------------------------------------
    def _sweep_sync(self, now: float) -> None:
        db = self._conn()
        db.execute("DELETE FROM counters WHERE expires IS NOT NULL AND expires <= ?", (now,))
        db.execute("DELETE FROM kv WHERE expires IS NOT NULL AND expires <= ?", (now,))
        db.execute("DELETE FROM events WHERE ts < ?", (now - self.event_retention_s,))

    async def sweep(self) -> None:
        """Delete expired windows, keys and old events now (the background sweep does it periodically)."""
        await self._call(self._sweep_sync, time.time())

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:
                log.exception("shared state: sweep failed")


if TYPE_CHECKING:  # mypy holds the engine to the interface
    _engine: type[SharedState] = SQLiteSharedState
