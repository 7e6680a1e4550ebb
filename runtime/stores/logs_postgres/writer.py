"""The PostgreSQL request-log writer: the SQLite writer's contract, over a network that can fail.

Requests call `submit(row)`: one append to a list (never an await, a lock or I/O). One task per worker
flushes the buffer when it reaches `batch_size` rows or every `flush_interval` seconds: the rows are
encoded off the event loop (a thread: JSON of the content columns, text repair), then written as one
transaction by batch.insert (COPY to a staging table, INSERT ... ON CONFLICT DO NOTHING).

Server down (refused, reset, timed out, restarting): the batch goes back to the front of the buffer,
the connection is dropped, and the task retries with a growing pause (flush interval x 2^n, at most
MAX_BACKOFF_S), reconnecting each time (connect bounded by pg.CONNECT_TIMEOUT_S). When the server
returns the buffered rows are written in order. A batch whose commit succeeded but whose answer was
lost is written again and its rows skipped (idempotent by (id, ts_ms)): never a duplicate.

Bound: the buffer holds at most `capacity` rows (client.initial_pool_size). Beyond it the NEWEST rows are
dropped and counted (`dropped`): submit stays an O(1) append (no shifting a full list per request), and
the rows kept are the contiguous oldest ones, from the start of the outage, in order. `status`
(shared with the readers) says down/up as flushes fail and succeed.

A row PostgreSQL refuses (not a connection error) is retried alone; refused again it is dropped, counted
(`failed`, part of `dropped`) and reported once with its request id: a bad row never wedges the log.

Shutdown: `close()` stops the task, makes one last attempt and closes the connection, all within
`close_timeout_s`; what could not be written is counted in `dropped` and logged. Never a hang.

Killed outright (SIGKILL, OOM, crash): with a spool (runtime/stores/spool.py, `<app_dir>/log-spool/`, what
PostgresLogStore gives every writer) each accepted row is also appended to a local file at the end of its
event-loop turn, and settled there as batches commit (or rows are dropped for good). The next process
started on the app dir writes what a dead one left before anything else (inserts are idempotent by row id),
and rows a clean shutdown could not write stay in the spool for that next start instead of being lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import asyncpg

from runtime.config.model import PostgresSettings
from runtime.requestlog.record import COLUMNS
from runtime.stores import pg
from runtime.stores.logs import Row
from runtime.stores.logs_postgres import batch as batches
from runtime.stores.logs_postgres import partitions
from runtime.stores.logs_postgres.migrations import M001_COLUMNS, migrate
from runtime.stores.logs_sqlite.writer import encode
from runtime.stores.spool import Spool
from runtime.stores.status import StoreStatus

log = logging.getLogger("bifrost.requestlog")

MAX_BACKOFF_S = 5.0
CLOSE_TIMEOUT_S = 10.0  # the whole of close(): last flush and closing the connection
RETENTION_SWEEP_S = 3600.0
REPORTED_PER_FLUSH = 10
WRITE_CHUNK_ROWS = 5000  # rows per transaction at most (a batch after an outage can hold `capacity` rows)
_ID_COL = COLUMNS.index("id")


# SQLSTATE classes that belong to one row's values: 22 data exception, 23 integrity constraint violation,
# 54 program limit exceeded (an index entry too large). Any other error is the database's, not the row's.
ROW_ERROR_CLASSES = ("22", "23", "54")


def row_specific(exc: asyncpg.PostgresError) -> bool:
    """Whether PostgreSQL refused a row's values (retry the batch row by row) rather than the write."""
    return str(getattr(exc, "sqlstate", "") or "")[:2] in ROW_ERROR_CLASSES


def upgrade_row(row: Row) -> Row:
    """A row spooled by an earlier version (before columns were added at the end of record.COLUMNS), with
    NULL for the columns it lacks: an upgrade restarted on a spool keeps its rows."""
    if isinstance(row, tuple) and len(M001_COLUMNS) <= len(row) < len(COLUMNS):
        return row + (None,) * (len(COLUMNS) - len(row))
    return row


