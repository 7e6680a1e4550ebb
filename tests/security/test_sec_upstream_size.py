"""Issue 9 item 3: non-streaming upstream answers of any size up to `client.max_upstream_response_mb`.

Before the fix the upstream client paused the socket once 1 MiB was buffered and only the stream reader
resumed it, so a non-streaming answer over ~1 MB stalled until the request timeout (504) and was then
retried (billed again). Here, through the gateway process and a real fake provider:

- a 100-input embeddings answer (~2.5 MB) and a 5 MB chat answer succeed, content-length and chunked,
  with exactly one upstream call;
- an answer above a small configured cap is a 502 naming the setting, not retried (one upstream call);
- a gzip bomb (small compressed, huge inflated) is a 502 and the gateway's peak RSS stays bounded.

The HTTP client's own framing cases (chunked, content-length, read-until-close, gzip and deflate, stream
back-pressure) are pinned against a tiny aiohttp server below.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fakes import FakeOpenAI, Reply
from harness import Gateway, StartGateway, make_config, openai_provider
from harness.process import CLIENT_KEY

from runtime.net import BodyTooLarge, HTTPClient

MIB = 1 << 20
NETWORK = {"default_request_timeout_in_seconds": 30, "max_retries": 2}


def post(gateway: Gateway, path: str, body: dict[str, Any], timeout: float = 90.0) -> tuple[int, bytes]:
    request = urllib.request.Request(
        gateway.url(path),
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {CLIENT_KEY}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def upstream_calls(fake: FakeOpenAI, path: str) -> int:
    return len(fake.requests_to(path))


def start(start_gateway: StartGateway, fake: FakeOpenAI, **client: Any) -> Gateway:
    return start_gateway(make_config({"openai": openai_provider(fake.url, **NETWORK)}, **client))


def test_big_embeddings_answer_succeeds_once(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start(start_gateway, fake_openai)
    inputs = [f"document number {i}" for i in range(100)]
    status, raw = post(
        gateway, "/v1/embeddings", {"model": "openai/text-embedding-3-small", "input": inputs, "dimensions": 3072}
    )
    assert status == 200, raw[:300]
    assert len(raw) > 2 * MIB, f"the answer should be over 2 MB to exercise the bug, got {len(raw)}"
    data = json.loads(raw)["data"]
    assert [d["index"] for d in data] == list(range(100)) and all(len(d["embedding"]) == 3072 for d in data)
    assert upstream_calls(fake_openai, "/embeddings") == 1


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_five_mb_chat_answer_succeeds_once(start_gateway: StartGateway, fake_openai: FakeOpenAI, framing: str) -> None:
    gateway = start(start_gateway, fake_openai)
    content = "lorem ipsum dolor " * (5 * MIB // 18)
    # chunk_delay makes the fake send headers first and the body in parts: Transfer-Encoding: chunked.
    fake_openai.enqueue(Reply(content=content, chunk_delay=0.05 if framing == "chunked" else 0.0))
    status, raw = post(
        gateway, "/v1/chat/completions", {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    )
    assert status == 200, raw[:300]
    assert json.loads(raw)["choices"][0]["message"]["content"] == content
    assert upstream_calls(fake_openai, "/chat/completions") == 1


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_answer_over_the_cap_is_502_and_not_retried(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, framing: str
) -> None:
    gateway = start(start_gateway, fake_openai, max_upstream_response_mb=1)
    content = "x" * (3 * MIB)
    fake_openai.always(Reply(content=content, chunk_delay=0.05 if framing == "chunked" else 0.0))
    status, raw = post(
        gateway, "/v1/chat/completions", {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    )
    assert status == 502, raw[:300]
    error = json.loads(raw)["error"]
    assert "client.max_upstream_response_mb" in error["message"]
    assert error["code"] == "upstream_response_too_large"
    assert upstream_calls(fake_openai, "/chat/completions") == 1, "an oversized answer must not be asked for again"


def gzip_bomb(inflated: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MIB)
    parts = [packer.compress(block) for _ in range(inflated // MIB)]
    parts.append(packer.flush())
    return b"".join(parts)


def peak_rss_mb(pid: int) -> float:
    """Highest peak RSS (VmHWM) of the process and its children (workers), in MB."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    peak = 0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak / 1024


