"""Pure translation tests for the Cohere v2 adapter, from its documented stream and response shapes."""

from __future__ import annotations

import json
from pathlib import Path

from runtime.providers.cohere import ChatStream, CohereAdapter, build_chat_body, parse_chat

FIXTURES = Path(__file__).parent / "fixtures" / "cohere"


def test_documented_tool_stream() -> None:
    raw = (FIXTURES / "stream.sse").read_bytes()
    stream = ChatStream("command-a", created=1)
    chunks = [c for i in range(0, len(raw), 40) for c in stream.feed(raw[i : i + 40])]
    assert stream.finished
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[1] == {"reasoning_content": "I will search for the weather."}
    assert deltas[2]["tool_calls"][0]["id"] == "get_weather_nsz5zm3w56q3"
    args = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas if d.get("tool_calls"))
    assert json.loads(args) == {"location": "Toronto"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"] == {"prompt_tokens": 913, "completion_tokens": 81, "total_tokens": 994}


def test_response_and_request_mapping() -> None:
    raw = json.dumps(
        {
            "id": "c1",
            "finish_reason": "MAX_TOKENS",
            "message": {"role": "assistant", "content": [{"type": "text", "text": "partial"}]},
            "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 2}},
        }
    ).encode()
    answer, usage = parse_chat(raw, "command-a", 1)
    assert answer["choices"][0]["finish_reason"] == "length"
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (5, 2)
    body = build_chat_body(
        {
            "messages": [{"role": "developer", "content": "x"}],
            "top_k": 3,
            "tool_choice": "none",
            "max_completion_tokens": 9,
        },
        "command-a",
        True,
    )
    assert body == {
        "model": "command-a",
        "messages": [{"role": "system", "content": "x"}],
        "stream": True,
        "tool_choice": "NONE",
        "max_tokens": 9,
        "k": 3,
    }


def test_error_mapping() -> None:
    err = CohereAdapter().parse_error(422, {}, b'{"message": "invalid request: bad field"}')
    assert (err.status, err.type, err.retryable) == (400, "invalid_request_error", False)
    assert CohereAdapter().parse_error(503, {}, b"").retryable
