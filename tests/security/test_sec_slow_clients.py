"""Slow and stalled clients hold nothing without bound (issue 9 item 6, the client side).

- a request head trickled byte by byte is cut after `client.header_read_timeout_in_seconds`, even though
  bytes keep arriving (Slowloris);
- an idle keep-alive connection is closed after `client.keepalive_idle_timeout_in_seconds`;
- a body that stalls mid-way is answered 408 (JSON, `code: request_timeout`) after
  `client.body_read_timeout_in_seconds`, and what it held is given back;
- bodies being read at once are capped by `client.max_request_bodies_in_flight_mb`: beyond it a request
  gets 503 JSON (`code: request_bodies_in_flight`) before its body is read, while a normal request still
  works; the gateway's RSS stays bounded (5 x 90 MB stalled bodies).

Timeouts are set small in config.json; assertions use generous bounds (the machine is shared).
"""

from __future__ import annotations

import asyncio
import json
import time

import psutil
from fakes import FakeOpenAI
from harness import Gateway, StartGateway, make_config, openai_provider

MB = 1024 * 1024
CHAT = b'{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'


def _start(start_gateway: StartGateway, fake_openai: FakeOpenAI, **client: object) -> Gateway:
    return start_gateway(make_config({"openai": openai_provider(fake_openai.url)}, **client))


async def _open(gateway: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", gateway.port)


def _post_head(gateway: Gateway, length: int) -> bytes:
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer sk-client\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def _read_response(reader: asyncio.StreamReader, bound: float) -> tuple[int, bytes]:
    async def read() -> tuple[int, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return status, body

    return await asyncio.wait_for(read(), bound)


async def _closed_within(reader: asyncio.StreamReader, bound: float) -> bool:
    """True once the gateway closes the connection (EOF or reset) within `bound` seconds."""
    deadline = time.monotonic() + bound
    try:
        while time.monotonic() < deadline:
            data = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - time.monotonic()))
            if not data:
                return True
    except (ConnectionError, asyncio.IncompleteReadError):
        return True
    except TimeoutError:
        return False
    return False


# ------------------------------------------------------------------------------------- header trickle


async def test_trickled_request_heads_are_cut_after_the_header_timeout(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = _start(start_gateway, fake_openai, header_read_timeout_in_seconds=2, keepalive_idle_timeout_in_seconds=60)
    count, bound = 30, 15.0

    async def trickle() -> tuple[float, int]:
        reader, writer = await _open(gateway)
        started, sent = time.monotonic(), 0
        head = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\nX-Slow: ".encode()
        try:
            writer.write(head[:10])
            while time.monotonic() - started < bound:
                writer.write(b"a")  # one byte a second: never idle, never complete
                await writer.drain()
                sent += 1
                if await _closed_within(reader, 1.0):
                    return time.monotonic() - started, sent
            return float("inf"), sent
        except ConnectionError:
            return time.monotonic() - started, sent
        finally:
            writer.close()

    results = await asyncio.gather(*(trickle() for _ in range(count)))
    closed_after = [elapsed for elapsed, _ in results]
    assert max(closed_after) < bound, f"connections still open after {bound}s: {closed_after}"
    assert min(sent for _, sent in results) >= 2  # they were trickling (not idle) when cut
    # and the gateway still serves normal requests
    reader, writer = await _open(gateway)
    writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n\r\n".encode())
    status, _ = await _read_response(reader, 10)
    writer.close()
    assert status == 200


async def test_complete_heads_are_not_cut(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    """The head deadline is for the head only: a request that is slow to be answered is not cut."""
    gateway = _start(start_gateway, fake_openai, header_read_timeout_in_seconds=1, keepalive_idle_timeout_in_seconds=30)
    reader, writer = await _open(gateway)
    for _ in range(3):  # keep-alive: three requests on one connection, 1.5 s apart (longer than the head bound)
        writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n\r\n".encode())
        status, _ = await _read_response(reader, 10)
        assert status == 200
        await asyncio.sleep(1.5)
    writer.close()


# ------------------------------------------------------------------------------------- idle keep-alive


async def test_idle_keepalive_connection_is_closed(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = _start(start_gateway, fake_openai, keepalive_idle_timeout_in_seconds=2)
    reader, writer = await _open(gateway)
    writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n\r\n".encode())
    status, _ = await _read_response(reader, 10)
    assert status == 200
    assert await _closed_within(reader, 15.0)
    writer.close()


# ------------------------------------------------------------------------------------- stalled body


async def test_stalled_body_is_answered_408(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = _start(start_gateway, fake_openai, body_read_timeout_in_seconds=2)
    reader, writer = await _open(gateway)
    writer.write(_post_head(gateway, 1_000_000) + b'{"model": "openai/gpt-4o-mini", "messages": [')
    await writer.drain()
    status, body = await _read_response(reader, 15)  # then nothing more is sent
    writer.close()
    assert status == 408
    error = json.loads(body)["error"]
    assert error["code"] == "request_timeout"
    assert "client.body_read_timeout_in_seconds" in error["message"]
    assert fake_openai.requests == []  # nothing reached the provider


# ------------------------------------------------------------------------------------- bodies in flight


def _rss(gateway: Gateway) -> int:
    return int(psutil.Process(gateway.proc.pid).memory_info().rss)


async def _stall_half(gateway: Gateway, size: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a POST of `size` bytes, send half the body, stop."""
    reader, writer = await _open(gateway)
    writer.write(_post_head(gateway, size))
    piece = b"x" * MB
    for _ in range(size // 2 // MB):
        writer.write(piece)
        await writer.drain()
    return reader, writer


async def test_bodies_in_flight_are_capped_and_memory_is_given_back(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = _start(start_gateway, fake_openai, max_request_bodies_in_flight_mb=128, body_read_timeout_in_seconds=10)
    big = 90 * MB
    rss_before = _rss(gateway)

    # One 90 MB body stalls half-way; four more arrive while it holds 90 of the 128 MB.
    first = await _stall_half(gateway, big)
    refused = []
    for _ in range(4):
        reader, writer = await _open(gateway)
        writer.write(_post_head(gateway, big))
        await writer.drain()
        refused.append(await _read_response(reader, 15))  # answered before any body byte is sent
        writer.close()
    for status, body in refused:
        assert status == 503
        error = json.loads(body)["error"]
        assert error["code"] == "request_bodies_in_flight"
        assert "client.max_request_bodies_in_flight_mb" in error["message"]

    # A normal request still gets through meanwhile.
    reader, writer = await _open(gateway)
    writer.write(_post_head(gateway, len(CHAT)) + CHAT)
    status, body = await _read_response(reader, 30)
    writer.close()
    assert status == 200, body

    rss_stalled = _rss(gateway)
    assert rss_stalled - rss_before < 128 * MB, (rss_before, rss_stalled)

    # The stalled body is answered 408 and gives its reservation back: a second one is accepted.
    status, _ = await _read_response(first[0], 30)
    first[1].close()
    assert status == 408
    second = await _stall_half(gateway, big)
    status, _ = await _read_response(second[0], 30)
    second[1].close()
    assert status == 408  # accepted (not 503), read, then timed out
    # What the first body held was released and reused, not kept on top.
    assert _rss(gateway) - rss_stalled < 64 * MB, (rss_before, rss_stalled, _rss(gateway))