def test_gzip_bomb_is_502_with_bounded_memory(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start(start_gateway, fake_openai)  # the default cap, 64 MB
    bomb = gzip_bomb(1024 * MIB)  # ~1 MB on the wire, 1 GB inflated
    before = peak_rss_mb(gateway.proc.pid)
    fake_openai.always(Reply(raw=bomb, headers={"Content-Encoding": "gzip"}))
    status, raw = post(
        gateway, "/v1/chat/completions", {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    )
    after = peak_rss_mb(gateway.proc.pid)
    assert status == 502, raw[:300]
    assert "client.max_upstream_response_mb" in json.loads(raw)["error"]["message"]
    assert upstream_calls(fake_openai, "/chat/completions") == 1
    # The cap is 64 MB; inflating the whole bomb would take 1 GB. Generous margin for a noisy machine.
    assert after - before < 300, f"peak RSS grew from {before:.0f} MB to {after:.0f} MB"
    print(f"gateway peak RSS {before:.0f} MB -> {after:.0f} MB during a 1 GB gzip bomb")


# ---- the HTTP client against a tiny server: every framing, inflation, stream back-pressure ----------------


BODY = web.AppKey("body", bytes)
HEADERS = web.AppKey("headers", dict)


def _chunked_body(body: bytes) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        out = web.StreamResponse(headers=dict(request.app[HEADERS]))
        out.enable_chunked_encoding()
        await out.prepare(request)
        for i in range(0, len(body), 256 * 1024):
            await out.write(body[i : i + 256 * 1024])
        await out.write_eof()
        return out

    return handler


async def _close_delimited(request: web.Request) -> web.StreamResponse:
    # HTTP/1.0-style: no length, no chunking; the body ends when the connection closes.
    body: bytes = request.app[BODY]
    transport = request.transport
    assert transport is not None
    head = "".join(f"{k}: {v}\r\n" for k, v in request.app[HEADERS].items())
    transport.write(f"HTTP/1.1 200 OK\r\nConnection: close\r\n{head}\r\n".encode())
    for i in range(0, len(body), 256 * 1024):
        transport.write(body[i : i + 256 * 1024])
        await asyncio.sleep(0)
    transport.close()
    await asyncio.sleep(0.1)
    return web.Response()


async def _length(request: web.Request) -> web.Response:
    return web.Response(body=request.app[BODY], headers=request.app[HEADERS])


FRAMINGS: dict[str, Callable[[web.Request], Any]] = {"content-length": _length, "close": _close_delimited}


async def _serve(body: bytes, framing: str, headers: dict[str, str] | None = None) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app[BODY] = body
    app[HEADERS] = headers or {}
    handler = _chunked_body(body) if framing == "chunked" else FRAMINGS[framing]
    app.router.add_post("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/"


async def _fetch(body: bytes, framing: str, max_body: int, headers: dict[str, str] | None = None) -> bytes:
    runner, url = await _serve(body, framing, headers)
    client = HTTPClient(max_body=max_body)
    try:
        async with asyncio.timeout(30):
            response = await client.request("POST", url, {}, b"{}", connect_timeout=5)
            try:
                return await response.read()
            finally:
                response.close()
    finally:
        await client.close()
        await runner.cleanup()


@pytest.mark.parametrize("framing", ["content-length", "chunked", "close"])
def test_client_reads_bodies_far_over_the_pause_mark(framing: str) -> None:
    body = os.urandom(6 * MIB)
    assert asyncio.run(_fetch(body, framing, 64 * MIB)) == body


@pytest.mark.parametrize("framing", ["content-length", "chunked", "close"])
def test_client_refuses_bodies_over_its_cap(framing: str) -> None:
    with pytest.raises(BodyTooLarge):
        asyncio.run(_fetch(os.urandom(3 * MIB), framing, 2 * MIB))


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_client_caps_inflation(encoding: str, framing: str) -> None:
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    small = packer.compress(b"a" * (3 * MIB)) + packer.flush()
    headers = {"Content-Encoding": encoding}
    with pytest.raises(BodyTooLarge):
        asyncio.run(_fetch(small, framing, 2 * MIB, headers))
    # Under the cap the same encoding inflates exactly.
    assert asyncio.run(_fetch(small, framing, 4 * MIB, headers)) == b"a" * (3 * MIB)


async def _stream_pauses() -> tuple[bool, int]:
    runner, url = await _serve(os.urandom(8 * MIB), "chunked")
    client = HTTPClient(max_body=64 * MIB)
    try:
        response = await client.request("POST", url, {}, b"{}", connect_timeout=5, read_timeout=10)
        first = await response.readany()  # a stream reader: back-pressure applies
        await asyncio.sleep(0.5)  # a slow reader: the client must pause rather than buffer all 8 MB
        conn = response._conn
        paused, held = conn._paused, response._buffered
        total = len(first)
        while data := await response.readany():
            total += len(data)
        response.release()
        return paused and held < 4 * MIB, total
    finally:
        await client.close()
        await runner.cleanup()


def test_streams_keep_their_back_pressure() -> None:
    paused, total = asyncio.run(_stream_pauses())
    assert paused, "a stream whose reader lags must pause the socket"
    assert total == 8 * MIB


async def _stream_bomb() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join(packer.compress(bytes(MIB)) for _ in range(64)) + packer.flush()
    runner, url = await _serve(bomb, "chunked", {"Content-Encoding": "gzip"})
    client = HTTPClient(max_body=8 * MIB)
    try:
        response = await client.request("POST", url, {}, b"{}", connect_timeout=5, read_timeout=10)
        try:
            await response.readany()
            await asyncio.sleep(0.5)  # the reader lags: what it has not read must stay under the cap
            while await response.readany():
                pass
        finally:
            response.close()
    finally:
        await client.close()
        await runner.cleanup()


def test_stream_reader_that_lags_on_a_gzip_bomb_is_capped() -> None:
    # A stream has no total cap (it is read as it comes), but what it holds unread is bounded by the same
    # cap: the whole 64 MiB bomb is ~64 KB on the wire, one socket read, which must not inflate past 8 MiB.
    with pytest.raises(BodyTooLarge):
        asyncio.run(_stream_bomb())
