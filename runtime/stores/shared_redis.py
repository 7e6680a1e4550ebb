"""The Redis shared-state engine: counters, key/value and notifications shared by every instance that
points at one Redis server (`"shared_state": {"type": "redis", "config": {"addr": ...}}`).

The same semantics as the SQLite engine (runtime/stores/shared.py), so one interface test suite runs on
both. Every key carries the configured prefix (several gateways may share one Redis) and a kind:

    <prefix>c:<span ms>:<window index>:<key>   a counter window (span 0: one window forever)
    <prefix>kv:<key>                           a key/value entry
    <prefix>ch:<channel>                       a notification channel

- counters: windows are aligned to the epoch exactly as in shared_sqlite.py (the span and the index are
  part of the key). `incr` is INCRBY (INCRBYFLOAT for a float amount, or once the value holds a
  fraction) and PEXPIREAT in one MULTI/EXEC; `reserve` is a Lua script, so the check and the add are
  one atomic step on the server. A window key expires one window after its end: an instance whose
  clock lags a little still adds to a live key, never to one recreated after its expiry.
- key/value: SET with PX (Redis expires the key itself).
- notifications: PUBLISH / SUBSCRIBE on one dedicated connection per store, read by one task that
  fans messages out to bounded per-subscriber queues (a slow subscriber loses messages, never blocks
  the reader). `subscribe` returns once Redis has confirmed the SUBSCRIBE, so nothing published after
  that is missed. After a lost connection the reader reconnects and resubscribes; what was published
  meanwhile is lost (at-most-once, as the interface says).

Every call is bounded by `timeout_s`, and the client never retries by itself (a retried INCRBY whose
reply was lost would count twice): a failure or a timeout is a `SharedStateError` at once, and the
caller decides. Messages name the server as host:port/db, never the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from runtime.stores.shared import Number, QueuedSubscription, SharedState, SharedStateError
from runtime.stores.status import StoreStatus

if TYPE_CHECKING:
    from runtime.config.model import GatewayConfig

log = logging.getLogger("bifrost.stores")

T = TypeVar("T")
DEFAULT_PORT = 6379
DEFAULT_PREFIX = "bifrost:"
RECONNECT_DELAY_S = 1.0  # between attempts of the notification reader to reach Redis again

# KEYS[1] the window key; ARGV: amount, limit, expire-at in ms (0: never). The amount is added with
# INCRBYFLOAT from its own text, so an integer total stays an integer ("10", not "10.0").
RESERVE_LUA = """
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
if total + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return 0
end
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if ARGV[3] ~= '0' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return 1
"""


def _window(window_s: float | None, now: float) -> tuple[int, int, int]:
    """(span in ms, window index, expire-at in ms) of the window holding `now`; span 0 = forever (expire 0).

    The same alignment as shared_sqlite._window; the key outlives its window by one more window."""
    if window_s is None:
        return 0, 0, 0
    span = round(window_s * 1000)
    if span < 1:
        raise ValueError(f"window_s must be at least 0.001 s, got {window_s!r}")
    win = int(now * 1000) // span
    return span, win, (win + 2) * span


def _number(value: Any) -> Number:
    """A counter's text as int when it is a whole number written without a fraction, else float."""
    if value is None:
        return 0
    if isinstance(value, (int, float)):
        return value
    text = value.decode() if isinstance(value, bytes) else str(value)
    try:
        return int(text)
    except ValueError:
        return float(text)


def _text(amount: Number) -> str:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise TypeError(f"amount must be a number, got {type(amount).__name__}")
    return str(amount) if isinstance(amount, int) else repr(float(amount))


class _Subscription(QueuedSubscription):
    """One subscriber's bounded queue (runtime/stores/shared.py); the store's reader task fills it."""

    def __init__(self, store: RedisSharedState, channel: str, size: int) -> None:
        super().__init__(channel, size)
        self.store = store

    async def close(self) -> None:
        self.end()
        await self.store._unsubscribe(self)


