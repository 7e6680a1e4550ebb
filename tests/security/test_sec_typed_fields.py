"""Wrong types in a request are a 400 naming the field, at every translator (issue 9 item 4).

Pure-function tests of the sites the fuzzer found (each raised TypeError or AttributeError before, which
the gateway answered with aiohttp's plain-text 500): the GenAI, Responses and Anthropic ingresses, the
OpenAI ingress's validation, the request building of the Anthropic, Gemini, Bedrock and Cohere adapters
and the mock; plus the body limits (nesting depth, NaN/Infinity) checked right after parsing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import ujson

from runtime.codecs import fields as F
from runtime.errors import InvalidRequest
from runtime.http.jsonlimits import MAX_DEPTH, check_body
from runtime.http.openai import _validate
from runtime.providers.anthropic_wire import build_messages_body
from runtime.providers.base import CHAT, COMPLETIONS, EMBEDDINGS
from runtime.providers.bedrock_wire import build_converse_body
from runtime.providers.cohere import build_chat_body
from runtime.providers.gemini_request import build_generate_body
from runtime.providers.mock import MockAdapter
from runtime.wire import anthropic_ingress, genai_ingress, responses

USER = {"role": "user", "content": "hi"}


def _invalid(call: Callable[[], Any], param: str | None = None) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        call()
    if param is not None:
        assert info.value.param == param, info.value.message
    assert info.value.status == 400
    return info.value


# -- the ingresses ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"contents": [{"parts": [{"text": [None]}]}]}, "contents[0].parts[0].text"),
        ({"contents": [{"parts": [5]}]}, "contents[0].parts[0]"),
        ({"contents": [5]}, "contents[0]"),
        ({"contents": [{"parts": [{"inlineData": {"mimeType": ["x"], "data": "AA"}}]}]}, None),
        ({"contents": [{"parts": [{"inlineData": 5}]}]}, None),
        ({"contents": [{"parts": [{"functionResponse": {"name": ["f"]}}]}]}, None),
        ({"contents": [{"role": "model", "parts": [{"functionCall": {"name": {}}}]}]}, None),
        ({"contents": [{"role": "model", "parts": [{"text": 1}]}]}, "contents[0].parts[0].text"),
        ({"contents": [{"parts": [{"text": "hi"}]}], "tools": 1.5}, "tools"),
        ({"contents": [{"parts": [{"text": "hi"}]}], "tools": [{"functionDeclarations": 2}]}, None),
        ({"contents": [{"parts": [{"text": "hi"}]}], "toolConfig": {"functionCallingConfig": 5}}, None),
        ({"contents": [{"parts": [{"text": "hi"}]}], "systemInstruction": {"parts": [{"text": 3}]}}, None),
        ({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"temperature": "hot"}}, None),
        ({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": 1e400}}, None),
    ],
)
def test_genai_ingress_wrong_types(body: dict[str, Any], param: str | None) -> None:
    _invalid(lambda: genai_ingress.to_internal({"model": "mock/mock-chat", **body}), param)


def test_genai_embed_wrong_types() -> None:
    _invalid(lambda: genai_ingress.embed_to_internal({"requests": [5]}, "m", batch=True), "requests[0]")
    _invalid(lambda: genai_ingress.embed_to_internal({"content": {"parts": [{"text": 1}]}}, "m", batch=False))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi", "tools": 5}, "tools"),
        ({"input": "hi", "tools": [{"type": "function", "name": 5}]}, "tools[0].name"),
        ({"input": [{"role": ["user"], "content": "hi"}]}, "input"),
        ({"input": [{"type": "function_call", "call_id": 1, "name": "f"}]}, None),
        ({"input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]}, None),
        ({"input": "hi", "temperature": "warm"}, "temperature"),
        ({"input": "hi", "max_output_tokens": 2.5}, "max_output_tokens"),
        ({"input": "hi", "stream": "yes"}, "stream"),
    ],
)
def test_responses_ingress_wrong_types(body: dict[str, Any], param: str | None) -> None:
    _invalid(lambda: responses.to_internal({"model": "mock/mock-chat", **body}), param)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [USER], "tools": 1.5}, "tools"),
        ({"messages": [USER], "tools": [{"name": 5, "input_schema": {}}]}, "tools[0].name"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": 5}]}]}, None),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": {}}]}]}, None),
        ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": []}]}]}, None),
        ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "input": 5}]}]}, None),
        ({"messages": [USER], "tool_choice": 5}, "tool_choice"),
        ({"messages": [USER], "stop_sequences": [1]}, "stop_sequences[0]"),
        ({"messages": [USER], "temperature": [0.5]}, "temperature"),
        ({"messages": [USER], "max_tokens": True}, "max_tokens"),
    ],
)
def test_anthropic_ingress_wrong_types(body: dict[str, Any], param: str | None) -> None:
    _invalid(lambda: anthropic_ingress.to_internal({"model": "mock/mock-chat", "max_tokens": 5, **body}), param)


def test_anthropic_count_tokens_ignores_stream() -> None:
    """A count is one JSON answer; `stream: true` used to send it down the stream path."""
    internal = anthropic_ingress.to_internal({"model": "m", "messages": [USER], "stream": True}, counting=True)
    assert "stream" not in internal


@pytest.mark.parametrize(
    ("op", "body", "param"),
    [
        (CHAT, {"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, None),
        (CHAT, {"messages": [{"role": "user", "content": [5]}]}, "messages[0].content[0]"),
        (CHAT, {"messages": [{"role": "assistant", "tool_calls": [{"function": 5}]}]}, None),
        (CHAT, {"messages": [USER], "temperature": "x"}, "temperature"),
        (CHAT, {"messages": [USER], "max_tokens": 1.5}, "max_tokens"),
        (CHAT, {"messages": [USER], "tools": [5]}, "tools[0]"),
        (CHAT, {"messages": [USER], "stop": [None]}, "stop[0]"),
        (COMPLETIONS, {"prompt": [{"a": 1}]}, "prompt[0]"),
        (EMBEDDINGS, {"input": ["one", {"value": "two"}]}, "input[1]"),
        (EMBEDDINGS, {"input": "x", "dimensions": [8]}, "dimensions"),
        (EMBEDDINGS, {"input": "x", "dimensions": 0}, "dimensions"),
    ],
)
def test_openai_validation_wrong_types(op: str, body: dict[str, Any], param: str | None) -> None:
    _invalid(lambda: _validate(op, body), param)


def test_openai_validation_keeps_valid_shapes() -> None:
    _validate(CHAT, {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]})
    _validate(COMPLETIONS, {"prompt": [[1, 2], "text", 3]})
    _validate(EMBEDDINGS, {"input": [[1, 2, 3]], "dimensions": 8, "encoding_format": "float"})


# -- provider request building --------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "anthropic": lambda body: build_messages_body(body, "claude", stream=False),
    "gemini": build_generate_body,
    "bedrock": build_converse_body,
    "cohere": lambda body: build_chat_body(body, "command", stream=False),
}
BAD_CHAT_BODIES = [
    {"messages": [5]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
    {"messages": [{"role": "user", "content": 7}]},
    {"messages": [{"role": "assistant", "content": "x", "tool_calls": [5]}]},
    {"messages": [{"role": "assistant", "content": "x", "tool_calls": [{"id": 1, "function": {"name": "f"}}]}]},
    {"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": 5}}]}]},
    {"messages": [{"role": "tool", "tool_call_id": ["c"], "content": "x"}]},
    {"messages": [{"role": "user", "content": [{"type": "file", "file": 5}]}]},
    {"messages": [USER], "temperature": "hot"},
    {"messages": [USER], "top_k": 2.5},
    {"messages": [USER], "tools": [{"type": "function", "function": {"name": "f", "parameters": 5}}]},
]


@pytest.mark.parametrize("provider", sorted(BUILDERS))
@pytest.mark.parametrize("body", BAD_CHAT_BODIES, ids=[json.dumps(b)[:60] for b in BAD_CHAT_BODIES])
def test_provider_request_building_wrong_types(provider: str, body: dict[str, Any]) -> None:
    _invalid(lambda: BUILDERS[provider](body))


def test_mock_takes_a_number_as_a_text_part() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}
    answer = MockAdapter().respond(CHAT, body, "mock-chat")
    assert answer.data["choices"][0]["message"]["content"].startswith("[mock]")


def test_mock_bounds_embedding_dimensions() -> None:
    _invalid(lambda: MockAdapter().respond(EMBEDDINGS, {"input": "x", "dimensions": 10**12}, "m"), "dimensions")


# -- the accessors and the body limits ----------------------------------------------------------------------


def test_accessors_name_the_path() -> None:
    err = _invalid(lambda: F.opt_str({"text": 5}, "text", "messages[2].content[0]"), "messages[2].content[0].text")
    assert "got an integer" in err.message
    _invalid(lambda: F.as_number(float("inf"), "temperature"), "temperature")
    _invalid(lambda: F.as_int(True, "n"), "n")
    _invalid(lambda: F.objects([{}, 1], "tools"), "tools[1]")
    assert F.opt_list({"tools": None}, "tools") == []


def _nested(depth: int) -> bytes:
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_body_depth_limit() -> None:
    ok = _nested(MAX_DEPTH)
    check_body(ok, ujson.loads(ok))
    for depth in (MAX_DEPTH + 1, 1000):
        raw = _nested(depth)
        body = ujson.loads(raw)
        with pytest.raises(InvalidRequest):
            check_body(raw, body)
    # Brackets inside strings are text, not nesting.
    text = json.dumps({"content": "[" * 5000 + "{" * 5000}).encode()
    check_body(text, ujson.loads(text))


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"[1, NaN]"])
def test_body_refuses_nan_and_infinity(token: bytes) -> None:
    raw = b'{"temperature": %s}' % token
    _invalid(lambda: check_body(raw, ujson.loads(raw)))


def test_body_allows_nan_as_text() -> None:
    raw = json.dumps({"content": 'NaN and Infinity \\" NaN'}).encode()
    check_body(raw, ujson.loads(raw))
