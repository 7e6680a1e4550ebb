"""The upstream client's own errors and its one retry (runtime/net/), against raw asyncio servers on loopback.

- The stale keep-alive race: a request written on a reused idle socket that the server closes before
  answering is re-sent once on a fresh connection; never when the connection was fresh, never once a
  response byte arrived.
- A wait for a free socket (connection_pool_limit[_per_host]) is the client's PoolTimeout, mapped by
  type to the gateway's ConnectionPoolTimeout — not the provider lane's QueueTimeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from runtime.core.upstream import TRANSPORT_ERROR_MAP, transport_error
from runtime.errors import (
    ConnectionPoolTimeout,
    QueueTimeout,
    UpstreamGarbage,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamUnreachable,
)
from runtime.net import (
    BodyTooLarge,
    ConnectError,
    ConnectTimeout,
    HTTPClient,
    InvalidHeader,
    NetError,
    PoolTimeout,
    ProtocolError,
    ReadTimeout,
    ServerDisconnected,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

CLOSE = b""  # the script's answer meaning: close the socket without a byte of answer

# (connection number from 1, request number on it from 1) -> (bytes to answer with, keep the socket open).
Script = Callable[[int, int], tuple[bytes, bool]]


class RawServer:
    """A bare HTTP/1.1 server: reads each request head + Content-Length body, then follows `script`."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[tuple[int, int]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            for count in range(1, 1000):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed the connection
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests.append((number, count))
                answer, keep_open = self.script(number, count)
                if answer:
                    writer.write(answer)
                    await writer.drain()
                if not keep_open:
                    return  # the request's bytes arrived; close after `answer` (maybe nothing)
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Script], Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def make(script: Script) -> RawServer:
        server = RawServer(script)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


async def post(client: HTTPClient, url: str) -> bytes:
    # read_timeout only bounds a hang of a broken test; nothing here depends on time.
    response = await client.request(
        "POST", url, {"Content-Type": "application/json"}, b"{}", connect_timeout=10.0, read_timeout=30.0
    )
    assert response.status == 200
    return await response.read()


async def test_stale_keepalive_socket_is_retried_once_on_a_fresh_connection(
    raw_server: Callable[[Script], Awaitable[RawServer]],
) -> None:
    # Connection 1 answers its first request with keep-alive, then closes the idle socket as soon as the
    # next request's bytes arrive, without answering: the server-side keep-alive timeout race.
    server = await raw_server(lambda conn, count: (OK, True) if conn > 1 or count == 1 else (CLOSE, False))
    client = HTTPClient()
    try:
        assert await post(client, server.url) == b"ok"
        assert await post(client, server.url) == b"ok", "the second request succeeds on a new connection"
    finally:
        await client.close()
    assert server.connections == 2, "exactly one new connection: the retry, once"
    assert server.requests == [(1, 1), (1, 2), (2, 1)]
    assert client.stale_retries == 1


async def test_fresh_connection_that_dies_is_not_retried(
    raw_server: Callable[[Script], Awaitable[RawServer]],
) -> None:
    # A fresh connection's server may have read and acted on the request before dying: surface it.
    server = await raw_server(lambda conn, count: (CLOSE, False))
    client = HTTPClient()
    try:
        with pytest.raises(ServerDisconnected) as info:
            await post(client, server.url)
    finally:
        await client.close()
    assert not info.value.got_bytes
    assert server.connections == 1, "no second connection: a fresh socket's failure is not retried"
    assert client.stale_retries == 0
    assert isinstance(transport_error(info.value, "openai", "response headers", 5.0), UpstreamUnreachable)


async def test_reused_socket_that_dies_after_a_response_byte_is_not_retried(
    raw_server: Callable[[Script], Awaitable[RawServer]],
) -> None:
    # The second request on the reused socket gets the start of a status line, then the socket closes:
    # the server did read that request, so repeating it could bill it twice.
    server = await raw_server(lambda conn, count: (OK, True) if count == 1 else (b"HTTP/1.1 200 OK\r\n", False))
    client = HTTPClient()
    try:
        assert await post(client, server.url) == b"ok"
        with pytest.raises(ServerDisconnected) as info:
            await post(client, server.url)
    finally:
        await client.close()
    assert info.value.got_bytes
    assert server.connections == 1
    assert client.stale_retries == 0


