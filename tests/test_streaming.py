"""Streaming chat through the gateway: chunks in order, [DONE], usage with include_usage, streamed
tool-call deltas, and a stream that breaks upstream ending with an error event."""

from __future__ import annotations

import aiohttp
import openai
import pytest
from fakes import FakeOpenAI, Reply
from harness import Gateway, assert_gateway_headers, read_sse

MESSAGES = [{"role": "user", "content": "stream me some words please"}]
EXPECTED = "fake-openai: stream me some words please"
TOOL_CALL = ({"id": "call_s1", "name": "lookup", "arguments": '{"query": "bifrost gateway", "limit": 3}'},)


@pytest.mark.parametrize("prefix", ["/v1", "/openai/v1"])
def test_stream_text_in_order(gateway: Gateway, fake_openai: FakeOpenAI, prefix: str) -> None:
    with gateway.client(prefix) as client:
        chunks = list(client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True))
    assert chunks, "no chunks"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.choices for c in chunks), "without include_usage every chunk has a choice"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == EXPECTED
    assert chunks[-1].choices[0].finish_reason == "stop"
    rec = fake_openai.requests[0]
    assert rec.body["stream"] is True
    assert rec.body["model"] == "gpt-4o-mini"


async def test_stream_raw_sse_ends_with_done(gateway: Gateway) -> None:
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.url("/v1/chat/completions"), json=body) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert_gateway_headers(resp.headers)
        events, error = await read_sse(resp)
    assert error is None, f"stream body was cut: {error!r}"
    assert events[-1].is_done, f"last event is {events[-1].data!r}, expected [DONE]"
    assert sum(e.is_done for e in events) == 1
    chunks = [e.json() for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == EXPECTED


def test_stream_include_usage(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    with gateway.client() as client:
        chunks = list(
            client.chat.completions.create(
                model="openai/gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    last = chunks[-1]
    assert last.choices == [], "the usage chunk has an empty choices list"
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (5, 6, 11)
    assert all(c.usage is None for c in chunks[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == EXPECTED
    assert fake_openai.requests[0].body["stream_options"] == {"include_usage": True}


def test_streamed_tool_call_deltas(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(tool_calls=TOOL_CALL))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    with gateway.client() as client:
        chunks = list(
            client.chat.completions.create(
                model="openai/gpt-4o",
                messages=MESSAGES,
                tools=tools,  # type: ignore[arg-type]
                stream=True,
            )
        )
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) > 2, "tool-call arguments should arrive as several deltas"
    assert deltas[0].id == "call_s1" and deltas[0].type == "function"
    assert deltas[0].function is not None and deltas[0].function.name == "lookup"
    assert all(d.index == 0 for d in deltas)
    assert "".join((d.function.arguments or "") if d.function else "" for d in deltas) == TOOL_CALL[0]["arguments"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert fake_openai.requests[0].body["tools"] == tools


def test_stream_helper_accumulates_tool_call(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(tool_calls=TOOL_CALL))
    with (
        gateway.client() as client,
        client.chat.completions.stream(model="openai/gpt-4o", messages=MESSAGES) as stream,  # type: ignore[arg-type]
    ):
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert call.function.arguments == TOOL_CALL[0]["arguments"]  # type: ignore[union-attr]


async def test_stream_broken_upstream_ends_with_error_event(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(cut_after=3))
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.url("/v1/chat/completions"), json=body) as resp,
    ):
        assert resp.status == 200, "headers were already sent when the upstream broke"
        events, _ = await read_sse(resp)
    assert events, "the chunks that arrived before the break are forwarded"
    assert not any(e.is_done for e in events), "a broken stream must not end with [DONE] as if it succeeded"
    assert events[-1].is_error, f"the stream should end with an error event, got {events[-1].data!r}"
    assert sum(1 for e in events if not e.is_error) == 3, "the 3 chunks sent before the cut are forwarded"


def test_stream_broken_upstream_raises_in_sdk(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(cut_after=3))
    received: list[str] = []
    with gateway.client() as client, pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(received) != EXPECTED


async def test_stream_request_error_before_first_byte_is_plain_json(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.bad_request("Invalid value for 'temperature': must be <= 2."))
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True, "temperature": 9}
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.url("/v1/chat/completions"), json=body) as resp,
    ):
        assert resp.status == 400
        assert resp.headers["Content-Type"].startswith("application/json")
        answer = await resp.json()
    assert "temperature" in answer["error"]["message"]


async def test_chunks_are_forwarded_as_they_arrive(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(chunk_delay=1.0, content="one two three four"))
    body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.url("/v1/chat/completions"), json=body) as resp,
    ):
        first = await resp.content.readline()
        assert first.startswith(b"data:")
        assert fake_openai.counts.get("streams_completed", 0) == 0, (
            "the first chunk only arrived after the upstream stream ended: the gateway buffers the stream"
        )
        events, error = await read_sse(resp)
    assert error is None and events[-1].is_done
