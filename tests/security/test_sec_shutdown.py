"""Issue 9 item 7: shutdown ends within the grace, streams included; streams still running are ended
with an error event in the client's format and logged as "gateway shut down" (503 gateway_shutdown),
never as 499 "client disconnected". A short request in flight at SIGTERM still completes.

Before the fix a never-ending stream held the worker for twice the grace (aiohttp waits the timeout
once for the handler and once more after cancelling it) and the client got no error event.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import pytest
from fakes import FakeOpenAI, Reply
from harness import Gateway, StartGateway, make_config, openai_provider

GRACE_S = 3.0
BOUND_S = GRACE_S + 10.0  # the bound with a generous margin for a busy machine
NEVER_ENDING = Reply(stall_after=2, stall=3600)  # two events, then nothing for an hour
MESSAGES = [{"role": "user", "content": "tell me a story that never ends"}]

ROUTES: dict[str, tuple[str, dict[str, Any], bytes]] = {
    # ingress -> (path, body, what its error event looks like on the wire)
    "openai": (
        "/v1/chat/completions",
        {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True},
        b'"type":"gateway_shutdown"',
    ),
    "anthropic": (
        "/anthropic/v1/messages",
        {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "max_tokens": 50, "stream": True},
        b"event: error",
    ),
}


def _gateway(start_gateway: StartGateway, fake: FakeOpenAI, workers: int = 1) -> Gateway:
    config = make_config({"openai": openai_provider(fake.url)}, shutdown_grace_in_seconds=GRACE_S)
    return start_gateway(config, args=("--workers", str(workers)) if workers > 1 else ())


async def _open_stream(session: aiohttp.ClientSession, gateway: Gateway, ingress: str) -> aiohttp.ClientResponse:
    path, body, _ = ROUTES[ingress]
    response = await session.post(gateway.url(path), json=body)
    assert response.status == 200, await response.text()
    assert await response.content.readany(), "the stream's first events"
    return response


async def _read_rest(response: aiohttp.ClientResponse) -> bytes:
    out = b""
    try:
        async for chunk in response.content.iter_any():
            out += chunk
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        out += f"\n<cut: {exc!r}>".encode()
    return out


async def _stop(gateway: Gateway) -> tuple[int, float]:
    started = time.monotonic()
    code = await asyncio.to_thread(gateway.stop, signal.SIGTERM, BOUND_S + 20)
    return code, time.monotonic() - started


@pytest.mark.parametrize("ingress", sorted(ROUTES))
async def test_never_ending_stream_is_cut_with_an_error_event_within_the_grace(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, ingress: str
) -> None:
    fake_openai.always(NEVER_ENDING)
    gateway = _gateway(start_gateway, fake_openai)
    async with aiohttp.ClientSession() as session:
        response = await _open_stream(session, gateway, ingress)
        rid = response.headers["x-request-id"]
        stopping = asyncio.create_task(_stop(gateway))
        tail = await _read_rest(response)
        code, seconds = await stopping
    assert code == 0, gateway.output()
    assert seconds < BOUND_S, f"stopping took {seconds:.1f}s with a {GRACE_S}s grace"
    assert seconds >= GRACE_S - 0.5, f"the stream was cut after {seconds:.1f}s, before the {GRACE_S}s grace"
    marker = ROUTES[ingress][2]
    assert marker in tail, f"no error event at the end of the stream: {tail[-400:]!r}"
    assert b"gateway_shutdown" in tail or b"shutting down" in tail, tail[-400:]
    assert b"[DONE]" not in tail and b"message_stop" not in tail, "a cut stream must not look complete"
    row = gateway.log.row_for(rid)
    assert row["status"] == 503 and row["error_type"] == "gateway_shutdown", row
    assert "shutting down" in row["error"]


async def test_short_request_in_flight_at_sigterm_completes(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = _gateway(start_gateway, fake_openai)
    fake_openai.enqueue(Reply(delay=1.0))  # answered 1 s after it arrives: SIGTERM lands in between
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES}
    async with aiohttp.ClientSession() as session:
        request = asyncio.create_task(session.post(gateway.url("/v1/chat/completions"), json=body))
        deadline = time.monotonic() + 10
        while not fake_openai.requests and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert fake_openai.requests, "the request did not reach the provider"
        stopping = asyncio.create_task(_stop(gateway))
        response = await request
        answer = await response.json()
        code, seconds = await stopping
    assert response.status == 200, answer
    assert answer["choices"][0]["message"]["content"]
    assert code == 0 and seconds < BOUND_S, (code, seconds)
    assert gateway.log.row_for(response.headers["x-request-id"])["status"] == 200


@pytest.mark.slow
async def test_two_workers_stop_within_the_same_bound(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.always(NEVER_ENDING)
    gateway = _gateway(start_gateway, fake_openai, workers=2)
    async with aiohttp.ClientSession() as session:
        # Several streams, so that (most likely) both workers hold one.
        responses = [await _open_stream(session, gateway, "openai") for _ in range(4)]
        stopping = asyncio.create_task(_stop(gateway))
        tails = await asyncio.gather(*(_read_rest(r) for r in responses))
        code, seconds = await stopping
    assert code == 0, gateway.output()
    assert seconds < BOUND_S, f"stopping two workers took {seconds:.1f}s with a {GRACE_S}s grace"
    for tail in tails:
        assert b'"type":"gateway_shutdown"' in tail, tail[-400:]
    rows = gateway.log.rows()
    assert [r["status"] for r in rows] == [503] * 4, rows