def encode_batch(rows: list[Row]) -> tuple[list[Row], list[tuple[str, BaseException]]]:
    """Rows as PostgreSQL stores them (content as JSON text, typed); runs on a thread. Returns (encoded,
    refused: (request id, why))."""
    good: list[Row] = []
    refused: list[tuple[str, BaseException]] = []
    for row in rows:
        try:
            good.append(batches.coerce(encode(row)))
        except Exception as exc:  # this row only
            refused.append((str(row[_ID_COL]) if row else "?", exc))
    return good, refused


class PostgresLogWriter:
    def __init__(
        self,
        settings: PostgresSettings,
        status: StoreStatus,
        capacity: int,
        batch_size: int = 1000,
        flush_interval_s: float = 0.1,
        retention_days: int = 0,
        close_timeout_s: float = CLOSE_TIMEOUT_S,
        chunk_rows: int = WRITE_CHUNK_ROWS,
        spool: Spool | None = None,
    ) -> None:
        self.settings = settings
        self.status = status
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retention_days = retention_days
        self.close_timeout_s = close_timeout_s
        self.spool = spool
        self.chunk_rows = max(1, chunk_rows)
        self.written = 0
        self.dropped = 0  # rows never written, for any reason (buffer full, refused, shut down unwritten)
        self.failed = 0  # of `dropped`: rows PostgreSQL refused or that could not be encoded
        self.listeners: list[Callable[[list[Row]], None]] = []
        self._buf: list[Row] = []  # submitted, not yet encoded
        self._retry: list[Row] = []  # encoded by a flush that failed: written first by the next one
        self._out = 0  # rows not in _buf and not yet written: in the current flush, or in _retry
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._failures = 0  # consecutive failed flushes
        self._days: set[int] | None = None  # days known to have a partition (this connection's view)
        self._pairs: set[tuple[str | None, str | None]] = set()
        self._day = -1
        self._last_sweep: float | None = None  # monotonic time of the last retention sweep

    # -- request side --------------------------------------------------------------------------------
    def submit(self, row: Row) -> None:
        buf = self._buf
        if len(buf) + self._out >= self.capacity:
            self.dropped += 1
            return
        buf.append(row)
        if self.spool is not None:
            self.spool.append(row)  # a list append; written at the end of this loop turn
        if len(buf) == self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buf) + self._out

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the flush task. Never fails for a server that is down: the task connects (and creates
        the schema) on its first flush, and keeps retrying. Rows a stopped process left in the spool go
        first (they are older than anything this one will submit)."""
        if self.spool is not None:
            try:
                left = await asyncio.to_thread(self.spool.orphans)
            except OSError as exc:
                log.error("request log: the spool cannot be read (%s); rows left there stay on disk", exc)
                left = []
            self._buf[:0] = [upgrade_row(row) for row in left]
        self._task = asyncio.create_task(self._run(), name="bifrost-log-writer-pg")

    async def close(self) -> None:
        """Stop the task, write what is buffered (one attempt) and close the connection, all within
        `close_timeout_s`; rows not written by then are counted in `dropped` and logged."""
        deadline = time.monotonic() + self.close_timeout_s
        self._stopping = True
        self._wake.set()
        try:
            if self._task is not None:
                # The task may be inside a flush (at most a connect or a statement): give it part of the bound.
                done, _ = await asyncio.wait({self._task}, timeout=self.close_timeout_s / 2)
                if not done:
                    self._task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self._task
                    # Cancelled mid-statement, the connection's state is unknown: the last try opens anew.
                    if self._conn is not None:
                        self._conn.terminate()
                        self._conn = None
            left = deadline - time.monotonic()
            if self.pending and left > 0:
                try:
                    await asyncio.wait_for(self._flush(), left)
                except Exception as exc:  # reported below with the count it cost
                    log.error("request log: last flush at shutdown failed: %s: %s", type(exc).__name__, exc)
            if self.pending:
                lost, self._buf, self._retry, self._out = self.pending, [], [], 0
                self.dropped += lost
                if self.spool is not None:
                    log.error("request log: %d rows not written before shutdown are kept in the spool", lost)
                else:
                    log.error("request log: %d buffered rows could not be written before shutdown", lost)
        finally:
            if self.spool is not None:
                self.spool.close()  # deletes settled segments, keeps the rows not written
            await self._disconnect(timeout_s=max(0.1, min(2.0, deadline - time.monotonic())))

    # -- the connection ------------------------------------------------------------------------------
    async def _connection(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._conn = None
        conn = await pg.connect(self.settings)  # PostgresUnavailable when down
        try:
            await migrate(conn)
            self._day = partitions.today()
            try:
                self._days = await partitions.ensure(conn, range(self._day, self._day + 2))
            except pg.CONNECTION_ERRORS:
                raise
            except asyncpg.PostgresError as exc:  # a lock timeout behind a long query: _maintain retries
                self._day = -1
                log.warning("request log partitions deferred: %s: %s", type(exc).__name__, exc)
            if self.retention_days and self._last_sweep is None:
                with contextlib.suppress(asyncpg.PostgresError):  # a lock timeout: _maintain tries again
                    await self._sweep(conn)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        return conn

    async def _disconnect(self, timeout_s: float = 2.0) -> None:
        conn, self._conn = self._conn, None
        self._days = None
        if conn is not None:
            await batches.close_quietly(conn, timeout_s)

    # -- the flush task ------------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            if self.pending < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            self._wake.clear()
            if self._stopping:
                break
            try:
                if self.pending:
                    await self._flush()
                await self._maintain()
                self._failures = 0
            except Exception as exc:  # keep logging alive through an outage: back off and retry
                self._failures += 1
                if self._failures == 1 or self._failures % 100 == 0:
                    log.error(
                        "request log flush failed (%d in a row; %d rows waiting): %s",
                        self._failures,
                        self.pending,
                        exc,
                    )
                pause = min(self.flush_interval_s * 2 ** min(self._failures, 10), MAX_BACKOFF_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_on_stop(), pause)

    async def _wake_on_stop(self) -> None:
        """Sleep until close() is called (the caller bounds it): backing off never delays shutdown."""
        while not self._stopping:
            self._wake.clear()
            await self._wake.wait()

    async def _maintain(self) -> None:
        """At a new day: the next partitions; hourly: retention. Only on a live connection (no reconnect)."""
        conn = self._conn
        if conn is None or conn.is_closed():
            return
        try:
            if partitions.today() != self._day:
                self._day = partitions.today()
                self._days = await partitions.ensure(conn, range(self._day, self._day + 2), self._days)
            if self.retention_days and (
                self._last_sweep is None or time.monotonic() - self._last_sweep > RETENTION_SWEEP_S
            ):
                await self._sweep(conn)
        except pg.CONNECTION_ERRORS as exc:
            await self._down(exc)
            raise pg.unavailable(self.settings, exc) from None
        except asyncpg.PostgresError as exc:  # a lock timeout behind a long query: next pass
            log.warning("request log partition maintenance deferred: %s: %s", type(exc).__name__, exc)

    async def _sweep(self, conn: asyncpg.Connection) -> None:
        self._last_sweep = time.monotonic()
        dropped = await partitions.drop_expired(conn, self.retention_days)
        if dropped:
            self._days = None  # re-read on the next batch: partitions were dropped
            log.info("request log retention: dropped %s", ", ".join(dropped))

    async def _down(self, exc: BaseException) -> None:
        self.status.failed(
            str(exc) if isinstance(exc, pg.PostgresUnavailable) else str(pg.unavailable(self.settings, exc))
        )
        await self._disconnect(timeout_s=0.5)

    async def _flush(self) -> None:
        rows, self._buf = self._buf, []
        self._out = len(self._retry) + len(rows)
        try:
            encoded, refused = await asyncio.to_thread(encode_batch, rows)
        except BaseException:
            self._buf[:0] = rows  # not encoded yet: back as they came
            self._out = len(self._retry)
            raise
        self._out -= len(refused)
        self._report(refused)
        # Rows encoded by an earlier, failed flush go first (they are older), then this flush's; written
        # WRITE_CHUNK_ROWS per transaction, so a backlog (after an outage) is never one statement too
        # big for the command timeout.
        batch, self._retry = self._retry + encoded, []
        done = 0
        try:
            while done < len(batch):
                chunk = batch[done : done + self.chunk_rows]
                taken = len(chunk)
                await self._write(chunk)  # drops (and reports) the rows PostgreSQL refuses
                done += taken
                self._out -= taken
                self._committed(chunk)
                self._settle(taken)  # written or refused for good: either way settled
        except BaseException:
            # Not written (or not known to be: a retry skips what was committed). Back to the front.
            self._hold(batch[done:])
            raise
        self._out = 0

    def _settle(self, n: int) -> None:
        """The writer's `n` oldest outstanding rows will never be written by this process again: the spool
        can forget them. Rows are settled in submission order, which the buffer keeps."""
        if self.spool is not None and n:
            self.spool.resolved(n)

    def _committed(self, rows: list[Row]) -> None:
        self.status.ok()
        self.written += len(rows)
        for listener in self.listeners:
            try:
                listener(rows)
            except Exception:
                log.exception("request log listener failed")

    async def _write(self, encoded: list[Row]) -> None:
        try:
            conn = await self._connection()
            try:
                _, self._days = await batches.insert(conn, encoded, self._days, self._pairs)
            except pg.CONNECTION_ERRORS:
                raise
            except asyncpg.PostgresError as exc:
                if not row_specific(exc):
                    raise  # the database's trouble (disk full, schema gone...), not a row's: retried
                # The server refused a row of the batch: once more row by row, keeping the rows it
                # accepts; those refused again are dropped and reported.
                kept: list[Row] = []
                bad: list[tuple[str, BaseException]] = []
                for row in encoded:
                    try:
                        _, self._days = await batches.insert(conn, [row], self._days, self._pairs)
                        kept.append(row)
                    except pg.CONNECTION_ERRORS:
                        raise
                    except asyncpg.PostgresError as exc:
                        bad.append((str(row[_ID_COL]), exc))
                encoded[:] = kept
                self._report(bad)
        except pg.PostgresUnavailable as exc:
            await self._down(exc)
            raise
        except pg.CONNECTION_ERRORS as exc:
            await self._down(exc)
            raise pg.unavailable(self.settings, exc) from None
        except asyncpg.PostgresError as exc:
            # Not a connection error and not a row's (no privilege to make the schema, disk full, the table
            # dropped under us): the batch is kept and retried on a fresh connection (migrations re-run).
            self.status.failed(f"{self.settings.describe()}: {type(exc).__name__}: {exc}"[:500])
            await self._disconnect(timeout_s=0.5)
            raise

    def _hold(self, batch: list[Row]) -> None:
        """Keep an unwritten (encoded) batch for the next flush, ahead of newer rows; beyond `capacity`
        the newest rows are dropped and counted: first the newest submitted, then the batch's tail."""
        over = len(batch) + len(self._buf) - self.capacity
        if over > 0:
            from_buf = min(over, len(self._buf))
            if from_buf:
                del self._buf[len(self._buf) - from_buf :]
            if over > from_buf:
                del batch[len(batch) - (over - from_buf) :]
            self.dropped += over
            self._settle(over)
        self._retry = batch
        self._out = len(batch)

    def _report(self, refused: list[tuple[str, BaseException]]) -> None:
        if not refused:
            return
        self.failed += len(refused)
        self.dropped += len(refused)
        self._settle(len(refused))
        for request_id, exc in refused[:REPORTED_PER_FLUSH]:
            log.error(
                "request log: dropped the row of request %s (cannot be stored: %s: %.200s)",
                request_id,
                type(exc).__name__,
                exc,
            )
        if len(refused) > REPORTED_PER_FLUSH:
            log.error("request log: dropped %d more rows in the same batch", len(refused) - REPORTED_PER_FLUSH)
