"""Each upstream timeout: connect (nothing listens), time to first byte, idle between stream chunks,
and total. Bounds are generous; the tests check what happened, not how fast."""

from __future__ import annotations

import json

import aiohttp
import openai
import pytest
from fakes import FakeOpenAI, Reply
from harness import (
    Gateway,
    StartGateway,
    assert_error_shape,
    assert_gateway_headers,
    free_port,
    make_config,
    openai_provider,
    read_sse,
)

MESSAGES = [{"role": "user", "content": "are you there"}]


def gateway_with(start_gateway: StartGateway, base_url: str, **network: object) -> Gateway:
    return start_gateway(make_config({"openai": openai_provider(base_url, **network)}))


def test_connect_failure_is_an_error_not_a_hang(start_gateway: StartGateway) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # bound then released: nothing listens there
    gateway = gateway_with(start_gateway, closed, default_request_timeout_in_seconds=5)
    with gateway.client() as client, pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    status = err.value.status_code
    assert status in (502, 503, 504), f"an unreachable upstream is a gateway-side 5xx, got {status}"
    body = err.value.response.json()
    assert_error_shape(body, status)
    assert body["extra_fields"]["provider"] == "openai"
    assert_gateway_headers(err.value.response.headers)
    row = gateway.log.row_for(err.value.response.headers["x-request-id"])
    assert row["status"] == status and row["error"]


def test_time_to_first_byte_timeout(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = gateway_with(start_gateway, fake_openai.url, default_request_timeout_in_seconds=1)
    fake_openai.enqueue(Reply(delay=20))
    with gateway.client() as client, pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert err.value.status_code == 504
    error = assert_error_shape(err.value.response.json(), 504)
    assert "timeout" in (error["type"] + str(error["code"]) + error["message"]).lower()
    assert fake_openai.wait_for("disconnects"), "the gateway should hang up on the slow upstream"


def test_time_to_first_byte_timeout_for_stream(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = gateway_with(start_gateway, fake_openai.url, default_request_timeout_in_seconds=1)
    fake_openai.enqueue(Reply(delay=20))
    with gateway.client() as client, pytest.raises(openai.APIStatusError) as err:
        list(client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True))
    assert err.value.status_code == 504, "no byte was sent yet, so the client gets a plain error response"
    assert fake_openai.wait_for("disconnects")


async def test_stream_idle_timeout(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = gateway_with(
        start_gateway, fake_openai.url, stream_idle_timeout_in_seconds=1, default_request_timeout_in_seconds=60
    )
    fake_openai.enqueue(Reply(stall_after=2, stall=30))
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
        session.post(gateway.url("/v1/chat/completions"), json=body) as resp,
    ):
        assert resp.status == 200
        events, _ = await read_sse(resp)
    assert len([e for e in events if not e.is_error]) == 2, "the chunks before the stall are forwarded"
    assert events[-1].is_error, f"an idle stream ends with an error event, got {events[-1].data!r}"
    assert not any(e.is_done for e in events)
    assert fake_openai.wait_for("disconnects"), "the gateway should close the idle upstream stream"
    row = gateway.log.row_for(resp.headers["x-request-id"])
    assert row["error"], "the idle timeout is recorded as an error"
    assert row["stream"] == 1


def test_stream_idle_timeout_does_not_cut_a_slow_but_steady_stream(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = gateway_with(start_gateway, fake_openai.url, stream_idle_timeout_in_seconds=2)
    fake_openai.enqueue(Reply(chunk_delay=0.3))
    with gateway.client() as client:
        chunks = list(client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "fake-openai: are you there"


def test_total_timeout_with_slow_body(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = gateway_with(start_gateway, fake_openai.url, default_request_timeout_in_seconds=2)
    fake_openai.enqueue(Reply(chunk_delay=3))  # headers at once, body trickles in over ~6 s
    with gateway.client() as client, pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert err.value.status_code == 504
    assert_error_shape(err.value.response.json(), 504)
    assert fake_openai.wait_for("disconnects")


def test_a_timeout_fails_over_at_once_to_the_fallback(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    provider = openai_provider(fake_openai.url, default_request_timeout_in_seconds=1, max_retries=3)
    gateway = start_gateway(make_config({"openai": provider}))
    fake_openai.enqueue(Reply(delay=20))
    with gateway.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=MESSAGES, extra_body={"fallbacks": ["mock/mock-chat"]}
        )
    assert raw.parse().model == "mock-chat", "a silent provider stays silent: the fallback answers"
    assert len(fake_openai.requests) == 1, "no same-target retry after a timeout by default"
    row = gateway.log.row_for(raw.headers["x-request-id"])
    attempts = json.loads(row["attempts"])
    assert [(a["provider"], a["status"]) for a in attempts] == [("openai", 504), ("mock", 200)]
    assert attempts[-1]["outcome"] == "answered"
    assert row["fallback_index"] == 1 and row["retries"] == 0


def test_timeout_then_retry_succeeds_when_the_policy_says_so(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    provider = openai_provider(fake_openai.url, default_request_timeout_in_seconds=1, max_retries=1)
    provider["failure_policy"] = {"timeout": "retry"}
    gateway = start_gateway(make_config({"openai": provider}))
    fake_openai.enqueue(Reply(delay=20))
    with gateway.client() as client:
        answer = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert answer.choices[0].message.content == "fake-openai: are you there"
    assert len(fake_openai.requests) == 2
