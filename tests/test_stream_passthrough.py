"""The streaming fast path (issue 10 item 5): an OpenAI-format provider streamed to an OpenAI client
with no chunk-observing hook gets the provider's own bytes, forwarded from the upstream socket's
callback (runtime/core/rawstream.py).

Against a scripted upstream on loopback (an aiohttp server that writes the given byte pieces with a
pause between them, so events arrive split across reads), through a real gateway process:
- the client's body is byte-identical to the provider's events (the usage chunk dropped only when the
  client did not ask for it), and the log row has the usage and the assembled text;
- an error event or a cut upstream ends the stream with an error event, never [DONE];
- a client that reads slowly gets every byte, and the upstream connection is reused afterwards;
- a client that leaves mid-stream is logged as 499 and the upstream connection is closed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from harness import Gateway, make_config, openai_provider
from harness.process import StartGateway

PAUSE = 0.02


def event(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def chunk(content: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-p1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
        "usage": None,
    }


USAGE = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
USAGE_EVENT = event({**chunk(""), "choices": [], "usage": USAGE})
BODY = event(chunk("pass ")) + event(chunk("through ")) + event(chunk("é✓", "stop"))
STREAM = BODY + USAGE_EVENT + b"data: [DONE]\n\n"


def pieces_of(data: bytes) -> list[bytes]:
    """Cut mid-event, mid-separator and mid-UTF-8 character: every boundary the scanner must handle."""
    cuts = [7, len(event(chunk("pass "))) - 1, len(event(chunk("pass "))) + 40, len(BODY) - 20, len(BODY) + 5]
    out, start = [], 0
    for cut in [*cuts, len(data)]:
        out.append(data[start:cut])
        start = cut
    return [p for p in out if p]


class Upstream:
    """A scripted OpenAI-compatible upstream: each request is answered by the next script (byte pieces
    with a pause between them; `None` as a piece aborts the connection). Counts connections."""

    def __init__(self) -> None:
        self.scripts: list[list[bytes | None]] = []
        self.peers: list[object] = []
        self.finished: list[bool] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        script = self.scripts.pop(0)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        done = False
        try:
            for piece in script:
                if piece is None:
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                await response.write(piece)
                await asyncio.sleep(PAUSE)
            await response.write_eof()
            done = True
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.finished.append(done)
        return response


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


REQUEST = {"model": "openai/gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def _gateway(start_gateway: StartGateway, upstream: Upstream, **client: Any) -> Gateway:
    return start_gateway(make_config({"openai": openai_provider(upstream.url)}, **client))


async def _stream(session: aiohttp.ClientSession, gateway: Gateway, include_usage: bool) -> tuple[str, bytes]:
    body: dict[str, Any] = {**REQUEST}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    async with session.post(gateway.url("/v1/chat/completions"), json=body) as resp:
        assert resp.status == 200
        return resp.headers["x-request-id"], await resp.read()


@pytest.mark.parametrize("include_usage", [True, False])
async def test_the_client_gets_the_providers_bytes_and_the_log_gets_usage_and_text(
    start_gateway: StartGateway, upstream: Upstream, include_usage: bool
) -> None:
    gateway = _gateway(start_gateway, upstream)
    upstream.scripts.append(pieces_of(STREAM))
    async with aiohttp.ClientSession() as session:
        rid, body = await _stream(session, gateway, include_usage)
    expected = STREAM if include_usage else BODY + b"data: [DONE]\n\n"
    assert body == expected
    row = await asyncio.to_thread(gateway.log.row_for, rid)
    assert row["status"] == 200 and row["stream"]
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (4, 3, 7)
    assert json.loads(row["output"])[0]["message"]["content"] == "pass through é✓"
    assert json.loads(row["output"])[0]["finish_reason"] == "stop"


async def test_an_upstream_error_event_ends_the_stream_with_an_error_event(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    gateway = _gateway(start_gateway, upstream)
    error = event({"error": {"message": "the model is overloaded", "type": "server_error"}})
    upstream.scripts.append([event(chunk("a")), event(chunk("b")) + error, event(chunk("never"))])
    async with aiohttp.ClientSession() as session:
        rid, body = await _stream(session, gateway, False)
    assert body.startswith(event(chunk("a")) + event(chunk("b")))
    assert b"never" not in body and b"[DONE]" not in body
    last = json.loads(body.rstrip(b"\n").rsplit(b"\n\n", 1)[-1][len(b"data: ") :])
    assert "overloaded" in last["error"]["message"]
    row = await asyncio.to_thread(gateway.log.row_for, rid)
    assert row["status"] == 502


async def test_a_cut_upstream_ends_the_stream_with_an_error_event(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    gateway = _gateway(start_gateway, upstream)
    upstream.scripts.append([event(chunk("a")), event(chunk("b")), None])
    async with aiohttp.ClientSession() as session:
        rid, body = await _stream(session, gateway, False)
    assert body.startswith(event(chunk("a")) + event(chunk("b")))
    assert b"[DONE]" not in body and b'"error"' in body
    row = await asyncio.to_thread(gateway.log.row_for, rid)
    assert row["status"] >= 500


async def test_a_slow_reader_gets_every_byte_and_the_upstream_socket_is_reused(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    gateway = _gateway(start_gateway, upstream)
    # ~6 MB in 24 reads: far over the socket buffers on both sides, so the gateway must pause the
    # upstream while the client lags, then resume it.
    big = [b"".join(event(chunk(f"{i:04d}" + "x" * 4000)) for _ in range(64)) for i in range(24)]
    upstream.scripts.append([*big, b"data: [DONE]\n\n"])
    upstream.scripts.append(pieces_of(STREAM))
    body = REQUEST
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.url("/v1/chat/completions"), json=body) as resp:
            received = bytearray()
            async for data in resp.content.iter_chunked(16 * 1024):
                received += data
                await asyncio.sleep(0.002)  # a client slower than the upstream
        assert bytes(received) == b"".join(big) + b"data: [DONE]\n\n"
        _rid, again = await _stream(session, gateway, True)
    assert again == STREAM
    assert len(upstream.peers) == 2 and upstream.peers[0] == upstream.peers[1], "the second stream reused the socket"


async def test_a_client_that_leaves_mid_stream_is_logged_499_and_the_upstream_is_closed(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    gateway = _gateway(start_gateway, upstream)
    upstream.scripts.append([event(chunk(str(i))) for i in range(400)])  # ~8 s at PAUSE
    body = REQUEST
    async with aiohttp.ClientSession() as session:
        resp = await session.post(gateway.url("/v1/chat/completions"), json=body)
        rid = resp.headers["x-request-id"]
        await resp.content.readany()
        resp.close()  # drop the connection mid-stream
    row = await asyncio.to_thread(gateway.log.row_for, rid)
    assert row["status"] == 499
    for _ in range(200):
        if upstream.finished:
            break
        await asyncio.sleep(0.05)
    assert upstream.finished == [False], "the upstream connection was closed, the stream never ran to its end"


# -- tolerant streams (issue 13 item 1), on the fast path and on the parsed path ------------------------
# The parsed path is taken by a client of another format (here Anthropic's), reading the same upstream.
ANTHROPIC_REQUEST = {
    "model": "openai/gpt-4o-mini",
    "stream": True,
    "max_tokens": 50,
    "messages": [{"role": "user", "content": "hi"}],
}


async def _stream_as(session: aiohttp.ClientSession, gateway: Gateway, ingress: str) -> tuple[str, bytes]:
    if ingress == "openai":
        return await _stream(session, gateway, True)
    async with session.post(gateway.url("/anthropic/v1/messages"), json=ANTHROPIC_REQUEST) as resp:
        assert resp.status == 200
        return resp.headers["x-request-id"], await resp.read()


def _text_of(ingress: str, body: bytes) -> str:
    text = []
    for raw in body.split(b"\n\n"):
        data = [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]
        if not data or data[0] == b"[DONE]":
            continue
        obj = json.loads(data[0])
        if ingress == "openai":
            text += [c["delta"].get("content") or "" for c in obj.get("choices", [])]
        elif obj.get("type") == "content_block_delta":
            text.append(obj["delta"].get("text", ""))
    return "".join(text)


@pytest.mark.parametrize("ingress", ["openai", "anthropic"])
async def test_a_stream_without_done_that_ended_after_its_finish_reason_is_a_success(
    start_gateway: StartGateway, upstream: Upstream, ingress: str
) -> None:
    gateway = _gateway(start_gateway, upstream)
    upstream.scripts.append(pieces_of(BODY + USAGE_EVENT))  # no [DONE], then a clean end of body
    async with aiohttp.ClientSession() as session:
        rid, body = await _stream_as(session, gateway, ingress)
    assert _text_of(ingress, body) == "pass through é✓"
    assert b'"error"' not in body
    if ingress == "openai":
        assert body == STREAM, "the client gets the provider's bytes and the [DONE] the provider left out"
    else:
        assert b"message_stop" in body
    row = await asyncio.to_thread(gateway.log.row_for, rid)
    assert row["status"] == 200 and row["total_tokens"] == 7


@pytest.mark.parametrize("ingress", ["openai", "anthropic"])
async def test_a_stream_that_ends_before_any_finish_reason_is_still_an_error(
    start_gateway: StartGateway, upstream: Upstream, ingress: str
) -> None:
    gateway = _gateway(start_gateway, upstream)
    upstream.scripts.append([event(chunk("a")), event(chunk("b"))])  # a clean end of body, but no finish reason
    async with aiohttp.ClientSession() as session:
        rid, body = await _stream_as(session, gateway, ingress)
    assert b'"error"' in body and b"[DONE]" not in body and b"message_stop" not in body
    row = await asyncio.to_thread(gateway.log.row_for, rid)
    assert row["status"] == 502


@pytest.mark.parametrize("ingress", ["openai", "anthropic"])
async def test_malformed_events_are_skipped_counted_on_the_log_row_and_the_stream_goes_on(
    start_gateway: StartGateway, upstream: Upstream, ingress: str
) -> None:
    gateway = _gateway(start_gateway, upstream)
    garbage = b"data: {truncated\n\n" + b"data: <html>oops</html>\n\n"
    upstream.scripts.append(
        [
            event(chunk("pass ")),
            garbage,
            event(chunk("through ")),
            event(chunk("é✓", "stop")),
            USAGE_EVENT + b"data: [DONE]\n\n",
        ]
    )
    async with aiohttp.ClientSession() as session:
        rid, body = await _stream_as(session, gateway, ingress)
    assert _text_of(ingress, body) == "pass through é✓"
    assert b"truncated" not in body and b"oops" not in body and b'"error"' not in body
    row = await asyncio.to_thread(gateway.log.row_for, rid)
    assert row["status"] == 200 and row["skipped_events"] == 2


# -- time to first token (issue 13 item 3) --------------------------------------------------------------
PINGS = [b": keep-alive\n\n"] * 150  # ~3 s of comments and no event: headers came, the model never answers


@pytest.mark.parametrize("ingress", ["openai", "anthropic"])
async def test_a_provider_that_sends_headers_and_keep_alives_but_no_event_hits_the_first_token_timeout(
    start_gateway: StartGateway, upstream: Upstream, ingress: str
) -> None:
    provider = openai_provider(upstream.url, first_token_timeout_in_seconds=0.5, stream_idle_timeout_in_seconds=60)
    gateway = start_gateway(make_config({"openai": provider}))
    upstream.scripts.append(PINGS)
    path, body = (
        ("/v1/chat/completions", REQUEST) if ingress == "openai" else ("/anthropic/v1/messages", ANTHROPIC_REQUEST)
    )
    async with aiohttp.ClientSession() as session, session.post(gateway.url(path), json=body) as resp:
        assert resp.status == 504, "no byte reached the client yet: a plain error answer"
        answer = await resp.json()
    assert "first_token_timeout_in_seconds" in json.dumps(answer)
    row = await asyncio.to_thread(gateway.log.row_for, resp.headers["x-request-id"])
    assert row["status"] == 504


async def test_the_first_token_timeout_fails_over_to_the_fallback(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    provider = openai_provider(upstream.url, first_token_timeout_in_seconds=0.5)
    gateway = start_gateway(make_config({"openai": provider}))
    upstream.scripts.append(PINGS)
    body = {**REQUEST, "fallbacks": ["mock/mock-chat"]}
    async with aiohttp.ClientSession() as session, session.post(gateway.url("/v1/chat/completions"), json=body) as resp:
        assert resp.status == 200
        data = await resp.read()
    assert b'"model":"mock-chat"' in data and data.endswith(b"data: [DONE]\n\n")


async def test_keep_alives_before_the_first_event_are_forwarded_with_it(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    gateway = _gateway(start_gateway, upstream)
    upstream.scripts.append([*PINGS[:3], *pieces_of(STREAM)])
    async with aiohttp.ClientSession() as session:
        _rid, body = await _stream(session, gateway, True)
    assert body == b"".join(PINGS[:3]) + STREAM