class RedisSharedState:
    """Shared state on one Redis server. `location` is `redis://host:port/db` or `host:port`."""

    def __init__(
        self,
        location: str | Path,
        *,
        username: str | None = None,
        password: str | None = None,
        key_prefix: str = DEFAULT_PREFIX,
        timeout_s: float = 3.0,
        connect_timeout_s: float = 2.0,
        socket_timeout_s: float | None = None,
        max_connections: int = 32,
        queue_size: int = 1000,
    ) -> None:
        text = str(location)
        parts = urlsplit(text if "://" in text else f"redis://{text}")
        if parts.scheme != "redis":
            raise ValueError("the Redis location must be redis://host:port/db or host:port")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or DEFAULT_PORT
        path = parts.path.strip("/")
        self.db = int(path) if path else 0
        self.where = f"{self.host}:{self.port}/{self.db}"  # what messages show: never the credentials
        self._username = username if username is not None else (unquote(parts.username) if parts.username else None)
        self._password = password if password is not None else (unquote(parts.password) if parts.password else None)
        self.key_prefix = key_prefix
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.socket_timeout_s = socket_timeout_s if socket_timeout_s is not None else timeout_s
        self.max_connections = max(2, max_connections)  # one is held by the subscriber connection
        self.queue_size = queue_size
        self._client: aioredis.Redis | None = None
        self._reserve_script: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._subs: dict[str, set[_Subscription]] = {}  # by full channel name
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._sub_lock: asyncio.Lock | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False
        # Read by /health: kept current by every operation (and the notification reader), never a ping.
        self.status = StoreStatus("redis", self.where)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> RedisSharedState:
        """The engine `config.shared_state` describes (runtime/config/shared_state.py parsed it)."""
        settings = config.shared_state
        if settings is None or settings.redis is None:
            raise ValueError("shared_state does not configure Redis")
        r = settings.redis
        host = f"[{r.host}]" if ":" in r.host else r.host
        return cls(
            f"redis://{host}:{r.port}/{r.db}",
            username=r.username,
            password=r.password,
            key_prefix=r.key_prefix,
            timeout_s=r.timeout_s,
            connect_timeout_s=r.connect_timeout_s,
            socket_timeout_s=r.socket_timeout_s,
            max_connections=r.max_connections,
        )

    def __repr__(self) -> str:
        return f"RedisSharedState({self.where!r}, key_prefix={self.key_prefix!r})"

    # -- plumbing ------------------------------------------------------------------------------------
    def _error(self, what: str, exc: BaseException) -> SharedStateError:
        """The store's error for `exc`, its text scrubbed of the password (a server message could echo it)."""
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) and not str(exc):
            detail = f"no answer within {self.timeout_s:g} s"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        if self._password:
            detail = detail.replace(self._password, "***")
        return SharedStateError(f"shared state: Redis at {self.where}: {what} failed ({detail})")

    async def _run(self, what: str, call: Awaitable[T]) -> T:
        """Await one Redis call, bounded by `timeout_s`; every failure becomes a SharedStateError."""
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await call
        except (RedisError, OSError, TimeoutError) as exc:
            error = self._error(what, exc)
            self.status.failed(str(error))
            raise error from None
        self.status.ok()
        return result

    async def _redis(self) -> aioredis.Redis:
        if self._client is None:
            await self.open()
        assert self._client is not None
        return self._client

    # -- lifecycle -----------------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and PING (a wrong address or password is a SharedStateError here). Optional: the first
        operation opens the store. After `close()` it stays closed (RuntimeError)."""
        if self._closed:
            raise RuntimeError("the shared-state store is closed")
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._closed:
                raise RuntimeError("the shared-state store is closed")
            if self._client is not None:
                return
            pool = aioredis.BlockingConnectionPool(
                host=self.host,
                port=self.port,
                db=self.db,
                username=self._username,
                password=self._password,
                socket_timeout=self.socket_timeout_s,
                socket_connect_timeout=self.connect_timeout_s,
                max_connections=self.max_connections,
                timeout=self.timeout_s,  # waiting for a free connection is bounded too
                decode_responses=True,
                # RESP2: what every redis-py >= 5 speaks by default to every server (RESP3 needs Redis 6
                # and is redis-py 8's default), so the engine behaves the same across the versions allowed.
                protocol=2,
                retry=Retry(NoBackoff(), 0),  # no silent retries: a lost INCRBY reply must not count twice
            )
            client = aioredis.Redis(connection_pool=pool)
            try:
                await self._run("connecting", client.ping())
            except BaseException:
                await client.aclose(close_connection_pool=True)
                raise
            self._reserve_script = client.register_script(RESERVE_LUA)
            self._client = client

    async def close(self) -> None:
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        for subs in self._subs.values():
            for sub in subs:
                sub.end()
        self._subs.clear()
        for fut in self._confirm.values():
            if not fut.done():  # a subscribe still waiting for its confirmation: tell it why it ends
                fut.set_exception(RuntimeError("the shared-state store is closed"))
        self._confirm.clear()
        pubsub, self._pubsub = self._pubsub, None
        client, self._client = self._client, None
        with contextlib.suppress(Exception):  # closing a broken connection may fail; it is gone either way
            if pubsub is not None:
                await pubsub.aclose()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)

    # -- counters ------------------------------------------------------------------------------------
    def _counter(self, key: str, span: int, win: int) -> str:
        return f"{self.key_prefix}c:{span}:{win}:{key}"

    async def incr(self, key: str, amount: Number = 1, window_s: float | None = None) -> Number:
        span, win, expire_ms = _window(window_s, time.time())
        name = self._counter(key, span, win)
        client = await self._redis()
        if isinstance(amount, int) and not isinstance(amount, bool):
            total = await self._run("incr", self._incr(client, name, amount, expire_ms, False))
            if total is not None:
                return _number(total)
            # None: the window already holds a fraction, so INCRBY refused; add as a float instead
        return _number(await self._run("incr", self._incr(client, name, amount, expire_ms, True)))

    async def _incr(self, client: aioredis.Redis, name: str, amount: Number, expire_ms: int, as_float: bool) -> Any:
        """The new total; None when INCRBY refused because the value holds a fraction."""
        if not expire_ms:  # one window forever: a single command, no transaction needed
            try:
                if as_float:
                    return await client.incrbyfloat(name, float(amount))
                return await client.incrby(name, int(amount))
            except ResponseError as exc:
                if not as_float and "not an integer" in str(exc):
                    return None
                raise
        async with client.pipeline(transaction=True) as pipe:
            if as_float:
                pipe.incrbyfloat(name, float(amount))
            else:
                pipe.incrby(name, int(amount))
            if expire_ms:
                pipe.pexpireat(name, expire_ms)
            results = await pipe.execute(raise_on_error=False)
        if isinstance(results[0], ResponseError):
            if not as_float and "not an integer" in str(results[0]):
                return None
            raise results[0]
        return results[0]

    async def reserve(self, key: str, amount: Number, limit: Number, window_s: float | None = None) -> bool:
        if amount > limit:
            return False
        span, win, expire_ms = _window(window_s, time.time())
        await self._redis()
        args = [_text(amount), _text(limit), str(expire_ms)]
        granted = await self._run("reserve", self._reserve_script(keys=[self._counter(key, span, win)], args=args))
        return bool(granted)

    async def total(self, key: str, window_s: float | None = None) -> Number:
        span, win, _ = _window(window_s, time.time())
        client = await self._redis()
        return _number(await self._run("total", client.get(self._counter(key, span, win))))

    # -- key/value -----------------------------------------------------------------------------------
    def _kv(self, key: str) -> str:
        return f"{self.key_prefix}kv:{key}"

    async def get(self, key: str) -> str | None:
        client = await self._redis()
        value = await self._run("get", client.get(self._kv(key)))
        return None if value is None else str(value)

    async def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        client = await self._redis()
        if ttl_s is None:
            await self._run("set", client.set(self._kv(key), value))
        elif ttl_s * 1000 < 1:  # already expired: reads as absent, as in the SQLite engine
            await self._run("set", client.delete(self._kv(key)))
        else:
            await self._run("set", client.set(self._kv(key), value, px=round(ttl_s * 1000)))

    async def delete(self, key: str) -> bool:
        client = await self._redis()
        return bool(await self._run("delete", client.delete(self._kv(key))))

    # -- notifications -------------------------------------------------------------------------------
    def _channel(self, channel: str) -> str:
        return f"{self.key_prefix}ch:{channel}"

    async def publish(self, channel: str, message: str) -> None:
        client = await self._redis()
        await self._run("publish", client.publish(self._channel(channel), message))

    async def subscribe(self, channel: str) -> _Subscription:
        client = await self._redis()
        if self._sub_lock is None:
            self._sub_lock = asyncio.Lock()
        full = self._channel(channel)
        sub = _Subscription(self, full, self.queue_size)
        async with self._sub_lock:
            subs = self._subs.get(full)
            if subs:
                subs.add(sub)  # Redis already sends this channel to us
                return sub
            self._subs[full] = {sub}  # before SUBSCRIBE: a message right after the confirmation finds it
            confirmed = asyncio.get_running_loop().create_future()
            self._confirm[full] = confirmed
            try:
                if self._pubsub is None:
                    self._pubsub = client.pubsub()
                await self._run("subscribe", self._pubsub.subscribe(full))
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.create_task(self._read_loop(), name="bifrost-state-redis-sub")
                await self._run("subscribe", asyncio.shield(confirmed))
            except BaseException:
                self._subs.pop(full, None)
                raise
            finally:
                self._confirm.pop(full, None)
        return sub

    async def _unsubscribe(self, sub: _Subscription) -> None:
        subs = self._subs.get(sub.channel)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if subs or self._pubsub is None or self._sub_lock is None:
            return
        async with self._sub_lock:
            if self._subs.get(sub.channel):  # someone subscribed again meanwhile
                return
            self._subs.pop(sub.channel, None)
            try:
                await self._run("unsubscribe", self._pubsub.unsubscribe(sub.channel))
            except SharedStateError as exc:  # the connection is gone; so is the subscription
                log.warning("%s", exc)

    async def _read_loop(self) -> None:
        """Fan messages out to subscribers until the store closes; reconnect after a lost connection.

        An outage is logged once as a warning when it starts (then at debug level each retry) and once
        when notifications flow again, not once a second while Redis is down."""
        failing = False
        while self._pubsub is not None:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = self._error("reading notifications", exc)
                self.status.failed(str(error))
                level = logging.DEBUG if failing else logging.WARNING
                log.log(level, "%s; retrying every %g s", error, RECONNECT_DELAY_S)
                failing = True
                await asyncio.sleep(RECONNECT_DELAY_S)
                continue
            if failing:
                failing = False
                self.status.ok()
                log.warning("shared state: Redis at %s: reading notifications again", self.where)
            if message is None:
                continue
            kind, channel = message.get("type"), message.get("channel")
            if kind == "message":
                for sub in self._subs.get(channel, ()):
                    sub.offer(message["data"])
            elif kind == "subscribe":
                fut = self._confirm.get(channel)
                if fut is not None and not fut.done():
                    fut.set_result(None)


if TYPE_CHECKING:  # mypy holds the engine to the interface
    _engine: type[SharedState] = RedisSharedState
