"""Pure translation tests for the Gemini adapter and the /genai ingress, from JSON fixtures shaped like
Google's documented examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import ProviderError
from runtime.providers import gemini_request, gemini_response
from runtime.providers.base import Usage
from runtime.providers.gemini import GeminiAdapter
from runtime.wire import genai_ingress
from runtime.wire.genai_stream import GenAIEncoder

FIXTURES = Path(__file__).parent / "fixtures" / "gemini"


def test_function_call_response_usage_and_signature() -> None:
    raw = (FIXTURES / "function_call_response.json").read_bytes()
    answer, usage = gemini_response.parse_generate(raw, "gemini-2.5-flash", created=5)
    message = answer["choices"][0]["message"]
    assert message["content"] == "Let me look that up."
    (call,) = message["tool_calls"]
    assert call["function"] == {"name": "set_light_values", "arguments": '{"brightness":25,"color_temp":"warm"}'}
    assert call["id"].endswith("~ts~CrQBAVSoXO5Ab")
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert answer["usage"] == {
        "prompt_tokens": 120,
        "completion_tokens": 58,
        "total_tokens": 178,
        "prompt_tokens_details": {"cached_tokens": 64},
    }
    assert usage is not None and usage.cached_tokens == 64
    again, _ = gemini_response.parse_generate(raw, "gemini-2.5-flash", created=5)
    assert again["choices"][0]["message"]["tool_calls"][0]["id"] == call["id"], "ids are deterministic"
    # The id carries the signature back to Gemini on the next turn.
    history = [
        {"role": "user", "content": "x"},
        message,
        {"role": "tool", "tool_call_id": call["id"], "content": "done"},
    ]
    body = gemini_request.build_generate_body({"messages": history})
    assert body["contents"][1]["parts"][1] == {
        "functionCall": {"name": "set_light_values", "args": {"brightness": 25, "color_temp": "warm"}},
        "thoughtSignature": "CrQBAVSoXO5Ab",
    }
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "set_light_values", "response": {"content": "done"}}}
    ]


@pytest.mark.parametrize("piece", [3, 50, 100000])
def test_stream_ends_at_eof_after_finish(piece: int) -> None:
    raw = (FIXTURES / "stream.sse").read_bytes()
    stream = gemini_response.GenerateStream("gemini", created=1)
    chunks: list[dict[str, Any]] = []
    for start in range(0, len(raw), piece):
        chunks.extend(stream.feed(raw[start : start + piece]))
    assert not stream.finished, "Gemini has no end marker: only EOF after finishReason ends the stream"
    chunks.extend(stream.close())
    assert stream.finished
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "The sky is blue."
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert [(c["index"], c["function"]) for c in calls] == [(0, {"name": "lookup", "arguments": '{"q":"sky"}'})]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["tool_calls"]
    assert chunks[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}


def test_stream_without_finish_is_cut() -> None:
    stream = gemini_response.GenerateStream("gemini", created=1)
    stream.feed(b'data: {"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "index": 0}]}\r\n\r\n')
    stream.close()
    assert not stream.finished


def test_genai_request_to_internal_and_to_gemini() -> None:
    body = json.loads((FIXTURES / "genai_request.json").read_text())
    internal = genai_ingress.to_internal({**body, "model": "gemini/gemini-2.5-flash"})
    assert internal["messages"][0] == {"role": "system", "content": "You control lights."}
    assert internal["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }
    assert internal["tools"][0]["function"]["parameters"] == {
        "type": "object",
        "properties": {"brightness": {"type": ["integer", "null"]}},
        "required": ["brightness"],
    }
    assert (internal["max_tokens"], internal["stop"], internal["tool_choice"]) == (100, ["END"], "auto")
    out = gemini_request.build_generate_body(internal)
    assert out["contents"][1]["parts"][0]["thoughtSignature"] == "c2ln"
    assert out["contents"][2]["parts"] == [{"functionResponse": {"name": "set_light_values", "response": {"ok": True}}}]
    assert (
        out["tools"][0]["functionDeclarations"][0]["parameters"]
        == body["tools"][0]["functionDeclarations"][0]["parameters"]
    )
    assert out["generationConfig"] == {"maxOutputTokens": 100, "stopSequences": ["END"], "temperature": 0.1}


def test_encoder_holds_function_calls_until_the_end() -> None:
    encoder = GenAIEncoder("openai/gpt-4o")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    first = encoder.encode(chunk({"content": "Hi"}))
    assert json.loads(first[6:])["candidates"][0]["content"]["parts"] == [{"text": "Hi"}]
    assert (
        encoder.encode(chunk({"tool_calls": [{"index": 0, "id": "x", "function": {"name": "f", "arguments": '{"a"'}}]}))
        == b""
    )
    encoder.encode(chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}, "tool_calls"))
    last = json.loads(encoder.end(Usage(4, 2))[6:])
    assert last["candidates"][0]["content"]["parts"] == [{"functionCall": {"id": "x", "name": "f", "args": {"a": 1}}}]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"] == {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6}


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (
            400,
            {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
            },
            (401, "authentication_error", "invalid_api_key", None),
        ),
        (
            429,
            {
                "code": 429,
                "message": "quota",
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}],
            },
            (429, "rate_limit_error", "resource_exhausted", 37.0),
        ),
        (503, {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}, (503, "api_error", "unavailable", None)),
    ],
)
def test_error_mapping(status: int, error: dict[str, Any], expected: tuple[Any, ...]) -> None:
    err = GeminiAdapter().parse_error(status, {}, json.dumps({"error": error}).encode())
    assert isinstance(err, ProviderError)
    assert (err.status, err.type, err.code, err.retry_after_s) == expected


def test_clean_schema_keeps_property_names() -> None:
    schema = {
        "type": "object",
        "$schema": "x",
        "additionalProperties": False,
        "properties": {
            "additionalProperties": {"type": "string", "format": "date"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    }
    assert gemini_request.clean_schema(schema) == {
        "type": "OBJECT",
        "properties": {
            "additionalProperties": {"type": "STRING", "format": "date"},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
        },
    }
