"""GET /ws pushes each new log record as it is written, with trimmed content."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from harness import Gateway

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "live " + "x" * 5000}]}


async def _records(ws: aiohttp.ClientWebSocketResponse, want: int) -> list[dict]:
    got: list[dict] = []
    while len(got) < want:
        message = await ws.receive_json(timeout=10)
        if message["type"] == "logs":
            got.extend(message["items"])
    return got


async def test_live_feed(admin_gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(admin_gateway.url("/ws")) as ws:
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "hello" and hello["mode"] == "push"
        ids = []
        for _ in range(3):
            async with session.post(admin_gateway.url("/v1/chat/completions"), json=CHAT) as response:
                assert response.status == 200
                ids.append(response.headers["x-request-id"])
        records = await _records(ws, 3)
    assert [r["id"] for r in records] == ids
    first = records[0]
    assert first["provider"] == "openai" and first["status"] == 200 and first["stream"] is False
    assert first["input_truncated"] is True and len(first["input"]) <= 2000
    assert first["latency_us"] > 0 and "queue_wait_us" in first


async def test_live_feed_with_several_workers(start_gateway, fake_openai) -> None:  # type: ignore[no-untyped-def]
    from harness import make_config, openai_provider

    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}), args=("--workers", "2"))
    async with aiohttp.ClientSession() as session, session.ws_connect(gateway.url("/ws")) as ws:
        hello = await ws.receive_json(timeout=10)
        assert hello["mode"] == "poll"
        await asyncio.sleep(0.5)
        ids = set()
        for _ in range(24):  # fresh connections: both workers serve some of them
            async with (
                aiohttp.ClientSession() as one,
                one.post(gateway.url("/v1/chat/completions"), json=CHAT) as response,
            ):
                ids.add(response.headers["x-request-id"])
        records = await _records(ws, 24)
    assert {r["id"] for r in records} == ids
    assert len({i.split("-")[0] for i in ids}) == 2, "expected requests served by both workers"
    json.dumps(records)
