"""The single request-log writer: a bounded in-memory buffer flushed to SQLite in batches.

Requests call `submit(row)`, which appends to a list and returns: never an await, never a lock. A
writer task flushes when the buffer reaches `batch_size` rows or every `flush_interval` seconds,
whichever comes first, with one `executemany` in one transaction (aiosqlite runs it on its own
thread, so the event loop never waits on the disk). When the buffer holds `capacity` rows, further
rows are dropped and counted (`dropped`), never blocking a request. `close()` drains everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
import ujson

from runtime.requestlog.migrations import migrate
from runtime.requestlog.record import ATTEMPTS_COL, INPUT_COL, INSERT_SQL, OUTPUT_COL

log = logging.getLogger("bifrost.requestlog")

RETENTION_SWEEP_S = 3600.0


def _text(value: Any) -> str | None:
    """Content columns hold JSON text: raw JSON bodies are decoded, Python values encoded."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False)


class LogWriter:
    def __init__(
        self, path: Path, capacity: int, batch_size: int = 1000, flush_interval_s: float = 0.1, retention_days: int = 0
    ) -> None:
        self.path = Path(path)
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retention_days = retention_days
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self._buf: list[tuple[Any, ...]] = []
        self._db: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_sweep = 0.0
        # Called with each committed batch (list of row tuples, text columns encoded): live views.
        self.listeners: list[Callable[[list[tuple[Any, ...]]], None]] = []

    # -- request side --------------------------------------------------------------------------------
    def submit(self, row: tuple[Any, ...]) -> None:
        buf = self._buf
        if len(buf) >= self.capacity:
            self.dropped += 1
            return
        buf.append(row)
        if len(buf) == self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buf)

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        await self._db.execute("PRAGMA busy_timeout = 10000")
        await self._enable_wal()
        await self._db.execute("PRAGMA synchronous = NORMAL")
        await migrate(self._db)
        await self._sweep()
        self._task = asyncio.create_task(self._run(), name="bifrost-log-writer")

    async def _enable_wal(self) -> None:
        """Switch to WAL, retrying while another worker does the same.

        Changing the journal mode of a new database needs an exclusive lock, and SQLite answers
        SQLITE_BUSY at once instead of consulting busy_timeout, so workers started together (--workers N)
        would otherwise lose this race and die at start-up with "database is locked".
        """
        assert self._db is not None
        for attempt in range(60):
            try:
                await self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 59:
                    raise
                await asyncio.sleep(min(0.01 * (attempt + 1), 0.2))

    async def close(self) -> None:
        """Stop the loop and write every buffered row."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._buf:
            await self._flush()
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _run(self) -> None:
        while not self._stopping:
            if len(self._buf) < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            self._wake.clear()
            if self._buf:
                try:
                    await self._flush()
                except Exception:  # keep logging alive through a transient disk error
                    log.exception("request log flush failed")
                    await asyncio.sleep(self.flush_interval_s)
            if self.retention_days and time.monotonic() - self._last_sweep > RETENTION_SWEEP_S:
                await self._sweep()

    async def _flush(self) -> None:
        rows, self._buf = self._buf, []
        encoded = [self._encode(r) for r in rows]
        assert self._db is not None
        try:
            await self._db.execute("BEGIN")
            await self._db.executemany(INSERT_SQL, encoded)
            await self._db.execute("COMMIT")
        except Exception:
            with contextlib.suppress(Exception):
                await self._db.execute("ROLLBACK")
            # Put the rows back (ahead of newer ones) so a transient failure loses nothing.
            room = max(0, self.capacity - len(self._buf))
            self.failed += max(0, len(rows) - room)
            self._buf[:0] = rows[:room]
            raise
        self.written += len(encoded)
        for listener in self.listeners:
            try:
                listener(encoded)
            except Exception:
                log.exception("request log listener failed")

    @staticmethod
    def _encode(row: tuple[Any, ...]) -> tuple[Any, ...]:
        out = list(row)
        out[INPUT_COL] = _text(row[INPUT_COL])
        out[OUTPUT_COL] = _text(row[OUTPUT_COL])
        out[ATTEMPTS_COL] = _text(row[ATTEMPTS_COL])
        return tuple(out)

    async def _sweep(self) -> None:
        self._last_sweep = time.monotonic()
        if not self.retention_days or self._db is None:
            return
        cutoff = int((time.time() - self.retention_days * 86400) * 1000)
        try:
            await self._db.execute("DELETE FROM logs WHERE ts_ms < ?", (cutoff,))
        except aiosqlite.Error:
            log.exception("request log retention sweep failed")
