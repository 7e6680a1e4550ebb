"""The cluster cache engine: every gateway instance shares one cache (Redis for exact lookups, PostgreSQL
for everything, the in-process vector index kept in sync). Chosen by `build_cache` when config.json has
`shared_state` type redis and a postgres `config_store`; the cache's tables live in the config store's
database (runtime/cache/pg_schema.py).

Exact mode. `get` looks in this worker's memory (a small LRU of recently seen entries, MEMORY_ENTRIES),
then does one Redis GET of `<key_prefix>cache:<request_hash>` (bounded by the Redis timeout). An entry
stored through instance A is therefore a hit on instance B at once. A Redis failure is a miss, never an
error, and Redis is not asked again for REDIS_BACKOFF_S (a dead server costs nothing per request).
The store has its own redis-py client (from `shared_state`'s settings) rather than the shared-state
engine: the key is `<key_prefix>cache:<hash>` (the engine's are `<key_prefix>kv:...`), values are bytes,
a write batch is one pipeline and a clear needs SCAN.

Semantic mode. Every live entry with an embedding is in memory and in the vector index (one per params
hash, runtime/cache/vectors.py), loaded at `open()` (the index is built in a thread; semantic lookups
miss until it is). Other instances' changes arrive through PostgreSQL LISTEN/NOTIFY on `bifrost_cache`:
a semantic put notifies the new rows' seqs (the receivers read those rows), a delete / clear / eviction
notifies its tombstone. NOTIFY is transactional: it is delivered on commit, so a notified row is always
readable, and a rolled-back write notifies nobody; that is why it carries the changes rather than Redis
pub/sub (whose messages would race the PostgreSQL commit). After the listening connection is lost, the
instance reconnects and catches up: rows and tombstones with `seq` above the last seen (less an overlap)
(a full reload when it was away longer than the tombstones are kept).

The admin side (find, delete, list, stats) reads PostgreSQL, which holds every entry of every instance
(exact ones too). Deletes remove the rows, the Redis keys and this worker's memory at once, and reach
every other instance's memory through the tombstone's notification (well under a second).

Writes (`put`, `touch`) never make a request wait: memory changes at once, PostgreSQL and Redis get
background batches (FLUSH_INTERVAL_S). A batch that fails is retried on the next passes; changes that
still cannot be written after `retry_window_s`, or that find the queue full, are dropped and counted in
`write_errors`. Connections come back by themselves (the PostgreSQL side is retried every RECONNECT_S).

TTL and caps are cluster-wide: every `sweep_interval_s` one instance (whichever takes the advisory lock)
deletes the expired rows and, when the table is over `max_entries` / `max_bytes`, the least recently
used ones (by the later of created and last hit), whose deletes reach the others as tombstones. Redis
expires exact entries by itself (PX = the entry's TTL). Each worker also caps its own memory.

pgvector: when the server offers the `vector` extension (checked at open, `pgvector_available`), the
nearest-neighbour search could move server-side; that path is not built (it could not be tested on a
machine without the package): the in-process index is used either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import ujson

from runtime.cache.pg_schema import CHANNEL, has_pgvector, migrate
from runtime.cache.store import ENTRY_COLUMNS, CacheEntry, CacheStore, StoreStats, entry_from_record
from runtime.core.text import repair
from runtime.stores.status import StoreStatus

if TYPE_CHECKING:
    import asyncpg
    import redis.asyncio as aioredis

    from runtime.cache.semantic_index import SemanticIndex
    from runtime.config.model import PostgresSettings, RedisSettings

log = logging.getLogger("bifrost.cache")
T = TypeVar("T")

MEMORY_ENTRIES = 2_000  # exact entries this worker keeps in memory (recently stored or hit)
FLUSH_INTERVAL_S = 0.1
BATCH_OPS = 500
QUEUE_CAPACITY = 20_000  # queued changes per backend; beyond it they are dropped and counted
RETRY_WINDOW_S = 30.0  # a backend that keeps failing this long: its queued changes are dropped (counted)
RECONNECT_S = 1.0  # PostgreSQL: between attempts to reconnect
REDIS_BACKOFF_S = 1.0  # Redis: after a failure, lookups miss without asking for this long
PG_TIMEOUT_S = 5.0  # any one PostgreSQL operation of this store
STATS_INTERVAL_S = 2.0  # how often the cluster-wide entry and byte counts are read
SWEEP_INTERVAL_S = 30.0
SWEEP_BATCH = 5_000
SWEEP_LOCK = 0x6266_6361_6368_6502  # pg_try_advisory_xact_lock key: one sweeper at a time
TOMBSTONE_TTL_S = 3600.0
PAGE_ROWS = 2_000  # catch-up and load pages
# A catch-up re-reads this many sequence numbers below the highest it saw: a transaction that took a
# lower seq but committed after the notifications stopped reaching this worker is not skipped.
CATCH_UP_OVERLAP = 1_000
NOTIFY_BYTES = 7_000  # PostgreSQL refuses payloads of 8,000 bytes and more
NOTE_QUEUE = 10_000  # notifications waiting to be applied; past it, a catch-up replaces them
LIST_LIMIT = 500
CLOSE_TIMEOUT_S = 5.0  # each step of close(): a shutdown never waits long on a dead server

COLUMNS = ENTRY_COLUMNS
TYPES = (
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "float8",
    "float8",
    "text",
    "text",
    "int4",
    "int4",
    "float8",
    "float8",
    "bytea",
    "int4",
    "int4",
    "float8",
)
TABLE = "bifrost_cache_entries"
TOMBS = "bifrost_cache_tombstones"
_COLS = ", ".join(COLUMNS)
SELECT_SQL = f"SELECT seq, {_COLS} FROM {TABLE}"
_UPDATES = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "request_hash")
UPSERT_SQL = (
    f"INSERT INTO {TABLE} ({_COLS}) SELECT * FROM unnest("
    + ", ".join(f"${i}::{t}[]" for i, t in enumerate(TYPES, start=1))
    + f") ON CONFLICT (request_hash) DO UPDATE SET {_UPDATES}, seq = nextval('bifrost_cache_seq')"
    " RETURNING seq, embedding IS NOT NULL"
)
TOUCH_SQL = (
    f"UPDATE {TABLE} SET hits = hits + $1, last_hit_at = greatest(last_hit_at, $2) WHERE request_hash = $3 AND id = $4"
)
Row = tuple[Any, ...]
Rows = list[Row]  # an alias: inside the class, `list` is the admin listing method


def _clean(text: str) -> str:
    """Text PostgreSQL can store: valid UTF-8 and no NUL character (TEXT refuses it)."""
    text = repair(text)
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _int4(value: int) -> int:
    """A count as PostgreSQL's INTEGER holds it (a provider's absurd usage must not refuse the batch)."""
    return max(-(2**31), min(int(value), 2**31 - 1))


def _row(entry: CacheEntry, response_json: str, blob: bytes | None) -> Row:
    return (
        entry.request_hash,
        _clean(entry.id),
        entry.params_hash,
        _clean(entry.cache_key),
        _clean(entry.virtual_key_id) if entry.virtual_key_id is not None else None,
        _clean(entry.endpoint),
        _clean(entry.provider),
        _clean(entry.model),
        float(entry.created_at),  # float(): a number DOUBLE PRECISION cannot hold fails here, in put
        float(entry.expires_at),
        response_json,
        entry.prompt_text,
        _int4(entry.prompt_tokens),
        _int4(entry.completion_tokens),
        float(entry.cost) if entry.cost is not None else None,
        float(entry.upstream_ms),
        blob,
        _int4(entry.size),
        _int4(entry.hits),
        float(entry.last_hit_at),
    )


def _entry(record: Any) -> tuple[CacheEntry, bytes | None] | None:
    """A row of SELECT_SQL as an entry and its embedding bytes; None for a row that cannot be one."""
    try:
        return entry_from_record(record)
    except (ValueError, TypeError, KeyError):
        return None


# Redis holds an entry as one value: a JSON header (every field but the response and the embedding), a
# newline, then the response's JSON (already encoded for PostgreSQL: not encoded twice).
_HEADER = tuple(c for c in COLUMNS if c not in ("response", "embedding"))


def _redis_value(row: Row) -> bytes:
    header = ujson.dumps({c: row[COLUMNS.index(c)] for c in _HEADER}, ensure_ascii=False)
    return f"{header}\n{row[COLUMNS.index('response')]}".encode()


def _from_redis(raw: bytes) -> CacheEntry | None:
    try:
        header_text, _, response = raw.decode().partition("\n")
        header = ujson.loads(header_text)
        header["response"] = response
        header["embedding"] = None
        decoded = _entry(header)
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    return decoded[0] if decoded is not None else None


def _unreachable(exc: BaseException) -> bool:
    """Whether `exc` means "PostgreSQL is not there right now" (vs. a bug worth a traceback)."""
    from runtime.stores.pg import CONNECTION_ERRORS, PostgresUnavailable

    return isinstance(exc, (PostgresUnavailable, *CONNECTION_ERRORS))


def _like(search: str) -> str:
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{_clean(escaped)}%"


def _notes(prefix: str, values: Sequence[str]) -> list[str]:
    """`prefix` + values joined by newlines, split into payloads PostgreSQL accepts."""
    out: list[str] = []
    chunk: list[str] = []
    size = len(prefix)
    for value in values:
        if chunk and size + len(value.encode()) + 1 > NOTIFY_BYTES:
            out.append(prefix + "\n".join(chunk))
            chunk, size = [], len(prefix)
        chunk.append(value)
        size += len(value.encode()) + 1
    if chunk:
        out.append(prefix + "\n".join(chunk))
    return out


class ClusterCacheStore:
    """See the module doc. `clock` is the background sweeps' clock; lookups take the caller's `now`."""

    def __init__(
        self,
        postgres: PostgresSettings,
        redis: RedisSettings,
        *,
        max_entries: int,
        max_bytes: int,
        dimension: int | None,
        memory_entries: int = MEMORY_ENTRIES,
        sweep_interval_s: float = SWEEP_INTERVAL_S,
        retry_window_s: float = RETRY_WINDOW_S,
        queue_capacity: int = QUEUE_CAPACITY,
        reconnect_s: float = RECONNECT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries <= 0 or max_bytes <= 0:
            raise ValueError("max_entries and max_bytes must be positive")
        self.pg_settings = postgres
        self.redis_settings = redis
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.dimension = dimension
        self.memory_entries = max(1, memory_entries)
        self.sweep_interval_s = sweep_interval_s
        self.retry_window_s = retry_window_s
        self.queue_capacity = queue_capacity
        self.reconnect_s = reconnect_s
        self._clock = clock
        self.origin = secrets.token_hex(8)  # this store's notifications, which its own listener skips
        self.key_prefix = f"{redis.key_prefix}cache:"
        host = f"[{redis.host}]" if ":" in redis.host else redis.host
        self.status = StoreStatus("postgres+redis", f"{postgres.describe()} + redis {host}:{redis.port}/{redis.db}")
        self._pg_error: str | None = None
        self._redis_error: str | None = None
        self.pgvector_available: bool | None = None

        # Exact memory: recently stored or hit entries, least recently used first.
        self._recent: OrderedDict[str, CacheEntry] = OrderedDict()
        self._generation = 0  # +1 on every delete applied: a Redis read older than it is not remembered
        # Semantic memory: every live entry with an embedding (dimension set), by hash, id and label.
        self._semantic: SemanticIndex | None = None
        if dimension is not None:
            from runtime.cache.semantic_index import SemanticIndex  # numpy + usearch: semantic mode only

            self._semantic = SemanticIndex(dimension)
            self._semantic.building = True  # semantic lookups miss until the first load is indexed
        self._sem: OrderedDict[str, CacheEntry] = OrderedDict()
        self._sem_by_id: dict[str, CacheEntry] = {}
        self._sem_bytes = 0
        self._expiry: list[tuple[float, str, str]] = []

        # Counts: cluster-wide ones read every STATS_INTERVAL_S, the rest this store's own.
        self._cluster_entries = 0
        self._cluster_bytes = 0
        self.evicted = 0
        self.expired = 0
        self.write_errors = 0
        self.catch_ups = 0  # reconnections caught up with (tests, logs)

        # Connections and background work.
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._redis: aioredis.Redis | None = None
        self._redis_retry_at = 0.0
        self._pg_ops: list[Row] = []  # upserts
        self._pg_touch: dict[tuple[str, str], tuple[int, float]] = {}  # (hash, id) -> (hits to add, last hit)
        self._redis_ops: list[tuple[str, str, bytes | None, int]] = []  # ("set"|"del", key, value, px)
        self._pg_failing_since: float | None = None
        self._redis_failing_since: float | None = None
        self._notes: asyncio.Queue[str] = asyncio.Queue(NOTE_QUEUE)
        self._resync = False
        self._catch_up_due = False
        self._loaded = False
        self._migrated = False
        self._last_seq = 0
        self._last_tomb = 0
        self._disconnected_at: float | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._connect_lock = asyncio.Lock()
        self._errors_logged = 0

    # -- status ----------------------------------------------------------------------------------------
    def _pg_up(self) -> None:
        self._pg_error = None
        if self._redis_error is None:
            self.status.ok()

    def _pg_down(self, what: str, exc: BaseException) -> None:
        from runtime.stores.pg import unavailable

        self._pg_error = str(unavailable(self.pg_settings, exc))
        self.status.failed(f"{what}: {self._pg_error}")

    def _redis_up(self) -> None:
        self._redis_error = None
        self._redis_failing_since = None
        if self._pg_error is None:
            self.status.ok()

    def _redis_down(self, what: str, exc: BaseException) -> None:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        password = self.redis_settings.password
        if password:
            detail = detail.replace(password, "***")
        s = self.redis_settings
        self._redis_error = f"redis {s.host}:{s.port}/{s.db}: {detail}"[:500]
        self._redis_retry_at = time.monotonic() + REDIS_BACKOFF_S
        self.status.failed(f"{what}: {self._redis_error}")

    # -- lifecycle -------------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect (bounded). A backend that is down is not an error: lookups miss, and the background
        task reconnects. Never raises for an unreachable server."""
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        s = self.redis_settings
        pool = aioredis.BlockingConnectionPool(
            host=s.host,
            port=s.port,
            db=s.db,
            username=s.username,
            password=s.password,
            socket_timeout=s.socket_timeout_s if s.socket_timeout_s is not None else s.timeout_s,
            socket_connect_timeout=s.connect_timeout_s,
            max_connections=max(2, s.max_connections),
            timeout=s.timeout_s,
            protocol=2,
            retry=Retry(NoBackoff(), 0),  # every call is bounded once; the store decides what a failure means
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        await self._connect_pg()
        self._tasks = [
            asyncio.create_task(self._run(), name="bifrost-cache-cluster-writer"),
            asyncio.create_task(self._sync(), name="bifrost-cache-cluster-sync"),
        ]

    async def ready(self) -> None:
        """Wait until the semantic memory is loaded and indexed (tests; lookups never wait for it)."""
        while self._semantic is not None and self._semantic.building and not self._stopping:
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        """Flush what is queued (bounded) and release every connection; never raises."""
        self._stopping = True
        self._wake.set()
        for task in self._tasks[1:]:  # the sync task waits for notifications: stop it
            task.cancel()
        for task in self._tasks:  # the writer ends its pass by itself (a batch is never cut in half)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, CLOSE_TIMEOUT_S)
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._flush_pg(final=True)
                await self._flush_redis(final=True)
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(listener.close(), CLOSE_TIMEOUT_S)
            if not listener.is_closed():
                listener.terminate()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
            except BaseException:
                pool.terminate()
        client, self._redis = self._redis, None
        if client is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(client.aclose(close_connection_pool=True), CLOSE_TIMEOUT_S)

    async def _pg(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """Run `call(connection)` on a pooled connection, bounded by PG_TIMEOUT_S; raises
        PostgresUnavailable (and marks the status) when the server cannot do it."""
        from runtime.stores.pg import CONNECTION_ERRORS, unavailable

        pool = self._pool
        if pool is None:
            raise unavailable(self.pg_settings, ConnectionError(self._pg_error or "not connected"))
        try:
            async with asyncio.timeout(PG_TIMEOUT_S), pool.acquire() as conn:
                result = await call(conn)
        except CONNECTION_ERRORS as exc:
            self._pg_down("a query", exc)
            raise unavailable(self.pg_settings, exc) from None
        self._pg_up()
        return result

    async def _connect_pg(self) -> None:
        """Open the pool, migrate, LISTEN, then load (first time) or catch up (after a lost connection)."""
        from runtime.stores.pg import connect, connect_pool

        async with self._connect_lock:
            if self._stopping:
                return
            try:
                async with asyncio.timeout(PG_TIMEOUT_S * 2):
                    if self._pool is None:
                        self._pool = await connect_pool(self.pg_settings)
                    if not self._migrated:
                        async with self._pool.acquire() as conn:
                            await migrate(conn)
                            self.pgvector_available = await has_pgvector(conn)
                        self._migrated = True
                    listener = await connect(self.pg_settings)
                    try:
                        await listener.add_listener(CHANNEL, self._on_notify)
                    except BaseException:
                        listener.terminate()
                        raise
                    self._listener = listener
            except Exception as exc:
                if not _unreachable(exc):
                    log.exception("cache: preparing the PostgreSQL tables failed")
                self._pg_down("connecting", exc)
                if self._disconnected_at is None:
                    self._disconnected_at = time.monotonic()
                    log.warning(
                        "cache: PostgreSQL unavailable (%s); retrying every %g s", self._pg_error, self.reconnect_s
                    )
                return
            self._pg_up()
            away = None if self._disconnected_at is None else time.monotonic() - self._disconnected_at
            self._disconnected_at = None
            self._resync = not self._loaded or (away is not None and away > TOMBSTONE_TTL_S / 2)
            self._catch_up_due = self._loaded and not self._resync
            self._notes.put_nowait("w")  # wake the sync task: it loads or catches up

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self._notes.put_nowait(payload)
        except asyncio.QueueFull:  # too far behind: read the tables instead
            self._catch_up_due = True

    # -- lookups ---------------------------------------------------------------------------------------
    async def get(self, request_hash: str, now: float) -> CacheEntry | None:
        entry = self._recent.get(request_hash)
        if entry is not None:
            if entry.expires_at > now:
                self._recent.move_to_end(request_hash)
                return entry
            del self._recent[request_hash]
            self.expired += 1
        sem = self._sem.get(request_hash)
        if sem is not None and sem.expires_at > now:
            return sem
        client = self._redis
        if client is None or time.monotonic() < self._redis_retry_at:
            return None
        generation = self._generation
        try:
            async with asyncio.timeout(self.redis_settings.timeout_s):
                raw = await client.get(self.key_prefix + request_hash)
        except Exception as exc:  # a lookup that cannot be made is a miss, never the request's error
            self._redis_down("a lookup", exc)
            return None
        self._redis_up()
        if raw is None:
            return None
        found = _from_redis(raw if isinstance(raw, bytes) else str(raw).encode())
        if found is None or found.expires_at <= now or found.request_hash != request_hash:
            return None
        if generation == self._generation:  # no delete was applied meanwhile: safe to remember
            self._remember(found)
        return found

    def _remember(self, entry: CacheEntry) -> None:
        self._recent[entry.request_hash] = entry
        self._recent.move_to_end(entry.request_hash)
        while len(self._recent) > self.memory_entries:
            self._recent.popitem(last=False)

    async def nearest(
        self, params_hash: str, vector: Sequence[float], threshold: float, now: float
    ) -> tuple[CacheEntry, float] | None:
        if self._semantic is None:
            return None
        found, expired = self._semantic.search(params_hash, vector, threshold, now)
        for entry in expired:
            if self._sem_forget(entry):
                self.expired += 1
        return found

    # -- writes ----------------------------------------------------------------------------------------
    def put(self, entry: CacheEntry, response_json: str | None = None) -> None:
        vec = None
        if self._semantic is not None and entry.embedding is not None:
            vec = self._semantic.unit(entry.embedding)
            if vec is None:
                log.warning("cache: entry %s has an unusable embedding; stored for exact lookups only", entry.id)
        entry.embedding = None
        try:
            if response_json is None:
                response_json = ujson.dumps(entry.response, ensure_ascii=False, escape_forward_slashes=False)
            response_json = _clean(response_json)
        except (TypeError, ValueError, OverflowError) as exc:
            log.warning("cache: entry %s not stored (its response is not JSON: %s)", entry.id, exc)
            return
        # What PostgreSQL stores is what memory holds (deletes by key or id then match on every instance).
        entry.prompt_text = _clean(entry.prompt_text)
        entry.id, entry.cache_key = _clean(entry.id), _clean(entry.cache_key)
        entry.provider, entry.model = _clean(entry.provider), _clean(entry.model)
        entry.size = len(response_json) + len(entry.prompt_text) + (4 * (self.dimension or 0) if vec is not None else 0)
        if entry.size > self.max_bytes:
            return
        blob = vec.astype("<f4").tobytes() if vec is not None else None
        try:
            row = _row(entry, response_json, blob)
            value = _redis_value(row)
            ttl_ms = int((entry.expires_at - self._clock()) * 1000)
        except (TypeError, ValueError, OverflowError) as exc:  # a field no store can hold (an absurd number)
            log.warning("cache: entry %s not stored: %s", entry.id, exc)
            return
        self._remember(entry)
        if vec is not None:
            self._sem_insert(entry, vec)
        self._queue_pg(row)
        if ttl_ms > 0:
            self._queue_redis(("set", self.key_prefix + entry.request_hash, value, ttl_ms))

    def touch(self, entry: CacheEntry, now: float) -> None:
        entry.hits += 1
        entry.last_hit_at = now
        if self._recent.get(entry.request_hash) is entry:
            self._recent.move_to_end(entry.request_hash)
        if self._sem.get(entry.request_hash) is entry:
            self._sem.move_to_end(entry.request_hash)
        key = (entry.request_hash, entry.id)
        if key not in self._pg_touch and len(self._pg_touch) >= self.queue_capacity:
            self.write_errors += 1
            return
        added, _ = self._pg_touch.get(key, (0, 0.0))
        self._pg_touch[key] = (added + 1, now)

    def _queue_pg(self, row: Row) -> None:
        if len(self._pg_ops) >= self.queue_capacity:
            self.write_errors += 1
            return
        self._pg_ops.append(row)
        if len(self._pg_ops) >= BATCH_OPS:
            self._wake.set()

    def _queue_redis(self, op: tuple[str, str, bytes | None, int]) -> None:
        if len(self._redis_ops) >= self.queue_capacity:
            self.write_errors += 1
            return
        self._redis_ops.append(op)

    # -- admin -----------------------------------------------------------------------------------------
    async def find(self, entry_id: str) -> CacheEntry | None:
        try:
            rows = await self._pg(lambda c: c.fetch(f"{SELECT_SQL} WHERE id = $1 LIMIT 1", _clean(entry_id)))
        except Exception:  # PostgreSQL down: what this worker holds
            return self._local_by_id(entry_id)
        decoded = _entry(rows[0]) if rows else None
        return decoded[0] if decoded else None

    def _local_by_id(self, entry_id: str) -> CacheEntry | None:
        found = self._sem_by_id.get(entry_id)
        return found or next((e for e in self._recent.values() if e.id == entry_id), None)

    async def list(self, search: str | None, limit: int, offset: int) -> tuple[list[CacheEntry], int]:
        limit = max(0, min(int(limit), LIST_LIMIT))
        offset = max(0, int(offset))
        where, args = "", []
        if search:
            where = (
                " WHERE prompt_text ILIKE $1 OR model ILIKE $1 OR cache_key ILIKE $1 OR id ILIKE $1"
                " OR provider ILIKE $1"
            )
            args.append(_like(search))
        n = len(args)

        async def query(conn: Any) -> tuple[Any, int]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                total = await conn.fetchval(f"SELECT count(*) FROM {TABLE}{where}", *args)
                rows = await conn.fetch(
                    f"{SELECT_SQL}{where} ORDER BY created_at DESC, seq DESC LIMIT ${n + 1} OFFSET ${n + 2}",
                    *args,
                    limit,
                    offset,
                )
            return rows, int(total)

        rows, total = await self._pg(query)
        entries = [d[0] for d in map(_entry, rows) if d is not None]
        return entries, total

    def _unqueue(self, doomed: Callable[[Row], bool]) -> set[str]:
        """Drop this worker's queued puts that a delete covers (they would write the entry back); the
        hashes of the entries dropped."""
        hashes = {r[0] for r in self._pg_ops if doomed(r)}
        if hashes:
            self._pg_ops = [r for r in self._pg_ops if r[0] not in hashes]
        return hashes

    def _unqueue_redis(self, hashes: set[str]) -> None:
        keys = {self.key_prefix + h for h in hashes}
        self._redis_ops = [op for op in self._redis_ops if not (op[0] == "set" and op[1] in keys)]

    async def delete(self, entry_id: str) -> bool:
        entry_id = _clean(entry_id)
        local = {e.request_hash for e in (*self._recent.values(), *self._sem.values()) if e.id == entry_id}
        self._apply("id", entry_id, 0.0)
        hashes = local | self._unqueue(lambda r: r[1] == entry_id)
        self._unqueue_redis(hashes)
        await self._redis_delete(hashes)

        async def run(conn: Any) -> Any:
            async with conn.transaction():
                rows = await conn.fetch(f"DELETE FROM {TABLE} WHERE id = $1 RETURNING request_hash", _clean(entry_id))
                await self._tombstone(conn, "id", entry_id)
            return rows

        rows = await self._pg(run)
        await self._redis_delete({r[0] for r in rows} - hashes)
        return bool(rows) or bool(local)

    async def delete_by_cache_key(self, cache_key: str) -> int:
        cache_key = _clean(cache_key)
        local = {e.request_hash for e in (*self._recent.values(), *self._sem.values()) if e.cache_key == cache_key}
        self._apply("key", cache_key, 0.0)
        hashes = local | self._unqueue(lambda r: r[3] == cache_key)
        self._unqueue_redis(hashes)
        await self._redis_delete(hashes)

        async def run(conn: Any) -> Any:
            async with conn.transaction():
                rows = await conn.fetch(
                    f"DELETE FROM {TABLE} WHERE cache_key = $1 RETURNING request_hash", _clean(cache_key)
                )
                await self._tombstone(conn, "key", cache_key)
            return rows

        rows = await self._pg(run)
        found = {r[0] for r in rows}
        await self._redis_delete(found - hashes)
        return len(found | local)

    async def clear(self) -> int:
        local = len({*self._recent, *self._sem})
        at = self._clock()
        self._apply("clear", None, at)
        self._pg_ops = []
        self._redis_ops = [op for op in self._redis_ops if op[0] != "set"]
        await self._redis_clear()

        async def run(conn: Any) -> int:
            async with conn.transaction():
                status = await conn.execute(f"DELETE FROM {TABLE}")
                await self._tombstone(conn, "clear", None, at)
            return int(status.split()[-1])

        deleted = await self._pg(run)
        self._cluster_entries = self._cluster_bytes = 0
        return max(deleted, local)

    async def _tombstone(self, conn: Any, kind: str, value: str | None, at: float | None = None) -> None:
        """Record a delete for catching up, and notify every instance (delivered on commit)."""
        at = self._clock() if at is None else at
        value = _clean(value) if value is not None else None
        seq = await conn.fetchval(
            f"INSERT INTO {TOMBS} (origin, kind, value, at) VALUES ($1, $2, $3, $4) RETURNING seq",
            self.origin,
            kind,
            value,
            at,
        )
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"t|{self.origin}|{seq}|{kind}|{at!r}|{value or ''}")

    async def _redis_delete(self, hashes: set[str]) -> None:
        keys = [self.key_prefix + h for h in hashes]
        client = self._redis
        if not keys or client is None:
            return
        try:
            async with asyncio.timeout(self.redis_settings.timeout_s):
                for start in range(0, len(keys), 1000):
                    await client.delete(*keys[start : start + 1000])
        except Exception as exc:  # retried by the writer
            self._redis_down("a delete", exc)
            for key in keys:
                self._queue_redis(("del", key, None, 0))
            return
        self._redis_up()

    async def _redis_clear(self) -> None:
        """Every `<prefix>cache:*` key, also those whose PostgreSQL row was never written."""
        client = self._redis
        if client is None:
            return
        try:
            async with asyncio.timeout(max(self.redis_settings.timeout_s, 5.0)):
                batch: list[bytes] = []
                async for key in client.scan_iter(match=self.key_prefix + "*", count=1000):
                    batch.append(key)
                    if len(batch) >= 1000:
                        await client.delete(*batch)
                        batch = []
                if batch:
                    await client.delete(*batch)
        except Exception as exc:
            self._redis_down("clearing", exc)
            raise
        self._redis_up()

    def stats(self) -> StoreStats:
        return StoreStats(
            entries=self._cluster_entries,
            bytes=self._cluster_bytes,
            evicted=self.evicted,
            expired=self.expired,
            write_errors=self.write_errors,
        )

    # -- memory ----------------------------------------------------------------------------------------
    def _apply(self, kind: str, value: str | None, at: float) -> None:
        """A delete (ours or another instance's): out of this worker's memory."""
        self._generation += 1
        if kind == "clear":
            keep = [(h, e) for h, e in self._recent.items() if e.created_at > at]
            self._recent = OrderedDict(keep)
            for entry in [e for e in self._sem.values() if e.created_at <= at]:
                self._sem_forget(entry)
            return
        if kind == "id" or kind == "evict":
            ids = set((value or "").split("\n")) if kind == "evict" else {value or ""}

            def match(e: CacheEntry) -> bool:
                return e.id in ids
        else:

            def match(e: CacheEntry) -> bool:
                return e.cache_key == value

        for h in [h for h, e in self._recent.items() if match(e)]:
            del self._recent[h]
        for entry in [e for e in self._sem.values() if match(e)]:
            self._sem_forget(entry)

    def _sem_insert(self, entry: CacheEntry, vec: Any) -> None:
        old = self._sem.get(entry.request_hash)
        if old is not None:
            self._sem_forget(old)
        self._sem[entry.request_hash] = entry
        self._sem_by_id[entry.id] = entry
        self._sem_bytes += entry.size
        heapq.heappush(self._expiry, (entry.expires_at, entry.request_hash, entry.id))
        if self._semantic is not None:
            self._semantic.add(entry, vec)
        while len(self._sem) > self.max_entries or self._sem_bytes > self.max_bytes:
            victim = next(iter(self._sem.values()))
            if victim is entry:
                break
            self._sem_forget(victim)  # only this worker's memory: the cluster sweep owns the table

    def _sem_forget(self, entry: CacheEntry) -> bool:
        if self._sem.get(entry.request_hash) is not entry:
            return False
        del self._sem[entry.request_hash]
        self._sem_bytes -= entry.size
        if self._sem_by_id.get(entry.id) is entry:
            del self._sem_by_id[entry.id]
        if self._semantic is not None:
            self._semantic.remove(entry)
        return True

    def _vector(self, blob: bytes | None) -> Any:
        return None if self._semantic is None else self._semantic.from_blob(blob)

    def _take_row(self, record: Any, now: float) -> None:
        """A semantic row read from the table (load, notification, catch-up) into memory."""
        self._last_seq = max(self._last_seq, record["seq"])
        if record["expires_at"] <= now:
            return
        current = self._sem.get(record["request_hash"])
        if current is not None and (current.id == record["id"] or current.created_at > record["created_at"]):
            return
        decoded = _entry(record)
        if decoded is None:
            return
        vec = self._vector(decoded[1])
        if vec is not None:
            self._sem_insert(decoded[0], vec)

    # -- background: notifications, load and catch-up ---------------------------------------------------
    async def _sync(self) -> None:
        """Apply notifications; load at the first connection, catch up after a reconnection."""
        while not self._stopping:
            payload = await self._notes.get()
            try:
                if self._resync:
                    await self._load()
                elif self._catch_up_due:
                    await self._catch_up()
                elif payload != "w":
                    await self._apply_note(payload)
            except Exception as exc:
                if not _unreachable(exc):
                    log.exception("cache: applying a change from another instance failed")
                self._catch_up_due = self._loaded  # whatever was missed is read again once reachable
                await asyncio.sleep(self.reconnect_s)
                if self._notes.empty():
                    self._notes.put_nowait("w")  # try again

    async def _apply_note(self, payload: str) -> None:
        kind, _, rest = payload.partition("|")
        origin, _, rest = rest.partition("|")
        if origin == self.origin:
            return
        if kind == "p" and self.dimension is not None:
            seqs = [int(s) for s in rest.split(",") if s]
            rows = await self._pg(lambda c: c.fetch(f"{SELECT_SQL} WHERE seq = ANY($1::bigint[])", seqs))
            now = self._clock()
            for record in rows:
                self._take_row(record, now)
        elif kind == "t":
            seq, kind2, at, value = rest.split("|", 3)
            self._last_tomb = max(self._last_tomb, int(seq))
            self._apply(kind2, value if kind2 != "clear" else None, float(at))

    async def _load(self) -> None:
        """Semantic memory from the table (newest first, up to the caps), and the high-water marks."""

        async def read(conn: Any) -> tuple[list[Any], int, int]:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                last_seq = await conn.fetchval(f"SELECT COALESCE(max(seq), 0) FROM {TABLE}")
                last_tomb = await conn.fetchval(f"SELECT COALESCE(max(seq), 0) FROM {TOMBS}")
                rows: list[Any] = []
                if self.dimension is not None:
                    rows = await conn.fetch(
                        f"{SELECT_SQL} WHERE embedding IS NOT NULL AND expires_at > $1"
                        " ORDER BY created_at DESC LIMIT $2",
                        self._clock(),
                        self.max_entries,
                    )
            return rows, last_seq, last_tomb

        rows, last_seq, last_tomb = await self._pg(read)
        if self._loaded:  # a reload after a long absence: forget what may have been deleted meanwhile
            self._recent.clear()
            for entry in list(self._sem.values()):
                self._sem_forget(entry)
        self._resync = False
        self._catch_up_due = False
        self._last_seq, self._last_tomb = last_seq, last_tomb
        now = self._clock()
        total = 0
        for record in reversed(rows):  # oldest first: the newest end most recently used
            total += record["size"]
            if total > self.max_bytes:
                continue
            self._take_row(record, now)
        self._last_seq = max(self._last_seq, last_seq)
        self._loaded = True
        if self._semantic is not None and self._semantic.building:
            await self._semantic.build()

    async def _catch_up(self) -> None:
        """After a reconnection: the semantic rows and the deletes written while this worker was away."""
        self._catch_up_due = False
        self.catch_ups += 1
        self._recent.clear()  # cheap to refill from Redis; may hold entries deleted meanwhile
        self._generation += 1
        self._last_tomb = max(0, self._last_tomb - CATCH_UP_OVERLAP)  # deletes apply idempotently
        self._last_seq = max(0, self._last_seq - CATCH_UP_OVERLAP)  # rows already held are skipped
        while True:
            tombs = await self._pg(
                lambda c: c.fetch(
                    f"SELECT seq, origin, kind, value, at FROM {TOMBS} WHERE seq > $1 ORDER BY seq LIMIT $2",
                    self._last_tomb,
                    PAGE_ROWS,
                )
            )
            for t in tombs:
                self._last_tomb = max(self._last_tomb, t["seq"])
                if t["origin"] != self.origin:
                    self._apply(t["kind"], t["value"], t["at"])
            if len(tombs) < PAGE_ROWS:
                break
        if self.dimension is None:
            return
        while True:
            rows = await self._pg(
                lambda c: c.fetch(
                    f"{SELECT_SQL} WHERE embedding IS NOT NULL AND seq > $1 ORDER BY seq LIMIT $2",
                    self._last_seq,
                    PAGE_ROWS,
                )
            )
            now = self._clock()
            for record in rows:
                self._take_row(record, now)
            if len(rows) < PAGE_ROWS:
                break

    # -- background: writes, sweeps, stats, reconnection ------------------------------------------------
    async def _run(self) -> None:
        last_stats = last_sweep = last_connect = time.monotonic()
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_INTERVAL_S)
            self._wake.clear()
            try:
                mono = time.monotonic()
                listener = self._listener
                if listener is not None and listener.is_closed():  # lost: notifications stopped
                    self._listener = None
                    listener.terminate()
                    if self._disconnected_at is None:
                        self._disconnected_at = mono
                    self._pg_down("listening", ConnectionError("the LISTEN connection was lost"))
                    last_connect = mono
                if (self._pool is None or self._listener is None) and mono - last_connect >= self.reconnect_s:
                    last_connect = mono
                    await self._connect_pg()
                await self._flush_pg()
                await self._flush_redis()
                if mono - last_stats >= STATS_INTERVAL_S and self._pool is not None:
                    last_stats = mono
                    await self._refresh_stats()
                if mono - last_sweep >= self.sweep_interval_s:
                    last_sweep = mono
                    await self.sweep(self._clock())
            except Exception as exc:  # the background task must outlive any one failure
                if not _unreachable(exc):
                    log.exception("cache: background pass failed")

    async def _flush_pg(self, final: bool = False) -> None:
        if not self._pg_ops and not self._pg_touch:
            return
        rows_all, self._pg_ops = self._pg_ops, []
        touches, self._pg_touch = self._pg_touch, {}
        dedup: dict[str, Row] = {}
        for row in rows_all:
            dedup[row[0]] = row  # the last put of a hash wins (one statement cannot update a row twice)
        rows = list(dedup.values())
        try:
            while True:
                await self._pg(functools.partial(self._write, rows=rows[:BATCH_OPS], touches=touches))
                rows, touches = rows[BATCH_OPS:], {}
                if not rows:
                    break
        except Exception as exc:
            if not _unreachable(exc):  # the data, not the server: retrying the batch cannot help
                await self._write_one_by_one(rows[:BATCH_OPS], touches, exc)
                self._pg_ops = rows[BATCH_OPS:] + self._pg_ops
                return
            self._failed("PostgreSQL", exc, rows, touches, final)
            return
        self._pg_failing_since = None

    async def _write_one_by_one(self, rows: Rows, touches: dict[Any, Any], exc: BaseException) -> None:
        """A batch PostgreSQL refused for its data: write its rows alone, so one bad entry costs only
        itself (dropped and counted), not the batch."""
        log.warning("cache: PostgreSQL refused a batch (%s: %s); writing its rows one by one", type(exc).__name__, exc)
        for row in rows:
            try:
                await self._pg(functools.partial(self._write, rows=[row], touches={}))
            except Exception as one:
                if _unreachable(one):
                    self._failed("PostgreSQL", one, [row], {}, False)
                    continue
                self.write_errors += 1
                log.error("cache: entry %s refused by PostgreSQL and dropped: %s: %s", row[1], type(one).__name__, one)
        if touches:
            try:
                await self._pg(functools.partial(self._write, rows=[], touches=touches))
            except Exception:
                self.write_errors += len(touches)

    def _failed(self, backend: str, exc: BaseException, rows: Rows, touches: dict[Any, Any], final: bool) -> None:
        """A batch that could not be written: kept for the next pass, dropped (counted) once the backend
        has failed for longer than retry_window_s, or at close."""
        now = time.monotonic()
        if self._pg_failing_since is None:
            self._pg_failing_since = now
        if final or now - self._pg_failing_since >= self.retry_window_s:
            dropped = len(rows) + len(touches) + len(self._pg_ops) + len(self._pg_touch)
            self.write_errors += dropped
            self._pg_ops, self._pg_touch = [], {}
            self._log_write_error(backend, dropped, exc)
            return
        self._pg_ops = rows + self._pg_ops
        for key, (added, at) in touches.items():
            have, last = self._pg_touch.get(key, (0, 0.0))
            self._pg_touch[key] = (have + added, max(at, last))

    def _log_write_error(self, backend: str, dropped: int, exc: BaseException) -> None:
        self._errors_logged += 1
        if self._errors_logged <= 10 or self._errors_logged % 100 == 0:
            log.error("cache: %d changes could not be written to %s and were dropped: %s", dropped, backend, exc)

    async def _write(self, conn: Any, rows: Rows, touches: dict[tuple[str, str], tuple[int, float]]) -> None:
        async with conn.transaction():
            semantic: list[str] = []
            if rows:
                columns = [list(col) for col in zip(*rows, strict=True)]
                for seq, has_vector in await conn.fetch(UPSERT_SQL, *columns):
                    if has_vector:
                        semantic.append(str(seq))
            if touches:
                await conn.executemany(TOUCH_SQL, [(added, at, h, eid) for (h, eid), (added, at) in touches.items()])
            for payload in _notes(f"p|{self.origin}|", semantic):
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload.replace("\n", ","))

    async def _flush_redis(self, final: bool = False) -> None:
        client = self._redis
        if not self._redis_ops or client is None:
            return
        if not final and time.monotonic() < self._redis_retry_at:
            return
        ops, self._redis_ops = self._redis_ops, []
        try:
            async with asyncio.timeout(self.redis_settings.timeout_s):
                for start in range(0, len(ops), BATCH_OPS):
                    async with client.pipeline(transaction=False) as pipe:
                        for kind, key, value, px in ops[start : start + BATCH_OPS]:
                            if kind == "set":
                                pipe.set(key, value or b"", px=px)
                            else:
                                pipe.delete(key)
                        await pipe.execute()
        except Exception as exc:
            self._redis_down("writing", exc)
            now = time.monotonic()
            if self._redis_failing_since is None:
                self._redis_failing_since = now
            if final or now - self._redis_failing_since >= self.retry_window_s:
                dropped = len(ops) + len(self._redis_ops)
                self.write_errors += dropped
                self._redis_ops = []
                self._log_write_error("Redis", dropped, exc)
            else:
                self._redis_ops = ops + self._redis_ops
            return
        self._redis_up()

    async def _refresh_stats(self) -> None:
        row = await self._pg(lambda c: c.fetchrow(f"SELECT count(*), COALESCE(sum(size), 0) FROM {TABLE}"))
        self._cluster_entries, self._cluster_bytes = int(row[0]), int(row[1])

    async def sweep(self, now: float) -> int:
        """Drop expired entries from this worker's memory; and, on the one instance holding the advisory
        lock, delete expired rows and the least recently used rows past the caps (their deletes reach
        every instance as one tombstone per batch). How many rows this call deleted."""
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, request_hash, entry_id = heapq.heappop(heap)
            entry = self._sem.get(request_hash)
            if entry is not None and entry.id == entry_id and entry.expires_at <= now and self._sem_forget(entry):
                self.expired += 1
        if len(heap) > 2 * len(self._sem) + 1024:
            self._expiry = [(e.expires_at, h, e.id) for h, e in self._sem.items()]
            heapq.heapify(self._expiry)
        for h in [h for h, e in self._recent.items() if e.expires_at <= now]:
            del self._recent[h]
        if self._pool is None:
            return 0

        async def run(conn: Any) -> tuple[int, list[Any]]:
            async with conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SWEEP_LOCK):
                    return 0, []
                status = await conn.execute(
                    f"DELETE FROM {TABLE} WHERE seq IN (SELECT seq FROM {TABLE} WHERE expires_at <= $1 LIMIT $2)",
                    now,
                    SWEEP_BATCH,
                )
                expired = int(status.split()[-1])
                count, total = await conn.fetchrow(f"SELECT count(*), COALESCE(sum(size), 0) FROM {TABLE}")
                victims: list[Any] = []
                if count > self.max_entries or total > self.max_bytes:
                    victims = await conn.fetch(
                        f"""
                        WITH ranked AS (
                            SELECT seq, row_number() OVER w AS n, sum(size) OVER w AS running
                            FROM {TABLE} WINDOW w AS (ORDER BY greatest(created_at, last_hit_at) DESC, seq DESC)
                        ), doomed AS (
                            SELECT seq FROM ranked WHERE n > $1 OR running > $2 LIMIT $3
                        )
                        DELETE FROM {TABLE} e USING doomed WHERE e.seq = doomed.seq RETURNING e.id, e.request_hash
                        """,
                        self.max_entries,
                        self.max_bytes,
                        SWEEP_BATCH,
                    )
                    for chunk in _notes("", [v["id"] for v in victims]):
                        await self._tombstone(conn, "evict", chunk, now)
                await conn.execute(f"DELETE FROM {TOMBS} WHERE at < $1", now - TOMBSTONE_TTL_S)
            return expired, victims

        expired, victims = await self._pg(run)
        self.expired += expired
        self.evicted += len(victims)
        if victims:
            self._apply("evict", "\n".join(v["id"] for v in victims), now)
            await self._redis_delete({v["request_hash"] for v in victims})
        return expired + len(victims)


if TYPE_CHECKING:  # mypy holds the engine to the interface
    _engine: type[CacheStore] = ClusterCacheStore
