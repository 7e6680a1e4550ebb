"""A lean HTTP/1.1 client for upstream calls: keep-alive pools on asyncio protocols.

Why not aiohttp's ClientSession: profiling the gateway showed its request path (tracing signals,
cookie handling, multidict headers, payload objects, a timer per read) costing ~150-200 µs of CPU per
call — most of the gateway's own time. Upstream calls here are always the same shape (one POST or
GET with a small JSON body to a few origins), so a protocol that writes one buffer and parses the
response incrementally does the same job for a fraction of that.

What it does: HTTP/1.1 with keep-alive, a pool per origin (idle connections expire after
`keepalive_s`; an optional cap on connections per origin), TLS through the loop, Content-Length,
chunked and read-until-close bodies, gzip/deflate if a server sends them anyway (inflated in bounded
steps), back-pressure for slow stream readers (only for them: `read()` collects the whole body without
pausing), a cap on the body held (`max_body`, after inflation; BodyTooLarge past it), and timeouts
(connect; per read, for stream idleness; a whole-response deadline is the caller's `asyncio.timeout`).
Errors are the client's own (runtime/net/errors.py); the engine maps them to the gateway's tree.

Retries: a connection that broke is not retried here — a POST to an LLM costs money, and whether the
server saw it cannot be known, so that decision is the engine's retry policy's. With ONE exception,
the stale keep-alive race: a request written on a socket taken from the idle pool, whose connection
is closed or reset before a single response byte arrives, is sent once more on a fresh connection.
Why that is safe: an HTTP/1.1 server closes an idle keep-alive socket on its own timer, without
reading anything more from it, and our write can cross its close on the wire. A request that lands on
a socket the server is closing was never read, so it never reached the application; a server that
had read it would answer, or fail it with a status, before closing. (RFC 9112 §9.3.1 allows retrying
a non-idempotent request automatically when the client can tell it was never applied: this race.)
Go's net/http makes the same call but only for replayable requests; we include POST because every
gateway request is a POST and would otherwise fail on each keep-alive expiry race.
The residual risk is a server that reads a request and then dies without a byte of answer on a reused
socket: it gets the request twice, as any client retry would. It is never done when the connection
was fresh (nothing idle raced us: the server read the request and then failed) nor when any
response byte arrived (the server did read it), and never more than once.
What it does not do: proxies, HTTP/2, redirects, cookies — none are used by provider APIs.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import zlib
from typing import Any
from urllib.parse import quote, urlsplit

from runtime.net.errors import (
    BodyTooLarge,
    ConnectError,
    ConnectTimeout,
    InvalidHeader,
    NetError,
    ProtocolError,
    ReadTimeout,
    ServerDisconnected,
)
from runtime.net.slots import Slots

_MAX_HEAD = 64 * 1024
_HIGH_WATER = 1 << 20  # pause reading a stream whose reader lags by more than this
_INFLATE_STEP = 256 * 1024  # inflate at most this much per zlib call, so a bomb is caught before it grows
DEFAULT_MAX_BODY = 64 << 20
# Characters a request-target may carry as they are; anything else (space, CR/LF, other controls,
# non-ASCII, quotes, ...) is percent-encoded, so no URL can break the request line or need latin-1.
_TARGET_SAFE = "/?#[]@!$&'()*+,;=:%~"


class Headers(dict):
    """Response headers, lower-cased names; look-ups are case-insensitive."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key.lower() if isinstance(key, str) else key)


class _Origin:
    __slots__ = ("host", "idle", "key", "limiter", "port", "server_hostname", "tls")

    def __init__(self, scheme: str, host: str, port: int, limit: int) -> None:
        self.tls = scheme == "https"
        self.host = host
        self.port = port
        self.server_hostname = host if self.tls else None
        self.key = (scheme, host, port)
        self.idle: collections.deque[tuple[float, _Connection]] = collections.deque()
        self.limiter = Slots(f"{host}:{port}", limit, "connection_pool_limit_per_host") if limit > 0 else None


