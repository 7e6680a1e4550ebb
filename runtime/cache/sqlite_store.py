"""The embedded cache engine: entries in memory for lookups, persisted to `<app dir>/cache.db` (SQLite).

Lookups never wait on the disk. `get` is a dict lookup by request hash; `nearest` searches the
in-process vector index (runtime/cache/vectors.py, one index per params hash: a semantic match must
have the same model and parameters, so each namespace is searched alone and a popular prompt stored
under many namespaces cannot crowd the right one out of the candidates). Writes (`put`, `touch`, the
deletes) change memory at once and queue the SQLite work; one writer thread applies the queue in
batches, one transaction per batch. A failed batch is counted (`StoreStats.write_errors`) and logged,
never raised into a request (the entries stay served from memory); when the queue is full, new puts and
touches are dropped and counted the same way (admin deletes are always queued).

Caps: `max_entries` and `max_bytes` (an entry counts the length of its JSON-encoded response, its
prompt text and 4 bytes per embedding dimension); the least recently used entries (put or hit) are
evicted first. Expired entries are dropped when a lookup meets them and by a sweep every
SWEEP_INTERVAL_S (bounded work per pass), from memory, the index and the file.

`open()` loads the live entries, newest first, up to the caps; the vector index is built from them in a
background thread (the GIL is released), so a large cache does not delay start-up: until it is built
(`ready()`), semantic lookups miss while exact ones already hit.

Several `--workers` processes sharing the file (`shared_file=True`): each keeps its own memory. A
memory miss in `get` reads the file by request hash (indexed, in the store's reader thread, bounded by
READ_TIMEOUT_S), so one worker's stored answer serves the others at once. The semantic side catches up
by polling: every POLL_INTERVAL_S a worker reads the rows added since its last look
(`WHERE seq > last`, an index range) into its memory and index, so a semantic hit on another worker's
answer is at most about a second late. Admin deletes and clears reach the other workers the same way,
through `cache_tombstones`; LRU evictions and TTL expiry stay per worker (each enforces the caps on
its own memory).

Files: cache.db and its -wal/-shm are private (0600: they hold prompts and answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import secrets
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import ujson

from runtime.cache.sqlite_migrations import migrate
from runtime.cache.store import ENTRY_COLUMNS, CacheEntry, CacheStore, StoreStats, entry_from_record
from runtime.core.text import repair
from runtime.paths import ensure_private_dir

if TYPE_CHECKING:
    from runtime.cache.semantic_index import SemanticIndex

log = logging.getLogger("bifrost.cache")

T = TypeVar("T")

FILE_MODE = 0o600
FLUSH_INTERVAL_S = 0.1  # queued writes wait at most this long (or until BATCH_OPS are queued)
BATCH_OPS = 500
QUEUE_CAPACITY = 20_000  # queued puts and touches; beyond it they are dropped and counted
SWEEP_INTERVAL_S = 30.0
SWEEP_BATCH = 5_000  # expired entries dropped per sweep pass, in memory and in the file
POLL_INTERVAL_S = 1.0  # shared_file: how often a worker reads the rows the others wrote
POLL_ROWS = 2_000
READ_TIMEOUT_S = 0.25  # shared_file: a read-through lookup that takes longer is a miss
CLOSE_TIMEOUT_S = 10.0
TOMBSTONE_TTL_S = 3600.0  # deletes older than this are pruned (a worker an hour behind has restarted)
LIST_LIMIT = 500

COLUMNS = ENTRY_COLUMNS
_COLS = ", ".join(COLUMNS)
INSERT_SQL = f"INSERT OR REPLACE INTO cache_entries ({_COLS}) VALUES ({', '.join('?' * len(COLUMNS))})"
SELECT_SQL = f"SELECT seq, {_COLS} FROM cache_entries"

Row = tuple[Any, ...]
Rows = list[Row]  # an alias: inside the class, `list` is the admin listing method
# One queued write: ("put", row) | ("del", request_hash, id) | ("del_id", id) | ("del_key", cache_key) |
# ("clear",) | ("expire", now)
Op = tuple[Any, ...]


def _row(entry: CacheEntry, response_json: str, blob: bytes | None) -> Row:
    return (
        entry.request_hash,
        entry.id,
        entry.params_hash,
        entry.cache_key,
        entry.virtual_key_id,
        entry.endpoint,
        entry.provider,
        entry.model,
        entry.created_at,
        entry.expires_at,
        response_json,
        entry.prompt_text,
        entry.prompt_tokens,
        entry.completion_tokens,
        entry.cost,
        entry.upstream_ms,
        blob,
        entry.size,
        entry.hits,
        entry.last_hit_at,
    )


def _entry(row: Row) -> tuple[CacheEntry, bytes | None]:
    """A row of SELECT_SQL (seq first) as an entry and its embedding bytes."""
    return entry_from_record(dict(zip(COLUMNS, row[1:], strict=True)))


def _decode(row: Row) -> tuple[CacheEntry, bytes | None] | None:
    """`_entry`, or None for a row that cannot be one (a response that is not JSON, a NULL where a value
    belongs: a file edited by hand or damaged); such a row is skipped, never fatal."""
    try:
        return _entry(row)
    except (ValueError, TypeError, KeyError):
        return None


def _tighten(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_mode & 0o777 != FILE_MODE:
            os.chmod(path, FILE_MODE)


def _connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, usable from the one thread of
    the executor that made it."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        # Workers starting together race to switch a new file to WAL; SQLite answers that race with
        # SQLITE_BUSY at once (busy_timeout does not apply), so retry briefly.
        for attempt in range(60):
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 59:
                    raise
                time.sleep(min(0.01 * (attempt + 1), 0.2))
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def _write(conn: sqlite3.Connection, ops: list[Op], touches: list[Row], origin: str, shared: bool) -> None:
    """Apply queued writes in one transaction (the writer thread). Tombstones only when shared."""
    if conn.in_transaction:  # a ROLLBACK that failed earlier must not block every later BEGIN
        conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")
    try:
        now = time.time()
        for op in ops:
            kind = op[0]
            if kind == "put":
                conn.execute(INSERT_SQL, op[1])
            elif kind == "del":
                conn.execute("DELETE FROM cache_entries WHERE request_hash = ? AND id = ?", (op[1], op[2]))
            elif kind == "del_id":
                conn.execute("DELETE FROM cache_entries WHERE id = ?", (op[1],))
            elif kind == "del_key":
                conn.execute("DELETE FROM cache_entries WHERE cache_key = ?", (op[1],))
            elif kind == "clear":
                conn.execute("DELETE FROM cache_entries")
            elif kind == "expire":
                conn.execute(
                    "DELETE FROM cache_entries WHERE seq IN "
                    "(SELECT seq FROM cache_entries WHERE expires_at <= ? LIMIT ?)",
                    (op[1], SWEEP_BATCH),
                )
                if shared:
                    conn.execute("DELETE FROM cache_tombstones WHERE at < ?", (op[1] - TOMBSTONE_TTL_S,))
            if shared and kind in ("del_id", "del_key", "clear"):
                conn.execute(
                    "INSERT INTO cache_tombstones (origin, kind, value, at) VALUES (?, ?, ?, ?)",
                    (origin, kind, op[1] if len(op) > 1 else None, now),
                )
        if touches:
            conn.executemany(
                "UPDATE cache_entries SET hits = ?, last_hit_at = ? WHERE request_hash = ? AND id = ?", touches
            )
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise


class SqliteCacheStore:
    """See the module doc. `clock` is the sweep's clock (unix seconds); lookups take the caller's `now`."""

    def __init__(
        self,
        path: Path,
        *,
        max_entries: int,
        max_bytes: int,
        dimension: int | None,
        shared_file: bool = False,
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = 5000,
        queue_capacity: int = QUEUE_CAPACITY,
    ) -> None:
        if max_entries <= 0 or max_bytes <= 0:
            raise ValueError("max_entries and max_bytes must be positive")
        if dimension is not None and dimension <= 0:
            raise ValueError("dimension must be positive")
        self.path = Path(path)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.dimension = dimension
        self.shared_file = shared_file
        self._clock = clock
        self._busy_timeout_ms = busy_timeout_ms
        self._queue_capacity = queue_capacity
        self._origin = secrets.token_hex(8)  # this store's tombstones, which its own poll skips

        # Memory: LRU order (least recently used first), by id, the expiry heap (lazy deletion).
        self._by_hash: OrderedDict[str, CacheEntry] = OrderedDict()
        self._by_id: dict[str, CacheEntry] = {}
        self._expiry: list[tuple[float, str, str]] = []
        self._bytes = 0
        self.evicted = 0
        self.expired = 0
        self.write_errors = 0

        # Semantic side (dimension set): one index per params hash, entries by label.
        self._semantic: SemanticIndex | None = None
        if dimension is not None:
            from runtime.cache.semantic_index import SemanticIndex  # numpy + usearch: semantic mode only

            self._semantic = SemanticIndex(dimension)
        self._build_task: asyncio.Task[None] | None = None

        # Writes queued for the writer thread.
        self._ops: list[Op] = []
        self._touched: dict[str, tuple[str, int, float]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._last_seq = 0
        self._last_tomb = 0
        self._errors_logged = 0

    # -- lifecycle -------------------------------------------------------------------------------------
    async def open(self) -> None:
        ensure_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        os.close(fd)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="bifrost-cache-writer")
        try:
            self._wconn = await self._in(self._writer, self._open_writer)
            for suffix in ("", "-wal", "-shm"):
                _tighten(Path(f"{self.path}{suffix}"))
            loaded, self._last_seq, self._last_tomb = await self._in(self._writer, self._load, self._clock())
            if self.shared_file:
                self._reader = ThreadPoolExecutor(1, thread_name_prefix="bifrost-cache-reader")
                self._rconn = await self._in(self._reader, _connect, self.path, self._busy_timeout_ms)
        except BaseException:
            await self.close()  # no thread or connection left behind by a file that cannot be opened
            raise
        if self._semantic is not None:
            self._semantic.building = True
        for entry, blob in loaded:
            self._insert(entry, self._vector(blob))
        if self._semantic is not None:
            self._build_task = asyncio.create_task(self._semantic.build(), name="bifrost-cache-index")
        self._task = asyncio.create_task(self._run(), name="bifrost-cache-writer")

    async def ready(self) -> None:
        """Wait until the start-up vector index is built (semantic lookups miss until then)."""
        if self._build_task is not None:
            await asyncio.shield(self._build_task)

    async def close(self) -> None:
        """Flush what is queued (bounded) and release the threads and connections; never raises."""
        self._stopping = True
        self._wake.set()
        if self._build_task is not None and not self._build_task.done():
            self._build_task.cancel()  # the thread finishes on its own; its result is not needed
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, CLOSE_TIMEOUT_S)
        if self._wconn is not None and (self._ops or self._touched):
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._flush(), CLOSE_TIMEOUT_S)
        for executor, conn in ((self._writer, self._wconn), (self._reader, self._rconn)):
            if executor is None:
                continue
            if conn is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(self._in(executor, conn.close), CLOSE_TIMEOUT_S)
            executor.shutdown(wait=False)
        self._wconn = self._rconn = None
        self._writer = self._reader = None

    def _open_writer(self) -> sqlite3.Connection:
        conn = _connect(self.path, self._busy_timeout_ms)
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _load(self, now: float) -> tuple[list[tuple[CacheEntry, bytes | None]], int, int]:
        """The live rows, newest first, up to the caps (writer thread). Without other workers on the file,
        rows past the caps (the caps were lowered) are deleted."""
        assert self._wconn is not None
        conn = self._wconn
        out: list[tuple[CacheEntry, bytes | None]] = []
        total = 0
        last_seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM cache_entries").fetchone()[0]
        last_tomb = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM cache_tombstones").fetchone()[0]
        cutoff = None
        for row in conn.execute(f"{SELECT_SQL} WHERE expires_at > ? ORDER BY created_at DESC", (now,)):
            size = row[COLUMNS.index("size") + 1]
            if len(out) >= self.max_entries or total + size > self.max_bytes:
                cutoff = row[COLUMNS.index("created_at") + 1]
                break
            decoded = _decode(row)
            if decoded is None:
                continue
            out.append(decoded)
            total += size
        if cutoff is not None and not self.shared_file:
            conn.execute("DELETE FROM cache_entries WHERE created_at < ?", (cutoff,))
        out.reverse()  # oldest first, so inserting them in order leaves the newest most recently used
        return out, last_seq, last_tomb

    async def _in(self, executor: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    # -- lookups ---------------------------------------------------------------------------------------
    async def get(self, request_hash: str, now: float) -> CacheEntry | None:
        entry = self._by_hash.get(request_hash)
        if entry is not None:
            if entry.expires_at > now:
                return entry
            self._drop(entry)
            self.expired += 1
        if not self.shared_file:
            return None
        return await self._read_through(request_hash, now)

    async def nearest(
        self, params_hash: str, vector: Sequence[float], threshold: float, now: float
    ) -> tuple[CacheEntry, float] | None:
        if self._semantic is None:
            return None
        found, expired = self._semantic.search(params_hash, vector, threshold, now)
        for entry in expired:
            if self._by_hash.get(entry.request_hash) is entry:
                self._drop(entry)
                self.expired += 1
        return found

    async def find(self, entry_id: str) -> CacheEntry | None:
        entry = self._by_id.get(entry_id)
        if entry is not None or not self.shared_file:
            return entry
        rows = await self._read(f"{SELECT_SQL} WHERE id = ? LIMIT 1", (entry_id,))
        decoded = _decode(rows[0]) if rows else None
        return decoded[0] if decoded else None

    async def list(self, search: str | None, limit: int, offset: int) -> tuple[list[CacheEntry], int]:
        limit = max(0, min(int(limit), LIST_LIMIT))
        offset = max(0, int(offset))
        entries: Any = self._by_id.values()
        if search:
            needle = search.casefold()
            entries = [
                e
                for e in entries
                if needle in e.prompt_text.casefold()
                or needle in e.model.casefold()
                or needle in e.cache_key.casefold()
                or needle in e.id.casefold()
            ]
        ordered = sorted(entries, key=lambda e: e.created_at, reverse=True)
        return ordered[offset : offset + limit], len(ordered)

    def stats(self) -> StoreStats:
        return StoreStats(
            entries=len(self._by_hash),
            bytes=self._bytes,
            evicted=self.evicted,
            expired=self.expired,
            write_errors=self.write_errors,
        )

    # -- writes ----------------------------------------------------------------------------------------
    def put(self, entry: CacheEntry, response_json: str | None = None) -> None:
        """Store `entry` (replacing the one under its request hash). In semantic mode its embedding moves
        into the index (`entry.embedding` becomes None: the memory holds each vector once). An entry
        larger than `max_bytes` on its own is not stored."""
        vec = None
        if self._semantic is not None and entry.embedding is not None:
            vec = self._semantic.unit(entry.embedding)
            if vec is None:
                log.warning("cache: entry %s has an unusable embedding; stored for exact lookups only", entry.id)
        entry.embedding = None
        try:
            if response_json is None:
                response_json = ujson.dumps(entry.response, ensure_ascii=False, escape_forward_slashes=False)
            response_json = repair(response_json)
        except (TypeError, ValueError, OverflowError) as exc:
            log.warning("cache: entry %s not stored (its response is not JSON: %s)", entry.id, exc)
            return
        entry.prompt_text = repair(entry.prompt_text)
        entry.size = len(response_json) + len(entry.prompt_text) + (4 * (self.dimension or 0) if vec is not None else 0)
        if entry.size > self.max_bytes:
            return
        self._insert(entry, vec)
        blob = vec.astype("<f4").tobytes() if vec is not None else None
        self._queue(("put", _row(entry, response_json, blob)))

    def touch(self, entry: CacheEntry, now: float) -> None:
        entry.hits += 1
        entry.last_hit_at = now
        if self._by_hash.get(entry.request_hash) is entry:
            self._by_hash.move_to_end(entry.request_hash)
        if len(self._touched) >= self._queue_capacity and entry.request_hash not in self._touched:
            self.write_errors += 1
            return
        self._touched[entry.request_hash] = (entry.id, entry.hits, now)

    async def delete(self, entry_id: str) -> bool:
        entry = self._by_id.get(entry_id)
        found = entry is not None
        if entry is not None:
            self._forget(entry)
        if not found and self.shared_file:
            found = bool(await self._read("SELECT 1 FROM cache_entries WHERE id = ? LIMIT 1", (entry_id,)))
        self._queue(("del_id", entry_id), force=True)
        return found

    async def delete_by_cache_key(self, cache_key: str) -> int:
        victims = [e for e in self._by_hash.values() if e.cache_key == cache_key]
        for entry in victims:
            self._forget(entry)
        self._queue(("del_key", cache_key), force=True)
        return len(victims)

    async def clear(self) -> int:
        count = len(self._by_hash)
        for entry in list(self._by_hash.values()):
            self._forget(entry)
        self._queue(("clear",), force=True)
        return count

    # -- memory ----------------------------------------------------------------------------------------
    def _insert(self, entry: CacheEntry, vec: Any) -> None:
        """Put `entry` in memory (and the index), most recently used, then evict down to the caps."""
        old = self._by_hash.get(entry.request_hash)
        if old is not None:
            self._forget(old)
        self._by_hash[entry.request_hash] = entry
        self._by_id[entry.id] = entry
        self._bytes += entry.size
        heapq.heappush(self._expiry, (entry.expires_at, entry.request_hash, entry.id))
        if vec is not None and self._semantic is not None:
            self._semantic.add(entry, vec)
        while len(self._by_hash) > self.max_entries or self._bytes > self.max_bytes:
            victim = next(iter(self._by_hash.values()))
            if victim is entry:
                break
            self._drop(victim)
            self.evicted += 1

    def _forget(self, entry: CacheEntry) -> None:
        """Remove `entry` from memory and the index (the file is the caller's business)."""
        if self._by_hash.get(entry.request_hash) is entry:
            del self._by_hash[entry.request_hash]
            self._bytes -= entry.size
        if self._by_id.get(entry.id) is entry:
            del self._by_id[entry.id]
        if self._semantic is not None:
            self._semantic.remove(entry)

    def _drop(self, entry: CacheEntry) -> None:
        """Evicted or expired: out of memory, and its row deleted (if it is still that entry's row)."""
        self._forget(entry)
        self._queue(("del", entry.request_hash, entry.id))

    def _vector(self, blob: bytes | None) -> Any:
        return None if self._semantic is None else self._semantic.from_blob(blob)

    # -- background: the writer, the sweep, the shared-file poll ---------------------------------------
    def _queue(self, op: Op, force: bool = False) -> None:
        if not force and len(self._ops) >= self._queue_capacity:
            self.write_errors += 1
            return
        self._ops.append(op)
        if len(self._ops) >= BATCH_OPS:
            self._wake.set()

    async def _run(self) -> None:
        last_sweep = last_poll = time.monotonic()
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_INTERVAL_S)
            self._wake.clear()
            try:
                if self._ops or self._touched:
                    await self._flush()
                mono = time.monotonic()
                if mono - last_sweep >= SWEEP_INTERVAL_S:
                    last_sweep = mono
                    self.sweep(self._clock())
                if self.shared_file and mono - last_poll >= POLL_INTERVAL_S and not self._stopping:
                    last_poll = mono
                    await self.poll()
            except Exception:  # the writer must outlive any one failure
                log.exception("cache: background pass failed")

    async def _flush(self) -> None:
        ops, self._ops = self._ops, []
        touched, self._touched = self._touched, {}
        touches = [(hits, at, h, eid) for h, (eid, hits, at) in touched.items()]
        assert self._writer is not None and self._wconn is not None
        for start in range(0, max(len(ops), 1), BATCH_OPS):
            batch = ops[start : start + BATCH_OPS]
            last = start + BATCH_OPS >= len(ops)
            try:
                await self._in(
                    self._writer, _write, self._wconn, batch, touches if last else [], self._origin, self.shared_file
                )
            except Exception as exc:  # counted and logged; the entries stay served from memory
                self.write_errors += len(batch) + (len(touches) if last else 0)
                self._errors_logged += 1
                if self._errors_logged <= 10 or self._errors_logged % 100 == 0:
                    log.error(
                        "cache: writing %d changes to %s failed (%d failures so far): %s: %s",
                        len(batch) + (len(touches) if last else 0),
                        self.path.name,
                        self._errors_logged,
                        type(exc).__name__,
                        exc,
                    )

    def sweep(self, now: float) -> int:
        """Drop up to SWEEP_BATCH expired entries from memory and queue the file's bounded delete; how
        many were dropped from memory."""
        dropped = 0
        heap = self._expiry
        while heap and heap[0][0] <= now and dropped < SWEEP_BATCH:
            _, request_hash, entry_id = heapq.heappop(heap)
            entry = self._by_hash.get(request_hash)
            if entry is not None and entry.id == entry_id and entry.expires_at <= now:
                self._forget(entry)  # the file's rows go in the one bounded DELETE below
                self.expired += 1
                dropped += 1
        if len(heap) > 2 * len(self._by_hash) + 1024:  # replaced and evicted entries left stale items
            self._expiry = [(e.expires_at, h, e.id) for h, e in self._by_hash.items()]
            heapq.heapify(self._expiry)
        self._queue(("expire", now), force=True)
        return dropped

    async def _read(self, sql: str, params: tuple[Any, ...]) -> Rows:
        """A bounded read on the reader thread (shared_file); [] when it fails or takes too long."""
        if self._reader is None or self._rconn is None:
            return []
        conn = self._rconn
        try:
            return await asyncio.wait_for(
                self._in(self._reader, lambda: conn.execute(sql, params).fetchall()), READ_TIMEOUT_S
            )
        except (TimeoutError, sqlite3.Error) as exc:
            log.debug("cache: read of %s failed: %s", self.path.name, exc)
            return []

    async def _read_through(self, request_hash: str, now: float) -> CacheEntry | None:
        rows = await self._read(f"{SELECT_SQL} WHERE request_hash = ? AND expires_at > ?", (request_hash, now))
        if not rows:
            return None
        current = self._by_hash.get(request_hash)  # another lookup may have loaded it meanwhile
        if current is not None and current.expires_at > now:
            return current
        decoded = _decode(rows[0])
        if decoded is None:
            return None
        entry, blob = decoded
        self._insert(entry, self._vector(blob))
        return entry

    async def poll(self) -> None:
        """shared_file: take in the rows and the deletes the other workers wrote since the last poll."""
        rows = await self._read(f"{SELECT_SQL} WHERE seq > ? ORDER BY seq LIMIT ?", (self._last_seq, POLL_ROWS))
        tombs = await self._read(
            "SELECT seq, origin, kind, value, at FROM cache_tombstones WHERE seq > ? ORDER BY seq LIMIT ?",
            (self._last_tomb, POLL_ROWS),
        )
        for seq, origin, kind, value, at in tombs:
            self._last_tomb = max(self._last_tomb, seq)
            if origin != self._origin:
                self._apply_tombstone(kind, value, at)
        now = self._clock()
        for row in rows:
            self._last_seq = max(self._last_seq, row[0])
            request_hash, entry_id, created_at, expires_at = row[1], row[2], row[9], row[10]
            current = self._by_hash.get(request_hash)
            if expires_at <= now or (
                current is not None and (current.id == entry_id or current.created_at >= created_at)
            ):
                continue
            decoded = _decode(row)
            if decoded is not None:
                self._insert(decoded[0], self._vector(decoded[1]))

    def _apply_tombstone(self, kind: str, value: str | None, at: float) -> None:
        if kind == "del_id":
            entry = self._by_id.get(value or "")
            if entry is not None:
                self._forget(entry)
            return
        victims = [
            e for e in self._by_hash.values() if e.created_at <= at and (kind == "clear" or e.cache_key == value)
        ]
        for entry in victims:
            self._forget(entry)


if TYPE_CHECKING:  # mypy holds the engine to the interface
    _engine: type[CacheStore] = SqliteCacheStore
