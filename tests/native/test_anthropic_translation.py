"""Pure translation tests for the Anthropic adapter and the /anthropic ingress, from JSON fixtures
shaped like Anthropic's documented examples. No network, no gateway process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.codecs.sse import SSEParser
from runtime.errors import InvalidRequest, ProviderError
from runtime.providers import anthropic_wire as wire
from runtime.providers.anthropic import AnthropicAdapter
from runtime.providers.base import Usage
from runtime.wire import anthropic_ingress as ingress
from runtime.wire.anthropic_stream import AnthropicEncoder

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_openai_request_to_messages_body() -> None:
    body = wire.build_messages_body(load("openai_request.json"), "claude-sonnet-4-5", stream=False)
    expected = load("anthropic_request.json")
    expected["system"] = [{"type": "text", "text": "You are a weather bot."}]
    assert body == expected


def test_anthropic_request_to_internal_and_back_is_stable() -> None:
    internal = ingress.to_internal({**load("anthropic_request.json"), "model": "anthropic/claude-sonnet-4-5"})
    again = wire.build_messages_body(internal, "claude-sonnet-4-5", stream=False)
    assert again == load("anthropic_request.json")


def test_tool_use_response_with_cache_usage() -> None:
    raw = (FIXTURES / "tool_use_response.json").read_bytes()
    answer, usage = wire.parse_message(raw, "claude-sonnet-4-5", created=1700000000)
    message = answer["choices"][0]["message"]
    assert message["content"] == "I'll check the current weather in San Francisco for you."
    assert message["tool_calls"] == [
        {
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"San Francisco, CA","unit":"celsius"}'},
        }
    ]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert answer["created"] == 1700000000 and answer["model"] == "claude-sonnet-4-5-20250929"
    assert answer["usage"] == {
        "prompt_tokens": 1496,
        "completion_tokens": 91,
        "total_tokens": 1587,
        "prompt_tokens_details": {"cached_tokens": 1024},
    }
    assert usage is not None and usage.cached_tokens == 1024


@pytest.mark.parametrize("piece", [1, 7, 64, 100000])
def test_documented_stream_in_any_chunking(piece: int) -> None:
    raw = (FIXTURES / "tool_use_stream.sse").read_bytes()
    stream = wire.MessagesStream("claude", created=1)
    chunks: list[dict[str, Any]] = []
    for start in range(0, len(raw), piece):
        chunks.extend(stream.feed(raw[start : start + piece]))
    chunks.extend(stream.close())
    assert stream.finished
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Okay, let's check the weather."
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert "".join(c["function"]["arguments"] for c in calls) == '{"location": "San Francisco, CA"}'
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["tool_calls"]
    assert chunks[-1]["usage"] == {"prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561}
    assert all(c["id"] == "msg_014p7gG3wDgGV9EUtLvnow3U" for c in chunks)


def test_stream_usage_totals_are_replaced_not_added() -> None:
    stream = wire.MessagesStream("claude", created=1)
    start = {
        "type": "message_start",
        "message": {
            "id": "m",
            "model": "c",
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 1},
        },
    }
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn"},
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 7},
    }
    for event in (start, delta, {"type": "message_stop"}):
        stream.feed(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
    assert stream.usage is not None
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens, stream.usage.cached_tokens) == (15, 7, 5)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            429,
            {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
            (429, "rate_limit_error", "rate_limit_exceeded", True),
        ),
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            (503, "overloaded_error", "overloaded", True),
        ),
        (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 210000 tokens > 200000 maximum",
                },
            },
            (400, "invalid_request_error", "context_length_exceeded", False),
        ),
        (
            401,
            {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
            (401, "authentication_error", None, False),
        ),
        (502, b"<html>bad gateway</html>", (502, "api_error", None, True)),
    ],
)
def test_error_mapping(status: int, body: Any, expected: tuple[int, str, str | None, bool]) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    err = AnthropicAdapter().parse_error(status, {"retry-after": "2"}, raw)
    assert isinstance(err, ProviderError)
    assert (err.status, err.type, err.code, err.retryable) == expected
    assert err.retry_after_s == 2.0


def test_unsupported_content_is_a_clear_400() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}
    with pytest.raises(InvalidRequest, match="input_audio"):
        wire.build_messages_body(body, "claude", stream=False)


def _events(data: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    return [(e.event, json.loads(e.data)) for e in SSEParser().feed(data)]


def test_encoder_turns_openai_chunks_into_anthropic_events() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    encoder = AnthropicEncoder("openai/gpt-4o")
    data = b"".join(
        [
            encoder.encode(chunk({"role": "assistant", "content": ""})),
            encoder.encode(chunk({"content": "Hi"})),
            encoder.encode(
                chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]})
            ),
            encoder.encode(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]})),
            encoder.encode(
                chunk({"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "g", "arguments": "{}"}}]})
            ),
            encoder.encode(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})),
            encoder.encode(chunk({}, "tool_calls")),
            encoder.end(Usage(12, 4, cached_tokens=2)),
        ]
    )
    events = _events(data)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0][1]["message"]["id"] == "msg_chatcmpl-1"
    assert events[4][1]["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    # The interleaved fragment for the first call still names the first call's block.
    assert events[9][1] == {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": "1}"},
    }
    assert events[11][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 10,
            "output_tokens": 4,
            "cache_read_input_tokens": 2,
            "cache_creation_input_tokens": 0,
        },
    }


def test_from_internal_maps_finish_and_arguments() -> None:
    data = {
        "id": "x",
        "choices": [
            {
                "finish_reason": "length",
                "message": {
                    "content": "partial",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "not json"}}],
                },
            }
        ],
    }
    message = ingress.from_internal(data, Usage(3, 2), "openai/gpt-4o")
    assert message["stop_reason"] == "max_tokens"
    assert message["content"][1]["input"] == {"_unparsed_arguments": "not json"}
    assert message["usage"]["input_tokens"] == 3
