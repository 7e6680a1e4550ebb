"""The single request-log writer: a bounded in-memory buffer flushed to SQLite in batches.

Requests call `submit(row)`, which appends to a list and returns: never an await, never a lock. A
writer task flushes when the buffer reaches `batch_size` rows or every `flush_interval` seconds,
whichever comes first. A flush is one hand-off to the connection's own thread (aiosqlite's), which
encodes the batch and writes it in one transaction (see `write_batch`): the event loop only swaps
the buffer, never encodes a row or waits on the disk, and pays one thread hop per batch, not per
statement. When the buffer holds `capacity` rows, further rows are dropped and counted (`dropped`),
never blocking a request.

Where the time goes (bench/README.md, "Request log"): SQLite's own work per row (the table, the id
key and the four indexes the admin API reads) dominates; the Python side is kept to one pass per
row (`encode`) and one statement per `CHUNK_ROWS` rows (multi-row VALUES: one bind/step round per
chunk instead of one per row, and one GIL release per chunk instead of one per row).

No row can wedge the log: text is repaired to valid UTF-8 before it reaches SQLite (core/text.py),
and a batch SQLite still refuses is retried once row by row; the rows refused again are dropped,
counted (`failed`, also part of `dropped`) and reported once each with their request id. Only a
database-level error (locked, disk full: `sqlite3.OperationalError`) puts rows back, within
`capacity`, to be retried with a growing pause. `close()` makes one last attempt, counts what it
could not write, and always closes the connection, so a failing database never holds up shutdown.

Files: `logs.db` and its `-wal`/`-shm` are private (0600, whatever the umask: prompts are private);
looser files from earlier versions are tightened at start with a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import aiosqlite
import ujson

from runtime.core.text import repair
from runtime.paths import ensure_private_dir
from runtime.requestlog.record import (
    ATTEMPTS_COL,
    COLUMNS,
    GUARDRAILS_COL,
    INPUT_COL,
    INSERT_SQL,
    OUTPUT_COL,
    Clipped,
    insert_sql,
)
from runtime.stores.logs import Row
from runtime.stores.logs_sqlite.migrations import migrate
from runtime.stores.status import StoreStatus

log = logging.getLogger("bifrost.requestlog")

RETENTION_SWEEP_S = 3600.0
MAX_BACKOFF_S = 5.0
REPORTED_PER_FLUSH = 10  # dropped rows named one per line per flush; the rest in one summary line
CLOSE_TIMEOUT_S = 15.0  # the last flush and closing the connection at shutdown, each
FILE_MODE = 0o600
_ID_COL = COLUMNS.index("id")
# The columns that hold client- or upstream-supplied text (the rest are numbers, flags or our own ids):
# only these can carry a lone surrogate, so only these are checked per row.
_TEXT_NAMES = ("endpoint", "provider", "model", "model_requested", "key_name", "error", "error_type")
_TEXT_COLS = tuple(COLUMNS.index(name) for name in _TEXT_NAMES)
_CONTENT_COLS = (INPUT_COL, OUTPUT_COL, ATTEMPTS_COL, GUARDRAILS_COL)
# Rows per INSERT statement: 200 rows keeps the one compiled statement small while taking the
# per-statement cost off all but 1/200 of the rows (bench: ~1 us of ~10 us per row). start() lowers it
# to what the linked SQLite's bound-parameter limit allows (999 before SQLite 3.32). The rest of a
# batch (fewer rows than a chunk) goes through executemany.
CHUNK_ROWS = 200
_chunk_sql = functools.cache(insert_sql)


def _text(value: Any) -> str | None:
    """Content columns hold JSON text: raw JSON bodies are decoded, Python values encoded; bounded
    text (record.Clipped) is stored as it is. The result is always valid UTF-8."""
    if value is None:
        return None
    if isinstance(value, Clipped):
        return repair(str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return repair(ujson.dumps(value, ensure_ascii=False, escape_forward_slashes=False))


def encode(row: Row) -> Row:
    """`row` as SQLite stores it: text columns repaired to valid UTF-8, content columns as text.

    Runs on the writer's thread, once per row; plain ASCII text (the common case) costs one
    `isascii()` per column."""
    out = list(row)
    for i in _TEXT_COLS:
        value = out[i]
        if type(value) is str:
            if not value.isascii():
                out[i] = repair(value)
        elif isinstance(value, str):  # record.Clipped: already bounded text; SQLite wants a plain str
            out[i] = repair(str(value))
    for i in _CONTENT_COLS:
        value = out[i]
        if value is not None:
            out[i] = _text(value)
    return tuple(out)


@dataclass(slots=True)
class Outcome:
    """What one `write_batch` did: rows committed (encoded), rows refused (request id, why), and on a
    database-level error the error and the rows to put back (as submitted)."""

    written: list[Row] = field(default_factory=list)
    refused: list[tuple[str, BaseException]] = field(default_factory=list)
    error: sqlite3.OperationalError | None = None
    back: list[Row] = field(default_factory=list)


# The writer's thread shares the worker's core with the event loop. At the loop's own priority, a flush of a
# few hundred rows (each ~15 µs of encoding and index updates) holds the core for milliseconds while requests
# wait for it: the tail at one request at a time (docs/performance.md, "the c=1 tail"). A lower priority lets
# the loop take the core back as soon as a request needs it. Nice 5 keeps a quarter of a contended core for the
# writer, several times what it needs when the loop is saturated, so rows are not dropped for it.
WRITER_NICE = 5


def yield_cpu_to_the_loop() -> None:
    """Lower the calling thread's scheduling priority by WRITER_NICE (Linux, where nice is per thread)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.nice(WRITER_NICE)


