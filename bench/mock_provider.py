"""OpenAI-compatible mock provider: a raw asyncio HTTP/1.1 server on uvloop.

Serves chat completions (JSON and SSE), completions, embeddings and /v1/models with a fixed latency,
a configurable response size and stream shape, and counts what it served (GET /stats).  It is a bare
``asyncio.Protocol`` with keep-alive and precomputed response bytes rather than an aiohttp app because
it has to be much cheaper per request than any gateway placed in front of it; the README records
what it sustains alone.

    python -m bench.mock_provider --port 9000 --latency-ms 20

Injected faults (the ``soak`` scenario): a chat request whose body holds ``bench-fault:<kind>`` (the load
generator puts it in the prompt, so it passes through any gateway unchanged) gets that fault:
    timeout     held for ``fault_hold_ms`` (longer than the gateway's request timeout), then answered
    reset       the TCP connection is reset (SO_LINGER 0, then close: an RST) before any answer
    cut         a stream sends ``fault_cut_chunks`` chunks, then the connection closes without
                ``[DONE]`` or the terminating chunk (a JSON answer: half its bytes, then close)
    disconnect  answered normally: the *client* goes away (the load generator's side of the fault)
Each is counted in /stats as ``fault_<kind>``.  Requests without the marker pay one substring search.

Control plane (used by the suite between runs, so one mock serves a whole scenario):
    GET  /stats          {"served": {...}, "total": n, "uptime_s": s, "settings": {...}}
    POST /stats/reset    zero the counters
    POST /control        JSON with any MockSettings field, e.g. {"latency_ms": 1500}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import resource
import signal
import socket
import struct
import sys
import time

from bench.mock_responses import MockSettings, Rendered, render

_STREAM_MARKERS = (b'"stream":true', b'"stream": true')
FAULT_MARKER = b"bench-fault:"
FAULTS = ("timeout", "reset", "cut", "disconnect")
_FAULT_NAMES = {f.encode(): f for f in FAULTS}
_LINGER_ZERO = struct.pack("ii", 1, 0)


def fault_of(body: bytes) -> str:
    """The fault a request asks for (``bench-fault:<kind>`` in its body), or ""."""
    i = body.find(FAULT_MARKER)
    if i < 0:
        return ""
    j = k = i + len(FAULT_MARKER)
    while k < len(body) and 97 <= body[k] <= 122:  # a-z
        k += 1
    return _FAULT_NAMES.get(body[j:k], "")


class MockState:
    """Shared by all connections: current settings, rendered bytes and counters."""

    __slots__ = ("counts", "rendered", "settings", "started")

    def __init__(self, settings: MockSettings) -> None:
        self.settings = settings
        self.rendered: Rendered = render(settings)
        self.counts: dict[str, int] = {}
        self.started = time.monotonic()

    def update(self, changes: dict[str, object]) -> None:
        fields = {f.name: f.type for f in dataclasses.fields(MockSettings)}
        clean = {
            k: (float(v) if fields[k] == "float" else int(v))  # type: ignore[call-overload]
            for k, v in changes.items()
            if k in fields
        }
        self.settings = dataclasses.replace(self.settings, **clean)
        self.rendered = render(self.settings)

    def count(self, route: str) -> None:
        self.counts[route] = self.counts.get(route, 0) + 1

    def stats_body(self) -> bytes:
        body = json.dumps(
            {
                "served": self.counts,
                "total": sum(v for k, v in self.counts.items() if not k.startswith("_")),
                "uptime_s": round(time.monotonic() - self.started, 3),
                "settings": dataclasses.asdict(self.settings),
            }
        ).encode()
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )


def _parse_head(head: bytes) -> tuple[bytes, bytes, int, bool, bool]:
    """Return (method, path, content_length, chunked, close) from a request head."""
    line_end = head.find(b"\r\n")
    request_line = head[:line_end] if line_end >= 0 else head
    parts = request_line.split(b" ")
    method = parts[0]
    path = parts[1] if len(parts) > 1 else b"/"
    http10 = request_line.endswith(b"HTTP/1.0")
    lower = head.lower()
    length = 0
    i = lower.find(b"\r\ncontent-length:")
    if i >= 0:
        j = lower.find(b"\r\n", i + 2)
        length = int(lower[i + 17 : j if j >= 0 else None].strip() or b"0")
    chunked = b"\r\ntransfer-encoding: chunked" in lower
    close = b"\r\nconnection: close" in lower or (http10 and b"\r\nconnection: keep-alive" not in lower)
    return method, path, length, chunked, close


def _dechunk(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``start``; None until the final chunk has arrived."""
    out = bytearray()
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        if size == 0:
            end = buf.find(b"\r\n\r\n", eol)
            if end < 0:
                return None
            return bytes(out), end + 4
        if len(buf) < eol + 2 + size + 2:
            return None
        out += buf[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2


class MockProtocol(asyncio.Protocol):
    """One client connection; requests on it are answered strictly in order (HTTP/1.1)."""

    __slots__ = ("_buf", "_busy", "_close_after", "_closed", "_loop", "_state", "_transport")

    def __init__(self, state: MockState) -> None:
        self._state = state
        self._buf = bytearray()
        self._busy = False
        self._closed = False
        self._close_after = False
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._state.count("_connections")

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._busy:
            self._process()

    def _process(self) -> None:
        buf = self._buf
        while not self._busy and not self._closed:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            method, path, length, chunked, close = _parse_head(bytes(buf[:end]))
            if chunked:
                decoded = _dechunk(buf, end + 4)
                if decoded is None:
                    return
                body, consumed = decoded
            else:
                consumed = end + 4 + length
                if len(buf) < consumed:
                    return
                body = bytes(buf[end + 4 : consumed])
            del buf[:consumed]
            self._close_after = close
            self._dispatch(method, path, body)

    def _dispatch(self, method: bytes, path: bytes, body: bytes) -> None:
        state = self._state
        r = state.rendered
        route = path.split(b"?", 1)[0].rstrip(b"/")
        if route.endswith(b"/chat/completions"):
            fault = fault_of(body)
            if fault:
                state.count("fault_" + fault)
                if fault != "disconnect":
                    self._fault(fault, any(m in body for m in _STREAM_MARKERS), b"include_usage" in body)
                    return
            if any(m in body for m in _STREAM_MARKERS):
                state.count("chat_stream")
                self._start_stream(b"include_usage" in body)
                return
            state.count("chat")
            self._reply(r.chat, delayed=True)
        elif route.endswith(b"/completions"):
            state.count("completions")
            self._reply(r.completions, delayed=True)
        elif route.endswith(b"/embeddings"):
            state.count("embeddings")
            self._reply(r.embeddings, delayed=True)
        elif route.endswith(b"/models"):
            state.count("models")
            self._reply(r.models, delayed=False)
        elif route == b"/health":
            self._reply(r.health, delayed=False)
        elif route == b"/stats":
            self._reply(state.stats_body(), delayed=False)
        elif route == b"/stats/reset" and method == b"POST":
            state.counts.clear()
            state.started = time.monotonic()
            self._reply(state.stats_body(), delayed=False)
        elif route == b"/control" and method == b"POST":
            state.update(json.loads(body or b"{}"))
            self._reply(state.stats_body(), delayed=False)
        else:
            state.count("not_found")
            self._reply(r.not_found, delayed=False)

    # -- injected faults --------------------------------------------------------------------------

    def _fault(self, fault: str, stream: bool, include_usage: bool) -> None:
        t = self._transport
        if t is None:
            return
        self._busy = True
        if fault == "reset":
            sock = t.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            self._closed = True
            t.abort()
        elif fault == "timeout":
            hold = self._state.settings.fault_hold_ms / 1000.0
            self._loop.call_later(hold, self._after_hold, stream, include_usage)
        elif stream:  # cut
            r = self._state.rendered
            self._loop.call_later(
                self._state.settings.latency_ms / 1000.0,
                self._stream_step,
                r,
                max(self._state.settings.fault_cut_chunks, 1),
                0,
                include_usage,
                True,
            )
        else:
            chat = self._state.rendered.chat
            self._loop.call_later(self._state.settings.latency_ms / 1000.0, self._cut_now, chat[: len(chat) // 2])

    def _after_hold(self, stream: bool, include_usage: bool) -> None:
        if self._closed:  # the gateway gave up on it, as it should
            self._busy = False
            return
        if stream:
            self._stream_step(self._state.rendered, max(self._state.settings.stream_chunks, 1), 0, include_usage)
        else:
            self._write_and_continue(self._state.rendered.chat)

    def _cut_now(self, data: bytes) -> None:
        t = self._transport
        if not self._closed and t is not None:
            if data:
                t.write(data)
            t.close()  # FIN after what was written: a cut, not a reset
        self._closed = True
        self._busy = False

    # -- plain responses --------------------------------------------------------------------------

    def _reply(self, payload: bytes, *, delayed: bool) -> None:
        delay = self._state.settings.latency_ms / 1000.0 if delayed else 0.0
        if delay <= 0:
            self._write_and_continue(payload)
            return
        self._busy = True
        self._loop.call_later(delay, self._write_and_continue, payload)

    def _write_and_continue(self, payload: bytes) -> None:
        self._busy = False
        if self._closed or self._transport is None:
            return
        self._transport.write(payload)
        if self._close_after:
            self._transport.close()
            self._closed = True
            return
        if self._buf:
            self._process()

    # -- SSE ----------------------------------------------------------------------------------

    def _start_stream(self, include_usage: bool) -> None:
        self._busy = True
        s = self._state.settings
        self._loop.call_later(
            max(s.latency_ms, 0.0) / 1000.0,
            self._stream_step,
            self._state.rendered,
            max(s.stream_chunks, 1),
            0,
            include_usage,
        )

    def _stream_step(self, r: Rendered, total: int, sent: int, include_usage: bool, cut: bool = False) -> None:
        t = self._transport
        if self._closed or t is None:
            self._busy = False
            return
        if sent == 0:
            t.write(r.stream_head + r.stream_chunk)
        elif sent < total:
            t.write(r.stream_chunk)
        elif cut:
            self._cut_now(b"")
            return
        else:
            t.write(r.stream_last + (r.stream_usage if include_usage else b"") + r.stream_done)
            self._state.count("_streams_completed")
            self._write_and_continue(b"")
            return
        self._loop.call_later(
            self._state.settings.chunk_interval_ms / 1000.0, self._stream_step, r, total, sent + 1, include_usage, cut
        )


def raise_fd_limit() -> None:
    """Lift the soft open-files limit to the hard one: hundreds of keep-alive sockets are normal here."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _watch_parent(loop: asyncio.AbstractEventLoop, parent: int, stop: asyncio.Event) -> None:
    # A suite that crashes must not leave mocks behind: exit when the parent that started us is gone.
    if os.getppid() != parent:
        stop.set()
        return
    loop.call_later(1.0, _watch_parent, loop, parent, stop)


async def serve(host: str, port: int, settings: MockSettings, parent_pid: int | None = None) -> None:
    """Serve until SIGTERM/SIGINT; prints ``listening on host:port`` once bound (port 0 allowed)."""
    loop = asyncio.get_running_loop()
    state = MockState(settings)
    server = await loop.create_server(lambda: MockProtocol(state), host, port, backlog=4096, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on {host}:{bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if parent_pid:
        _watch_parent(loop, parent_pid, stop)
    await stop.wait()
    server.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.mock_provider", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000, help="0 picks a free port (printed on stdout)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="fixed delay before answering / first chunk")
    p.add_argument("--response-tokens", type=int, default=40, help="completion size in tokens (words)")
    p.add_argument("--stream-chunks", type=int, default=20, help="content chunks per SSE stream")
    p.add_argument("--chunk-interval-ms", type=float, default=10.0, help="gap between SSE chunks")
    p.add_argument("--embedding-dim", type=int, default=256)
    p.add_argument("--parent-pid", type=int, default=None, help="exit when this parent process is gone")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("mock_provider: refusing to bind outside loopback", file=sys.stderr)
        return 2
    raise_fd_limit()
    settings = MockSettings(
        latency_ms=args.latency_ms,
        response_tokens=args.response_tokens,
        stream_chunks=args.stream_chunks,
        chunk_interval_ms=args.chunk_interval_ms,
        embedding_dim=args.embedding_dim,
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a gateway dependency on Linux
        uvloop = None
    with contextlib.suppress(KeyboardInterrupt):
        if uvloop is not None:
            uvloop.run(serve(args.host, args.port, settings, args.parent_pid))
        else:
            asyncio.run(serve(args.host, args.port, settings, args.parent_pid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
