"""Malformed input, unknown providers, oversized bodies, provider errors, the gateway headers on
every response, and a client that goes away mid-request."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp
import pytest
from fakes import FakeOpenAI, Reply
from harness import (
    Gateway,
    StartGateway,
    assert_error_shape,
    assert_gateway_headers,
    make_config,
    openai_provider,
    parse_sse,
)

MESSAGES = [{"role": "user", "content": "hello"}]
CHAT = "/v1/chat/completions"


async def post_raw(
    gateway: Gateway, path: str, data: bytes, content_type: str = "application/json"
) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.url(path), data=io.BytesIO(data), headers={"Content-Type": content_type}) as resp,
    ):
        raw = await resp.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body


async def post_json(gateway: Gateway, body: Any, path: str = CHAT) -> tuple[int, dict[str, str], Any]:
    return await post_raw(gateway, path, json.dumps(body).encode())


async def test_malformed_json_is_400(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    status, headers, body = await post_raw(gateway, CHAT, b'{"model": "openai/gpt-4o-mini", "messages": [')
    assert status == 400
    error = assert_error_shape(body, 400)
    assert error["type"] == "invalid_request_error"
    assert body["is_bifrost_error"] is True
    assert_gateway_headers(headers)
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": "openai/gpt-4o-mini"}, "messages"),
        ({"model": 5, "messages": MESSAGES}, "model"),
        ({"model": "openai/gpt-4o-mini", "messages": "hello"}, "messages"),
        ({"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "openai/gpt-4o-mini", "messages": MESSAGES, "fallbacks": "backup/x"}, "fallbacks"),
        (["not", "an", "object"], None),
    ],
    ids=["no-model", "no-messages", "model-int", "messages-str", "stream-str", "fallbacks-str", "array-body"],
)
async def test_invalid_chat_body_is_400(
    gateway: Gateway, fake_openai: FakeOpenAI, body: Any, field: str | None
) -> None:
    status, headers, answer = await post_json(gateway, body)
    assert status == 400, answer
    error = assert_error_shape(answer, 400)
    assert error["type"] == "invalid_request_error"
    if field is not None:
        assert field in (str(error["param"]) + error["message"]), f"the error should name {field!r}: {error}"
    assert_gateway_headers(headers)
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings", {"model": "openai/text-embedding-3-small"}),
        ("/v1/completions", {"model": "openai/gpt-3.5-turbo-instruct"}),
    ],
)
async def test_missing_input_is_400_on_other_endpoints(gateway: Gateway, path: str, body: Any) -> None:
    status, _, answer = await post_json(gateway, body, path)
    assert status == 400
    assert_error_shape(answer, 400)


async def test_unknown_provider_names_configured_ones(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    status, _, body = await post_json(gateway, {"model": "nosuchprovider/gpt-4o", "messages": MESSAGES})
    assert status == 400
    error = assert_error_shape(body, 400)
    assert "openai" in error["message"], f"the message should list the configured providers: {error['message']}"
    assert fake_openai.requests == []


async def test_model_without_provider_prefix_is_400(gateway: Gateway) -> None:
    status, _, body = await post_json(gateway, {"model": "gpt-4o-mini-but-no-provider", "messages": MESSAGES})
    assert status == 400
    assert "openai" in assert_error_shape(body, 400)["message"]


async def test_body_over_limit_is_413(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}, max_request_body_size_mb=1))
    big = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]}
    status, headers, body = await post_json(gateway, big)
    assert status == 413
    assert_error_shape(body, 413)
    assert_gateway_headers(headers)
    assert fake_openai.requests == []
    small = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x" * (512 * 1024)}]}
    status, _, _ = await post_json(gateway, small)
    assert status == 200, "a body under the limit is served"


async def test_provider_error_keeps_status_and_message(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(
        Reply.error(
            404,
            "The model `gpt-9` does not exist or you do not have access to it.",
            "invalid_request_error",
            code="model_not_found",
        )
    )
    status, headers, body = await post_json(gateway, {"model": "openai/gpt-9", "messages": MESSAGES})
    assert status == 404
    error = assert_error_shape(body, 404)
    assert "`gpt-9` does not exist" in error["message"]
    assert body["is_bifrost_error"] is False
    assert body["extra_fields"]["provider"] == "openai"
    assert_gateway_headers(headers)


async def test_upstream_auth_failure_is_reported(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url, keys=("sk-revoked",))}))
    status, _, body = await post_json(gateway, {"model": "openai/gpt-4o-mini", "messages": MESSAGES})
    assert status == 401
    assert "Incorrect API key" in assert_error_shape(body, 401)["message"]


async def test_gateway_headers_on_every_kind_of_response(gateway: Gateway) -> None:
    ok_status, ok_headers, _ = await post_json(gateway, {"model": "openai/gpt-4o-mini", "messages": MESSAGES})
    bad_status, bad_headers, _ = await post_raw(gateway, CHAT, b"{")
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.url("/v1/models")) as resp:
            models_headers = {k.lower(): v for k, v in resp.headers.items()}
        body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True}
        async with session.post(gateway.url(CHAT), json=body) as resp:
            stream_headers = {k.lower(): v for k, v in resp.headers.items()}
            await resp.read()
    assert (ok_status, bad_status) == (200, 400)
    ids = set()
    for headers in (ok_headers, bad_headers, models_headers, stream_headers):
        assert_gateway_headers(headers)
        ids.add(headers["x-request-id"])
    assert len(ids) == 4, "each response has its own request id"


async def test_client_disconnect_mid_stream(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(chunk_delay=0.5, content=" ".join(f"w{i}" for i in range(60))))
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True}
    async with aiohttp.ClientSession() as session:
        resp = await session.post(gateway.url(CHAT), json=body)
        request_id = resp.headers["x-request-id"]
        first = await resp.content.readline()
        assert first.startswith(b"data:")
        resp.close()  # hang up with the stream half-way
    assert await asyncio.to_thread(fake_openai.wait_for, "disconnects", 1, 20), (
        "the gateway should cancel the upstream stream when its client leaves"
    )
    assert fake_openai.counts.get("streams_completed", 0) == 0
    row = await asyncio.to_thread(gateway.log.row_for, request_id)
    assert row["status"] == 499
    assert row["stream"] == 1


async def test_client_disconnect_while_waiting_for_upstream(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(delay=30))
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(gateway.url(CHAT), json=body) as resp:
                await resp.read()
    assert await asyncio.to_thread(fake_openai.wait_for, "disconnects", 1, 20), (
        "the upstream call is cancelled when the client goes away"
    )
    rows = await asyncio.to_thread(gateway.log.wait_rows, 1, 15.0, "status = 499")
    assert len(rows) == 1
    assert rows[0]["stream"] == 0


async def test_health_has_gateway_headers(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session, session.get(gateway.url("/health")) as resp:
        assert resp.status == 200
        assert_gateway_headers(resp.headers)


async def test_stream_with_garbage_upstream_is_not_a_success(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.garbage())
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True}
    async with aiohttp.ClientSession() as session, session.post(gateway.url(CHAT), json=body) as resp:
        raw = await resp.read()
    if resp.status == 200:
        events = parse_sse(raw.decode(errors="replace"))
        assert not any(e.is_done for e in events), "garbage from upstream must not become a successful stream"
        assert events and events[-1].is_error
    else:
        assert resp.status >= 500
        assert_error_shape(json.loads(raw), resp.status)


async def test_known_but_unconfigured_provider_names_configured_ones(gateway: Gateway) -> None:
    status, _, body = await post_json(gateway, {"model": "groq/llama-3.1-8b-instant", "messages": MESSAGES})
    assert status == 400
    assert "openai" in assert_error_shape(body, 400)["message"]
