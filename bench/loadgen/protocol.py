"""Keep-alive HTTP/1.1 client connections as bare asyncio protocols, and the pool that hands them out.

One request is in flight per connection (no pipelining, like real SDK clients); the pool opens a new
connection whenever a request is due and none is idle, up to a cap, and queues beyond the cap.  The
request's clock starts at its *scheduled* time, so a queued request is charged for its wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

from bench.loadgen.payloads import FaultMix, UniquePayloads
from bench.loadgen.validate import OK, check_json, check_sse

_now = time.monotonic


class Req:
    """One request: its schedule, payload, and what was observed."""

    __slots__ = ("deadline", "done", "event_times", "fault", "overhead_us", "sched", "stream", "t_sent", "t_submit")

    def __init__(self, sched: float, deadline: float, t_submit: float = 0.0) -> None:
        self.done = False
        self.sched = sched
        # When the scheduler handed it over: t_submit - sched is the generator's own lateness, apart
        # from any wait for a free connection (which is the server's doing).
        self.t_submit = t_submit or sched
        self.deadline = deadline
        self.t_sent = 0.0
        self.overhead_us = -1
        self.event_times: list[float] | None = None
        self.stream = False  # set when its payload is chosen (Pool._take)
        self.fault = ""  # an injected fault (soak): "" or one of payloads.FAULT_KINDS


# Called with (request, kind, finished_at); kind is "ok" or an error kind.
DoneFn = Callable[[Req, str, float], None]

# A "disconnect" fault on a plain request: the client closes this long after sending, unread.
DISCONNECT_AFTER_S = 0.005


class HttpConn(asyncio.Protocol):
    """A client connection that parses Content-Length and chunked responses incrementally."""

    __slots__ = (
        "_body",
        "_buf",
        "_chunked",
        "_clen",
        "_close_after",
        "_head_done",
        "_pool",
        "_status",
        "req",
        "transport",
    )

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self.req: Req | None = None
        self._buf = bytearray()
        self._body = bytearray()
        self._head_done = False
        self._status = 0
        self._clen = -1
        self._chunked = False
        self._close_after = False

    # -- asyncio callbacks ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        req = self.req
        self.req = None
        self.transport = None
        self._pool.lost(self)
        if req is not None:
            # A close-delimited body ends here legitimately; anything else is a cut connection.
            if self._head_done and self._clen < 0 and not self._chunked:
                self._pool.finish(req, self._verdict(req), _now())
            else:
                self._pool.finish(req, "conn_closed", _now())

    def data_received(self, data: bytes) -> None:
        if self.req is None:
            return  # stray bytes after a timeout; the connection is being aborted
        buf = self._buf
        buf += data
        if not self._head_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self._parse_head(bytes(buf[:end]))
            del buf[: end + 4]
        if self._chunked:
            self._feed_chunked()
            req = self.req
            if req is not None and req.fault == "disconnect" and req.event_times:
                self.disconnect(req)  # mid-stream, after the first events
        elif self._clen >= 0 and len(buf) >= self._clen:
            self._body = buf[: self._clen]
            del buf[: self._clen]
            self._complete()

    # -- parsing ----------------------------------------------------------------------------

    def _parse_head(self, head: bytes) -> None:
        self._head_done = True
        self._status = int(head[9:12])
        lower = head.lower()
        i = lower.find(b"\r\ncontent-length:")
        if i >= 0:
            j = lower.find(b"\r\n", i + 2)
            self._clen = int(lower[i + 17 : j if j >= 0 else None])
        else:
            self._clen = -1
        self._chunked = b"\r\ntransfer-encoding: chunked" in lower
        self._close_after = b"\r\nconnection: close" in lower
        i = lower.find(b"\r\nx-bf-overhead-us:")
        if i >= 0 and self.req is not None:
            j = lower.find(b"\r\n", i + 2)
            with contextlib.suppress(ValueError):
                self.req.overhead_us = int(float(lower[i + 19 : j if j >= 0 else None]))

    def _feed_chunked(self) -> None:
        buf = self._buf
        got_events = False
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                break
            size = int(bytes(buf[:eol]).split(b";")[0], 16)
            if size == 0:
                if buf.find(b"\r\n", eol + 2) < 0:
                    break  # trailer terminator not here yet
                buf.clear()
                if got_events:
                    self._mark_event()
                self._complete()
                return
            if len(buf) < eol + 4 + size:
                break
            chunk = buf[eol + 2 : eol + 2 + size]
            self._body += chunk
            if b"data:" in chunk:
                got_events = True
            del buf[: eol + 4 + size]
        if got_events:
            self._mark_event()

    def _mark_event(self) -> None:
        req = self.req
        if req is not None:
            if req.event_times is None:
                req.event_times = []
            req.event_times.append(_now())

    def _verdict(self, req: Req) -> str:
        if self._status != 200:
            return f"http_{self._status}"
        if req.stream:
            kind, _events = check_sse(bytes(self._body))
            return kind
        return check_json(bytes(self._body), self._pool.expect)

    def _complete(self) -> None:
        req = self.req
        self.req = None
        if req is None:
            return
        verdict = self._verdict(req)
        if self._status == 200 and verdict == OK and req.stream and req.event_times is None:
            verdict = "stream_cut"
        self._reset()
        at = _now()
        # Release before reporting, so a closed-loop user's next request reuses this connection.
        if self._close_after and self.transport is not None:
            self.transport.close()
        elif self.transport is not None:
            self._pool.release(self)
        self._pool.finish(req, verdict, at)

    def _reset(self) -> None:
        self._body = bytearray()
        self._head_done = False
        self._status = 0
        self._clen = -1
        self._chunked = False

    # -- used by the pool -------------------------------------------------------------------

    def send(self, req: Req, payload: bytes) -> None:
        self.req = req
        self._reset()
        self._buf.clear()
        req.t_sent = _now()
        assert self.transport is not None
        self.transport.write(payload)
        if req.fault == "disconnect" and not req.stream:
            self._pool.loop.call_later(DISCONNECT_AFTER_S, self.disconnect, req)

    def disconnect(self, req: Req) -> None:
        """The client fault: close the connection without reading the answer (counted as "disconnect")."""
        if self.req is not req:
            return  # answered (or timed out) before we got to leave
        self.req = None
        self._pool.finish(req, "disconnect", _now())
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Pool:
    """Connections to one origin; requests beyond ``max_conns`` wait in FIFO order."""

    def __init__(
        self,
        host: str,
        port: int,
        payload: bytes,
        *,
        stream: bool,
        expect: str,
        max_conns: int,
        on_done: DoneFn,
        unique: UniquePayloads | None = None,
        mix: FaultMix | None = None,
    ) -> None:
        self.host = host
        self.port = port
        # With `unique`, every request gets the next payload (a new prompt); otherwise all send the same bytes.
        self.unique = unique
        self.payload = unique.next() if unique is not None else payload
        self.mix = mix  # the soak's mixed streams / plain requests with injected faults
        self.stream = stream
        self.expect = expect
        self.max_conns = max_conns
        self.on_done = on_done
        self.loop = asyncio.get_running_loop()
        self.idle: list[HttpConn] = []
        self.busy: set[HttpConn] = set()
        self.waiting: deque[Req] = deque()
        self.connecting: set[Req] = set()  # requests whose new connection is still being opened
        self.n_conns = 0
        self.opened = 0

    async def prewarm(self, n: int) -> int:
        """Open ``n`` idle connections before the clock starts; returns how many opened."""
        n = min(n, self.max_conns)

        async def one() -> None:
            try:
                _t, conn = await self.loop.create_connection(lambda: HttpConn(self), self.host, self.port)
            except OSError:
                return
            self.n_conns += 1
            self.opened += 1
            self.idle.append(conn)

        for start in range(0, n, 128):  # bounded bursts: a gateway's accept backlog is finite
            await asyncio.gather(*(one() for _ in range(min(128, n - start))))
        return len(self.idle)

    def submit(self, req: Req) -> None:
        if self.idle:
            conn = self.idle.pop()
            self.busy.add(conn)
            conn.send(req, self._take(req))
        elif self.n_conns < self.max_conns:
            self.n_conns += 1
            self.loop.create_task(self._open_and_send(req))
        else:
            self.waiting.append(req)

    async def _open_and_send(self, req: Req) -> None:
        self.connecting.add(req)
        try:
            _t, conn = await self.loop.create_connection(lambda: HttpConn(self), self.host, self.port)
        except OSError as exc:
            self.connecting.discard(req)
            self.n_conns -= 1
            kind = "connect_refused" if isinstance(exc, ConnectionRefusedError) else "connect_error"
            self.finish(req, kind, _now())
            return
        self.connecting.discard(req)
        self.opened += 1
        if req.done or req.deadline <= _now():
            # Timed out while connecting (a full accept queue drops SYNs: retries take seconds).
            self.finish(req, "timeout", _now())
            self.release(conn)
            return
        self.busy.add(conn)
        conn.send(req, self._take(req))

    def _take(self, req: Req) -> bytes:
        if self.mix is not None:
            req.stream, req.fault, mixed = self.mix.next()
            return mixed
        req.stream = self.stream
        payload = self.payload
        if self.unique is not None:
            self.payload = self.unique.next()
        return payload

    def release(self, conn: HttpConn) -> None:
        self.busy.discard(conn)
        now = _now()
        while self.waiting:
            req = self.waiting.popleft()
            if req.deadline <= now:
                self.finish(req, "timeout", now)
                continue
            self.busy.add(conn)
            conn.send(req, self._take(req))
            return
        self.idle.append(conn)

    def lost(self, conn: HttpConn) -> None:
        self.n_conns -= 1
        self.busy.discard(conn)
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def finish(self, req: Req, kind: str, at: float) -> None:
        if req.done:
            return  # already counted (e.g. timed out while its connection was being opened)
        req.done = True
        self.on_done(req, kind, at)

    def sweep(self, now: float) -> None:
        """Fail requests past their deadline: in flight (abort the socket) or still queued."""
        for conn in [c for c in self.busy if c.req is not None and c.req.deadline <= now]:
            req = conn.req
            conn.req = None
            assert req is not None
            self.finish(req, "timeout", now)
            conn.abort()
        while self.waiting and self.waiting[0].deadline <= now:
            self.finish(self.waiting.popleft(), "timeout", now)
        for req in [r for r in self.connecting if r.deadline <= now]:
            self.connecting.discard(req)
            self.finish(req, "timeout", now)

    def in_flight(self) -> int:
        return sum(1 for c in self.busy if c.req is not None) + len(self.waiting) + len(self.connecting)

    def close(self) -> None:
        for conn in list(self.idle) + list(self.busy):
            if conn.transport is not None:
                conn.transport.close()