def chunk_rows_for(conn: sqlite3.Connection) -> int:
    """Rows per multi-row INSERT that this SQLite accepts (its bound-parameter limit), at most CHUNK_ROWS."""
    return max(1, min(CHUNK_ROWS, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(COLUMNS)))


def write_batch(conn: sqlite3.Connection, rows: list[Row], chunk_rows: int = CHUNK_ROWS) -> Outcome:
    """Encode `rows` and insert them in one transaction; runs on the connection's thread.

    A row that cannot be encoded is refused alone. A batch SQLite refuses is written once more row by
    row, and only the rows refused again are refused: never put back (a bad row retried forever
    wedged the log). A database-level error (`sqlite3.OperationalError`: locked, disk full, read-only)
    writes nothing and hands the encodable rows back to be retried."""
    out = Outcome()
    good: list[Row] = []
    encoded: list[Row] = []
    for row in rows:
        try:
            encoded.append(encode(row))
            good.append(row)
        except Exception as exc:  # a value that cannot become a row: drop that row only
            out.refused.append((str(row[_ID_COL]), exc))
    if not encoded:
        return out
    try:
        try:
            _insert_batch(conn, encoded, chunk_rows)
        except sqlite3.OperationalError:
            raise
        except Exception:
            encoded = _insert_each(conn, encoded, out.refused)
    except sqlite3.OperationalError as exc:
        out.error, out.back = exc, good
        return out
    out.written = encoded
    return out


def _insert_batch(conn: sqlite3.Connection, encoded: list[Row], chunk_rows: int) -> None:
    if conn.in_transaction:  # a ROLLBACK that failed earlier must not block every later BEGIN
        conn.execute("ROLLBACK")
    try:
        conn.execute("BEGIN")
        whole = len(encoded) - len(encoded) % chunk_rows
        sql = _chunk_sql(chunk_rows)
        for start in range(0, whole, chunk_rows):
            conn.execute(sql, list(chain.from_iterable(encoded[start : start + chunk_rows])))
        if whole < len(encoded):
            conn.executemany(INSERT_SQL, encoded[whole:])
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise


def _insert_each(conn: sqlite3.Connection, encoded: list[Row], refused: list[tuple[str, BaseException]]) -> list[Row]:
    """Insert rows one by one in one transaction; return those written, add the others to `refused`.

    A database-level error here ends the attempt like a batch one: the rows go back (bounded), and
    the rows refused so far are not counted yet (they will be when they are refused again)."""
    kept: list[Row] = []
    bad: list[tuple[str, BaseException]] = []
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.execute("BEGIN")
    try:
        for row in encoded:
            try:
                conn.execute(INSERT_SQL, row)
            except sqlite3.OperationalError:
                raise
            except Exception as exc:  # this row only
                bad.append((str(row[_ID_COL]), exc))
            else:
                kept.append(row)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise
    refused.extend(bad)
    return kept