@pytest.mark.parametrize(
    ("limits", "setting"),
    [({"limit_per_host": 1}, "connection_pool_limit_per_host"), ({"limit": 1}, "connection_pool_limit")],
)
async def test_waiting_for_a_free_socket_is_a_pool_timeout_not_a_queue_timeout(
    raw_server: Callable[[Script], Awaitable[RawServer]], limits: dict[str, int], setting: str
) -> None:
    server = await raw_server(lambda conn, count: (OK, True))
    client = HTTPClient(**limits)
    try:
        # Headers read, body not: the one socket stays busy with this response.
        held = await client.request("POST", server.url, {}, b"{}", connect_timeout=10.0, read_timeout=30.0)
        with pytest.raises(PoolTimeout) as info:
            await client.request("POST", server.url, {}, b"{}", connect_timeout=0.05)
        assert setting in str(info.value)
        assert await held.read() == b"ok"
        # The slot came back with the body: the next request gets the socket.
        assert await post(client, server.url) == b"ok"
    finally:
        await client.close()
    err = transport_error(info.value, "openai", "response headers", 5.0)
    assert isinstance(err, ConnectionPoolTimeout) and not isinstance(err, QueueTimeout)
    assert (err.status, err.code) == (504, "pool_timeout")
    assert setting in err.message and "provider 'openai'" in err.message
    assert server.connections == 1


@pytest.mark.parametrize(
    ("exc", "expected", "code"),
    [
        (ConnectError("cannot connect"), UpstreamUnreachable, "connection_error"),
        (ConnectTimeout("slow connect", 1.0), UpstreamTimeout, "connect_timeout"),
        (ReadTimeout("no data", 1.0), UpstreamTimeout, "first_byte_timeout"),
        (TimeoutError(), UpstreamTimeout, "first_byte_timeout"),
        (PoolTimeout("busy", 1.0), ConnectionPoolTimeout, "pool_timeout"),
        # A disconnect is unreachable whatever its message says: mapped by class, never by text.
        (ServerDisconnected("gone (no 'closed the connection' words)"), UpstreamUnreachable, "connection_error"),
        (ProtocolError("upstream closed the connection, says this text"), UpstreamGarbage, "bad_response"),
        (BodyTooLarge(1 << 20), UpstreamTooLarge, "upstream_response_too_large"),
        (InvalidHeader("header 'x' contains a line break"), UpstreamGarbage, "bad_response"),
        (NetError("other"), UpstreamGarbage, "bad_response"),
        (ConnectionResetError(104, "reset"), UpstreamUnreachable, "connection_error"),
    ],
)
def test_net_errors_map_to_the_gateway_tree_by_type(exc: BaseException, expected: type, code: str) -> None:
    err = transport_error(exc, "openai", "response headers", 2.0)
    assert type(err) is expected
    assert err.code == code


def test_every_net_error_class_has_a_row() -> None:
    import runtime.net.errors as net_errors

    classes = [getattr(net_errors, name) for name in net_errors.__all__]
    assert all(cls in TRANSPORT_ERROR_MAP for cls in classes), "each client error is mapped explicitly"