class _Connection(asyncio.Protocol):
    """One socket. Parses one response at a time into `Response` objects."""

    def __init__(self, client: HTTPClient, origin: _Origin) -> None:
        self.client = client
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.response: Response | None = None
        self._buf = bytearray()
        self._state = "idle"  # head | body | chunk_size | chunk_data | chunk_crlf | trailers | close | done
        self._remaining = 0
        self._paused = False

    # -- asyncio.Protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is None:
            return
        if self._state == "close":  # body delimited by the connection's end
            self._finish()
        elif self._state != "done":
            response._fail(
                ServerDisconnected(
                    "upstream closed the connection before the response was complete"
                    if response.status
                    else "upstream closed the connection before answering",
                    got_bytes=response._got_bytes,
                )
            )

    def eof_received(self) -> bool:
        return False  # close our side too

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes while idle: the server is confused; drop the connection
            self.close()
            return
        response._got_bytes = True
        self._buf += data
        try:
            self._parse()
        except NetError as exc:
            response._fail(exc)
            self.close()

    def pause_for(self, response: Response) -> None:
        # Back-pressure is for stream readers (readany) only: a reader that collects the whole body
        # (read) consumes nothing until the end, so pausing for it would stall until the timeout.
        # Its memory is bounded by the body cap instead.
        if response._collect:
            return
        if not self._paused and self.transport is not None and response._buffered > _HIGH_WATER:
            self._paused = True
            self.transport.pause_reading()

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    # -- parsing -------------------------------------------------------------------------------------
    def _parse(self) -> None:
        buf = self._buf
        response = self.response
        assert response is not None
        while buf:
            state = self._state
            if state == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        raise ProtocolError("upstream response head is too large")
                    return
                head = bytes(buf[:end])
                del buf[: end + 4]
                if self._head(head, response):
                    continue  # an interim 1xx response: read the next head
            elif state == "body":
                take = min(self._remaining, len(buf))
                response._feed(bytes(buf[:take]))
                del buf[:take]
                self._remaining -= take
                if not self._remaining:
                    self._finish()
            elif state == "chunk_size":
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 1024:
                        raise ProtocolError("bad chunked encoding from upstream")
                    return
                line = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size from upstream: {line[:20]!r}") from None
                if size == 0:
                    self._state = "trailers"
                else:
                    self._remaining = size
                    self._state = "chunk_data"
            elif state == "chunk_data":
                take = min(self._remaining, len(buf))
                response._feed(bytes(buf[:take]))
                del buf[:take]
                self._remaining -= take
                if not self._remaining:
                    self._state = "chunk_crlf"
            elif state == "chunk_crlf":
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise ProtocolError("bad chunked encoding from upstream (missing CRLF)")
                del buf[:2]
                self._state = "chunk_size"
            elif state == "trailers":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:
                    self._finish()
            elif state == "close":
                response._feed(bytes(buf))
                buf.clear()
            else:  # done or idle: unexpected extra bytes
                raise ProtocolError("upstream sent bytes after the response ended")
        if response._buffered > _HIGH_WATER:
            self.pause_for(response)

    def _head(self, head: bytes, response: Response) -> bool:
        # Decoded once (latin-1 maps every byte) and stored with plain dict calls: the names are lower-cased
        # here, so the case-insensitive Headers methods would only lower them again (~3 µs a response).
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"upstream did not answer with HTTP/1.x: {lines[0][:60]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise ProtocolError(f"bad status line from upstream: {lines[0][:60]!r}") from None
        if 100 <= status < 200 and status != 101:
            return True
        headers = Headers()
        get, put = dict.get, dict.__setitem__
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                continue
            key = name.strip().lower()
            val = value.strip()
            prev = get(headers, key)
            put(headers, key, val if prev is None else f"{prev}, {val}")
        response.status = status
        response.reason = parts[2] if len(parts) > 2 else ""
        response.headers = headers
        response.keep_alive = parts[0] == "HTTP/1.1" and "close" not in get(headers, "connection", "").lower()
        encoding = get(headers, "content-encoding", "").lower()
        if encoding in ("gzip", "deflate"):
            response._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
        length = get(headers, "content-length")
        if response.method == "HEAD" or status in (204, 304):
            self._finish()
        elif "chunked" in get(headers, "transfer-encoding", "").lower():
            self._state = "chunk_size"
        elif length is not None:
            if not (length.isascii() and length.isdigit()):  # int() alone takes "+1", "1_0" and " 1"
                raise ProtocolError("bad Content-Length from upstream")
            self._remaining = int(length)
            self._state = "body"
            if not self._remaining:
                self._finish()
        else:
            self._state = "close"
            response.keep_alive = False
        response._headers_ready()
        return False

    def _finish(self) -> None:
        self._state = "done"
        response = self.response
        if response is not None:
            response._complete()

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, response: Response, data: bytes) -> None:
        self.response = response
        self._state = "head"
        self._buf.clear()
        assert self.transport is not None
        self.transport.write(data)

    def reusable(self) -> bool:
        return not self.closed and self._state == "done" and not self._buf

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _discard(data: bytes) -> None:
    """The sink of a response whose reader has left (release_when_done)."""