def tighten(path: Path) -> None:
    """Make `path` (if it exists) private to its owner, saying so when it was not."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode != FILE_MODE:
        os.chmod(path, FILE_MODE)
        if mode & 0o077:
            log.warning("request log: %s was readable by others (mode %o); now %o", path, mode, FILE_MODE)


class LogWriter:
    def __init__(
        self, path: Path, capacity: int, batch_size: int = 1000, flush_interval_s: float = 0.1, retention_days: int = 0
    ) -> None:
        self.path = Path(path)
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retention_days = retention_days
        self.dropped = 0  # rows never written, for any reason (buffer full, refused, shut down unwritten)
        self.written = 0
        self.failed = 0  # of `dropped`: rows SQLite refused (after a row-by-row retry) or that could not be encoded
        self._buf: list[tuple[Any, ...]] = []
        self._db: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_sweep = 0.0
        self._failures = 0  # consecutive failed flushes (database-level errors)
        self._chunk_rows = CHUNK_ROWS
        # Called with each committed batch (list of row tuples, text columns encoded): live views.
        self.listeners: list[Callable[[list[tuple[Any, ...]]], None]] = []
        # Read by /health: down while batches fail to be written (the rows wait in the buffer), up after.
        self.status = StoreStatus("sqlite", self.path.name)

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
        ensure_private_dir(self.path.parent)
        self._create_private()
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await self._db.execute("PRAGMA busy_timeout = 10000")
            await self._enable_wal()
            await self._db.execute("PRAGMA synchronous = NORMAL")
            await migrate(self._db)
            await self._sweep()
            db = self._db
            self._chunk_rows = await db._execute(lambda: chunk_rows_for(db._conn))
            await db._execute(yield_cpu_to_the_loop)
        except BaseException:
            await self._close_db()
            raise
        # SQLite gives -wal/-shm its database file's mode; tighten any left looser by older versions.
        for suffix in ("-wal", "-shm"):
            tighten(Path(f"{self.path}{suffix}"))
        self.status.ok()  # opened and migrated
        self._task = asyncio.create_task(self._run(), name="bifrost-log-writer")

    def _create_private(self) -> None:
        """Create logs.db 0600 before SQLite opens it (umask-independent: chmod, not just the open mode)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        os.close(fd)
        for suffix in ("", "-wal", "-shm"):
            tighten(Path(f"{self.path}{suffix}"))

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
        """Stop the loop, write what is buffered (one attempt) and close the connection, always.

        Every wait is bounded: a database that keeps failing costs the rows still buffered (counted
        and reported), never a shutdown that does not finish."""
        self._stopping = True
        self._wake.set()
        try:
            if self._task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            if self._buf and self._db is not None:
                try:
                    await asyncio.wait_for(self._flush(), CLOSE_TIMEOUT_S)
                except Exception as exc:  # reported below with the count it cost
                    log.error("request log: last flush at shutdown failed: %s: %s", type(exc).__name__, exc)
            if self._buf:
                lost, self._buf = len(self._buf), []
                self.dropped += lost
                log.error("request log: %d buffered rows could not be written before shutdown", lost)
        finally:
            await self._close_db()

    async def _close_db(self) -> None:
        db, self._db = self._db, None
        if db is None:
            return
        try:
            await asyncio.wait_for(db.close(), CLOSE_TIMEOUT_S)
        except Exception as exc:  # shutting down: say so, do not raise
            log.error("request log: closing logs.db failed: %s: %s", type(exc).__name__, exc)

    async def _run(self) -> None:
        while not self._stopping:
            if len(self._buf) < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            self._wake.clear()
            if self._buf and not self._stopping:
                try:
                    await self._flush()
                    self._failures = 0
                    self.status.ok()
                except Exception as exc:  # keep logging alive through a transient disk error
                    self._failures += 1
                    self.status.failed(f"writing a batch failed: {type(exc).__name__}: {exc}")
                    if self._failures == 1 or self._failures % 100 == 0:
                        log.error(
                            "request log flush failed (%d in a row; %d rows waiting): %s: %s",
                            self._failures,
                            len(self._buf),
                            type(exc).__name__,
                            exc,
                        )
                    pause = min(self.flush_interval_s * 2 ** min(self._failures, 10), MAX_BACKOFF_S)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake_on_stop(), pause)
            if self.retention_days and time.monotonic() - self._last_sweep > RETENTION_SWEEP_S:
                await self._sweep()

    async def _wake_on_stop(self) -> None:
        """Sleep until close() is called (the caller bounds it): backing off never delays shutdown."""
        while not self._stopping:
            self._wake.clear()
            await self._wake.wait()

    async def _flush(self) -> None:
        rows, self._buf = self._buf, []
        assert self._db is not None
        db = self._db
        # One hop: the batch is encoded and written on the connection's thread (aiosqlite runs any
        # callable there with `_execute`; `_conn` is its sqlite3 connection, used only on that thread).
        try:
            out: Outcome = await db._execute(lambda: write_batch(db._conn, rows, self._chunk_rows))
        except Exception:  # the connection itself failed (closed, its thread gone): nothing was written
            self._put_back(rows)
            raise
        if out.error is not None:
            self._put_back(out.back)
            self._report(out.refused)
            raise out.error
        self._report(out.refused)
        self.written += len(out.written)
        for listener in self.listeners:
            try:
                listener(out.written)
            except Exception:
                log.exception("request log listener failed")

    def _put_back(self, rows: list[Row]) -> None:
        """Keep unwritten rows for the next try, ahead of newer ones but never past `capacity`; what
        does not fit is dropped and counted."""
        room = max(0, self.capacity - len(self._buf))
        self.dropped += max(0, len(rows) - room)
        self._buf[:0] = rows[:room]

    def _report(self, refused: list[tuple[str, BaseException]]) -> None:
        """Count refused rows and report each once (never retried: they are gone)."""
        if not refused:
            return
        self.failed += len(refused)
        self.dropped += len(refused)
        for request_id, exc in refused[:REPORTED_PER_FLUSH]:
            log.error(
                "request log: dropped the row of request %s (cannot be stored: %s: %.200s)",
                request_id,
                type(exc).__name__,
                exc,
            )
        if len(refused) > REPORTED_PER_FLUSH:
            log.error("request log: dropped %d more rows in the same batch", len(refused) - REPORTED_PER_FLUSH)
        refused.clear()

    async def _sweep(self) -> None:
        self._last_sweep = time.monotonic()
        if not self.retention_days or self._db is None:
            return
        cutoff = int((time.time() - self.retention_days * 86400) * 1000)
        try:
            await self._db.execute("DELETE FROM logs WHERE ts_ms < ?", (cutoff,))
        except aiosqlite.Error:
            log.exception("request log retention sweep failed")