# -- sink mode and release_when_done (the streaming fast path, issue 10 item 5) -------------------------

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk_of(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class ScriptedServer:
    """Answers each request with a list of (delay_s, bytes) writes; counts connections."""

    def __init__(self, writes: list[list[tuple[float, bytes]]]) -> None:
        self.writes = writes
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/chat/completions"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.writes:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                    await reader.readexactly(2)  # the client's b"{}" body
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                for delay, data in self.writes.pop(0):
                    await asyncio.sleep(delay)
                    writer.write(data)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def open_stream(client: HTTPClient, url: str):  # type: ignore[no-untyped-def]
    return await client.request(
        "POST", url, {"Content-Type": "application/json"}, b"{}", connect_timeout=10.0, read_timeout=30.0
    )


async def test_a_sink_gets_every_body_piece_from_the_socket_callback_and_the_socket_is_reused() -> None:
    pieces = [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"]
    body = [(0.0, CHUNKED_HEAD)] + [(0.02, chunk_of(p)) for p in pieces] + [(0.02, b"0\r\n\r\n")]
    server = ScriptedServer([body, [(0.0, OK)]])
    url = await server.start()
    client = HTTPClient()
    try:
        response = await open_stream(client, url)
        got: list[bytes] = [response.attach_sink(lambda data: got.append(data))]
        while not response.finished and response.error is None:
            await response.wait()
        response.detach_sink()
        response.release()
        assert b"".join(got) == b"".join(pieces)
        assert await post(client, url) == b"ok"
    finally:
        await client.close()
        await server.stop()
    assert server.connections == 1


@pytest.mark.parametrize("terminator_delay", [0.2, None])
async def test_a_reader_that_leaves_before_the_body_end_keeps_the_socket_only_if_the_end_comes(
    terminator_delay: float | None,
) -> None:
    body = [(0.0, CHUNKED_HEAD + chunk_of(b"data: [DONE]\n\n"))]
    if terminator_delay is not None:
        body.append((terminator_delay, b"0\r\n\r\n"))
    server = ScriptedServer([body, [(0.0, OK)]])
    url = await server.start()
    client = HTTPClient()
    try:
        response = await open_stream(client, url)
        assert await response.readany() == b"data: [DONE]\n\n"
        response.release_when_done(0.5)  # the reader has its end marker; the body's end is still due
        await asyncio.sleep(0.8)
        assert await post(client, url) == b"ok"
    finally:
        await client.close()
        await server.stop()
    # With the terminator, the connection went back to the pool; without it, it was closed after 0.5 s.
    assert server.connections == (1 if terminator_delay is not None else 2)


async def test_a_connection_paused_by_back_pressure_is_resumed_when_it_goes_back_to_the_pool() -> None:
    server = ScriptedServer([[(0.0, CHUNKED_HEAD + chunk_of(b"x" * 100) + b"0\r\n\r\n")], [(0.0, OK)]])
    url = await server.start()
    client = HTTPClient()
    try:
        response = await open_stream(client, url)
        while not response.finished:
            await response.readany()
        response.pause_reading()  # as a sink does for a slow client, just as the body ended
        response.release()
        assert await post(client, url) == b"ok", "a socket left paused would never read this answer"
    finally:
        await client.close()
        await server.stop()
    assert server.connections == 1


@pytest.mark.parametrize("length", [b"+2", b"0_2", b"2 2", b"\xb2", b"-2"])
async def test_a_content_length_that_is_not_plain_digits_is_a_protocol_error(
    raw_server: Callable[[Script], Awaitable[RawServer]], length: bytes
) -> None:
    """Python's int() reads "+2", "0_2" and a superscript two as numbers; a body length must be digits only."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + length + b"\r\n\r\nok"
    server = await raw_server(lambda _c, _r: (answer, False))
    client = HTTPClient()
    try:
        with pytest.raises(ProtocolError, match="Content-Length"):
            await post(client, server.url)
    finally:
        await client.close()


async def test_repeated_headers_are_joined_and_names_are_case_insensitive(
    raw_server: Callable[[Script], Awaitable[RawServer]],
) -> None:
    answer = b"HTTP/1.1 200 OK\r\nX-Thing: a\r\nx-thing: b\r\nContent-Length: 2\r\n\r\nok"
    server = await raw_server(lambda _c, _r: (answer, True))
    client = HTTPClient()
    try:
        response = await client.request("POST", server.url, {}, b"{}", connect_timeout=10.0, read_timeout=30.0)
        assert response.headers["X-THING"] == "a, b" and response.headers.get("x-thing") == "a, b"
        assert "X-Thing" in response.headers and response.reason == "OK"
        assert await response.read() == b"ok"
    finally:
        await client.close()