class Response:
    """An upstream response: status and headers once `request` returns, the body on demand."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_collect",
        "_conn",
        "_done",
        "_error",
        "_got_bytes",
        "_idle_from",
        "_idle_timer",
        "_inflate",
        "_limit",
        "_linger",
        "_loop",
        "_read_timeout",
        "_released",
        "_sink",
        "_waiter",
        "headers",
        "keep_alive",
        "method",
        "reason",
        "status",
    )

    def __init__(
        self, conn: _Connection, method: str, read_timeout: float | None, limit: int = DEFAULT_MAX_BODY
    ) -> None:
        self._conn = conn
        self.method = method
        self.status = 0
        self.reason = ""
        self.headers: Headers = Headers()
        self.keep_alive = True
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._got_bytes = False
        self._inflate: Any = None
        self._released = False
        self._read_timeout = read_timeout
        # The idle bound is one deadline, not a timer per wait: `_idle_from` moves on every arrival and
        # every wait, and a single timer, re-armed only when it fires early, checks it (see _idle_check).
        self._loop = asyncio.get_running_loop()
        self._idle_from = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        # A sink takes body bytes straight from the socket callback (attach_sink): no queue, no wake-up.
        self._sink: Any = None
        self._linger: asyncio.TimerHandle | None = None  # release_when_done's bound
        self._limit = limit  # most body bytes held at once: all of it for read(), the unread part for readany()
        self._collect = False  # read() is collecting the whole body: no back-pressure pauses

    # -- fed by the connection -----------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _headers_ready(self) -> None:
        self._wake()

    def _feed(self, data: bytes) -> None:
        inflate = self._inflate
        if inflate is None:
            self._hold(data)
            return
        # Inflate in bounded steps: a few KB of gzip can expand to GBs, so the cap is checked after
        # each step and a bomb fails with at most the cap plus one step in memory.
        try:
            self._hold(inflate.decompress(data, _INFLATE_STEP))
            while inflate.unconsumed_tail:
                self._hold(inflate.decompress(inflate.unconsumed_tail, _INFLATE_STEP))
        except zlib.error as exc:
            raise ProtocolError(f"upstream sent a corrupt compressed body: {exc}") from None

    def _hold(self, data: bytes) -> None:
        if not data:
            return
        self._idle_from = self._loop.time()
        sink = self._sink
        if sink is not None:
            sink(data)  # the sink never raises: it fails this response itself (attach_sink)
            return
        if self._buffered + len(data) > self._limit:
            raise BodyTooLarge(self._limit)
        self._chunks.append(data)
        self._buffered += len(data)
        self._wake()

    def _complete(self) -> None:
        if self._inflate is not None:
            try:
                self._hold(self._inflate.flush())
            except NetError as exc:
                self._fail(exc)
                self._conn.close()
                return
        self._done = True
        self._stop_idle_timer()
        self._wake()
        if self._linger is not None:  # the reader left before the body's end (release_when_done)
            self.release()

    def _fail(self, exc: BaseException) -> None:
        # The first failure is the cause; a disconnect that follows our own close must not hide it.
        if not self._done and self._error is None:
            self._error = exc
            self._stop_idle_timer()
            self._wake()
            if self._linger is not None:
                self.close()

    async def _wait(self) -> None:
        """Until the connection wakes us (headers, data, the end, a failure) or the idle bound passes
        (then `_error` is a ReadTimeout). The caller re-checks the state after it returns."""
        loop = self._loop
        waiter = loop.create_future()
        self._waiter = waiter
        timeout = self._read_timeout
        if timeout is not None:
            self._idle_from = loop.time()
            if self._idle_timer is None:
                self._idle_timer = loop.call_at(self._idle_from + timeout, self._idle_check)
        try:
            await waiter
        finally:
            self._waiter = None

    def _idle_check(self) -> None:
        """The idle timer fired: fail the response if no data came for the whole bound while someone
        waited; otherwise re-arm for the bound counted from the latest arrival or wait. A reader busy
        elsewhere (no waiter) is not timed: its next wait re-arms the timer."""
        self._idle_timer = None
        timeout = self._read_timeout
        if timeout is None or self._done or self._error is not None or self._waiter is None:
            return
        due = self._idle_from + timeout
        if self._loop.time() >= due:
            self._fail(ReadTimeout(f"no data from upstream for {timeout:g}s", timeout))
        else:
            self._idle_timer = self._loop.call_at(due, self._idle_check)

    def _stop_linger(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None

    def _stop_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def release_when_done(self, timeout: float) -> None:
        """The reader has all it wants (an SSE stream's end marker) but the body's own end may still be
        on its way (a chunked terminator a moment behind): discard whatever else arrives and return the
        connection to the pool when the body ends, or close it after `timeout` seconds. Reusing the
        socket saves the next stream a new connection (and TLS handshake)."""
        if self._released:
            return
        if self._done:
            self.release()
            return
        if self._error is not None:
            self.close()
            return
        self._sink = _discard
        self._chunks.clear()
        self._buffered = 0
        self._conn.resume()
        self._linger = self._loop.call_later(timeout, self.close)

    # -- sink mode: body bytes handed over from the socket callback ----------------------------------
    def attach_sink(self, sink: Any) -> bytes:
        """From now on, call `sink(data)` with each body piece as it arrives (inside the connection's
        data callback: it must be quick and must not raise; to stop, it calls `fail`). Returns the body
        bytes already buffered, which the caller hands to the sink itself first. The owner then awaits
        `wait()` for the end, a failure, or a `wake()` of its own (the sink asking for attention)."""
        self._sink = sink
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._conn.resume()
        return data

    def detach_sink(self) -> None:
        self._sink = None

    async def wait(self) -> None:
        """Sink mode: until the body ends, fails, times out idle, or `wake()`; check the state after."""
        await self._wait()

    def wake(self) -> None:
        self._wake()

    def fail(self, exc: BaseException) -> None:
        """Fail this response (its reader raises `exc`) and stop reading from the connection."""
        self._fail(exc)
        self._conn.pause()

    def pause_reading(self) -> None:
        """Back-pressure from a sink's consumer: stop reading from the socket until resume_reading."""
        self._conn.pause()

    def resume_reading(self) -> None:
        self._conn.resume()

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def limit(self) -> int:
        """The most body bytes this response may hold at once (the client's `max_body`)."""
        return self._limit

    # -- reading -------------------------------------------------------------------------------------
    async def read(self) -> bytes:
        """The whole body (waits for the end). Raises BodyTooLarge past the client's `max_body`."""
        if not self._collect:
            self._collect = True
            if not self._done and self._inflate is None and self._conn._state == "body":
                declared = self._declared_length()
                if declared > self._limit:  # no need to download what will be refused
                    raise BodyTooLarge(self._limit)
            self._conn.resume()  # it may have paused before this reader came
        while not self._done:
            if self._error is not None:
                raise self._error
            await self._wait()
        if self._error is not None and not self._done:
            raise self._error
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self.release()
        return body

    async def readany(self) -> bytes:
        """Whatever body bytes have arrived (waiting for some); b"" at the end of the body."""
        while not self._chunks:
            if self._done:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()
        data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._conn.resume()
        return data

    def _declared_length(self) -> int:
        try:
            return int(self.headers.get("content-length", "0"))
        except ValueError:
            return 0

    @property
    def finished(self) -> bool:
        return self._done

    def release(self) -> None:
        """Done with this response: a complete one returns its connection to the pool, else it closes."""
        if self._released:
            return
        conn = self._detach()
        reuse = self._done and self.keep_alive and self._error is None
        if reuse:
            conn.resume()  # a reader's back-pressure pause must not follow the socket into the pool
        conn.client._give_back(conn, reuse)

    def _detach(self) -> _Connection:
        """Release this response's hold on its connection (timers, sink) once; the caller decides its fate."""
        self._released = True
        self._sink = None
        self._stop_idle_timer()
        self._stop_linger()
        conn = self._conn
        conn.response = None
        return conn

    def close(self) -> None:
        """Abandon the response (and its connection): tells the server to stop sending."""
        if self._released:
            return
        conn = self._detach()
        conn.close()
        conn.client._give_back(conn, False)


class HTTPClient:
    """Pools of keep-alive connections per origin. Create and close inside the running loop."""

    def __init__(
        self,
        limit_per_host: int = 0,
        keepalive_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        limit: int = 0,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.limit_per_host = limit_per_host
        self.max_body = max_body  # bytes of body (after inflation) one response may hold
        # Caps on open sockets (0 = none); lanes already bound requests per provider, these bound sockets.
        self._total = Slots("upstream", limit, "connection_pool_limit") if limit > 0 else None
        self.keepalive_s = keepalive_s
        self._ssl = ssl_context
        self._origins: dict[str, _Origin] = {}
        self._targets: dict[str, tuple[_Origin, bytes]] = {}  # url -> (origin, request-target + host line)
        self._all: set[_Connection] = set()
        self.closed = False
        self.stale_retries = 0  # requests re-sent after the stale keep-alive race (observability, tests)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _target(self, url: str) -> tuple[_Origin, bytes]:
        cached = self._targets.get(url)
        if cached is not None:
            return cached
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectError(f"unsupported upstream URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        origin_key = f"{parts.scheme}://{parts.hostname}:{port}"
        origin = self._origins.get(origin_key)
        if origin is None:
            origin = self._origins[origin_key] = _Origin(parts.scheme, parts.hostname, port, self.limit_per_host)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # Adapters encode client input (providers/common.path_segment); this is the backstop for any
        # other text (a base_url from config): a no-op for a well-formed URL, computed once per URL.
        path = quote(path, safe=_TARGET_SAFE, errors="backslashreplace")
        default_port = port == (443 if parts.scheme == "https" else 80)
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        host_header = host if default_port else f"{host}:{port}"
        line = f" {path} HTTP/1.1\r\nHost: {host_header}\r\n".encode("latin-1")
        if len(self._targets) < 4096:
            self._targets[url] = (origin, line)
        return origin, line

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        *,
        connect_timeout: float,
        read_timeout: float | None = None,
    ) -> Response:
        """Send the request; return once the response status and headers arrived.

        `read_timeout` bounds each wait for data (headers included): the stream-idle bound.
        """
        origin, target = self._target(url)
        head = [method.encode("ascii"), target]
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise InvalidHeader(f"header {name!r} contains a line break")
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        if body is not None:
            head.append(b"Content-Length: %d\r\n" % len(body))
        head.append(b"\r\n")
        data = b"".join(head) + body if body else b"".join(head)
        await self._acquire_slots(origin, connect_timeout)
        try:
            conn = self._idle_connection(origin)
            reused = conn is not None
            while True:
                if conn is None:
                    conn = await self._connect(origin, connect_timeout)
                response = Response(conn, method, read_timeout, self.max_body)
                conn.start(response, data)
                try:
                    while not response.status:
                        if response._error is not None:
                            raise response._error
                        await response._wait()
                except ServerDisconnected as exc:
                    self._discard(conn, response)
                    if not reused or exc.got_bytes:
                        raise  # a fresh socket, or the server began answering: not ours to repeat
                    # The stale keep-alive race (module docstring): the server closed this idle socket
                    # without reading the request. Once, on a fresh connection (never another idle one).
                    reused = False
                    conn = None
                    self.stale_retries += 1
                    continue
                except BaseException:
                    self._discard(conn, response)
                    raise
                return response  # the socket slots now belong to the response
        except BaseException:
            self._release_slots(origin)
            raise

    async def _acquire_slots(self, origin: _Origin, timeout: float) -> None:
        total = self._total
        if total is not None and not total.try_acquire():
            await total.acquire(timeout)
        limiter = origin.limiter
        if limiter is not None and not limiter.try_acquire():
            try:
                await limiter.acquire(timeout)
            except BaseException:
                if total is not None:
                    total.release()
                raise

    def _release_slots(self, origin: _Origin) -> None:
        if origin.limiter is not None:
            origin.limiter.release()
        if self._total is not None:
            self._total.release()

    def _discard(self, conn: _Connection, response: Response) -> None:
        response._released = True
        conn.response = None
        conn.close()
        self._all.discard(conn)

    def _idle_connection(self, origin: _Origin) -> _Connection | None:
        """The most recently used idle socket still open and within `keepalive_s`, if any."""
        now = time.monotonic()
        idle = origin.idle
        while idle:
            since, conn = idle.pop()  # most recently used first: the warmest socket
            if conn.closed or now - since > self.keepalive_s:
                conn.close()
                self._all.discard(conn)
                continue
            return conn
        return None

    async def _connect(self, origin: _Origin, connect_timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, origin),
                    origin.host,
                    origin.port,
                    ssl=self._ssl_context() if origin.tls else None,
                    server_hostname=origin.server_hostname,
                )
        except TimeoutError:
            raise ConnectTimeout(
                f"connecting to {origin.host}:{origin.port} took over {connect_timeout:g}s", connect_timeout
            ) from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {origin.host}:{origin.port}: {exc.strerror or exc}") from None
        self._all.add(conn)
        return conn

    def _give_back(self, conn: _Connection, reusable: bool) -> None:
        origin = conn.origin
        if reusable and conn.reusable() and not self.closed:
            conn._state = "idle"
            origin.idle.append((time.monotonic(), conn))
        else:
            conn.close()
            self._all.discard(conn)
        self._release_slots(origin)

    async def close(self) -> None:
        self.closed = True
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        for origin in self._origins.values():
            origin.idle.clear()
        await asyncio.sleep(0)


def make_client(
    pool_limit: int, pool_limit_per_host: int, keepalive_s: float, max_body: int = DEFAULT_MAX_BODY
) -> HTTPClient:
    """The app's upstream client (hot path). Created inside the running loop (cleanup_ctx).

    `max_body` is `client.max_upstream_response_mb` in bytes: the most one upstream answer may hold.
    """
    return HTTPClient(limit=pool_limit, limit_per_host=pool_limit_per_host, keepalive_s=keepalive_s, max_body=max_body)
