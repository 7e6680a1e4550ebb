"""Vertex AI through the gateway: Gemini and Claude models, embeddings, count tokens; the service
account's JWT is verified by the fake's token endpoint, and tokens are cached and refreshed."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from fakes import FakeOpenAI, Reply
from fakes.native import FakeVertex, NativeReply
from fakes.native.anthropic_fake import error_reply as anthropic_error
from fakes.native.gemini_fake import error_reply as google_error
from fakes.native.vertex_fake import make_service_account
from harness import Gateway, StartGateway, make_config, openai_provider
from native_helpers import (
    MESSAGES,
    PNG_B64,
    PNG_DATA_URL,
    TWO_CALLS,
    WEATHER_TOOL,
    anthropic_client,
    collect_tool_calls,
    finish_reason,
    genai_client,
    stream_text,
    vertex_provider,
)

GEMINI = "vertex/gemini-2.5-flash"
CLAUDE = "vertex/claude-sonnet-4-5@20250929"
ROOT = "/v1/projects/fake-project/locations/us-central1/publishers"


@pytest.fixture
def gw(start_gateway: StartGateway, fake_vertex: FakeVertex, fake_openai: FakeOpenAI) -> Gateway:
    return start_gateway(
        make_config(
            {
                "vertex": vertex_provider(fake_vertex.url, fake_vertex.service_account, max_retries=1),
                "openai": openai_provider(fake_openai.url),
            }
        )
    )


def test_gemini_chat_with_cached_token(gw: Gateway, fake_vertex: FakeVertex) -> None:
    with gw.client() as client:
        first = client.chat.completions.create(model=GEMINI, messages=MESSAGES)
        second = client.chat.completions.create(model=GEMINI, messages=MESSAGES)
    assert first.choices[0].message.content == second.choices[0].message.content == "fake-vertex: Hello there"
    assert first.usage is not None and first.usage.total_tokens == 5
    calls = fake_vertex.requests_to(":generateContent")
    assert [r.path for r in calls] == [f"{ROOT}/google/models/gemini-2.5-flash:generateContent"] * 2
    assert calls[0].headers["authorization"] == "Bearer ya29.fake-1" == calls[1].headers["authorization"]
    assert fake_vertex.token_requests == 1, "the access token is cached"


def test_token_refreshed_before_expiry(gw: Gateway, fake_vertex: FakeVertex) -> None:
    fake_vertex.expires_in = 120  # inside the refresh margin: every use fetches a new one
    with gw.client() as client:
        client.chat.completions.create(model=GEMINI, messages=MESSAGES)
        client.chat.completions.create(model=GEMINI, messages=MESSAGES)
    assert fake_vertex.token_requests == 2
    assert [r.headers["authorization"] for r in fake_vertex.requests_to(":generateContent")] == [
        "Bearer ya29.fake-1",
        "Bearer ya29.fake-2",
    ]


def test_untrusted_key_is_an_auth_error(start_gateway: StartGateway, fake_vertex: FakeVertex) -> None:
    impostor, _ = make_service_account(fake_vertex.token_uri, email=fake_vertex.client_email)
    gw = start_gateway(make_config({"vertex": vertex_provider(fake_vertex.url, impostor)}))
    with gw.client() as client, pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model=GEMINI, messages=MESSAGES)
    assert "Invalid JWT Signature" in str(info.value)
    assert fake_vertex.requests_to(":generateContent") == []


def test_gemini_stream_tools_and_usage(gw: Gateway, fake_vertex: FakeVertex) -> None:
    fake_vertex.enqueue(
        Reply(tool_calls=TWO_CALLS, usage={"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13})
    )
    with gw.client() as client:
        chunks = list(
            client.chat.completions.create(
                model=GEMINI,
                messages=MESSAGES,
                tools=[WEATHER_TOOL],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    calls = collect_tool_calls(chunks)
    assert [json.loads(c["arguments"]) for _, c in sorted(calls.items())] == [{"city": "Paris"}, {"city": "Tokyo"}]
    assert finish_reason(chunks) == "tool_calls"
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0] is not None and usage[0].total_tokens == 13


def test_claude_on_vertex(gw: Gateway, fake_vertex: FakeVertex) -> None:
    fake_vertex.enqueue(Reply(), Reply(tool_calls=TWO_CALLS))
    with gw.client() as client:
        answer = client.chat.completions.create(
            model=CLAUDE, messages=[{"role": "system", "content": "Brief."}, *MESSAGES]
        )
        chunks = list(
            client.chat.completions.create(model=CLAUDE, messages=MESSAGES, tools=[WEATHER_TOOL], stream=True)
        )
    assert answer.choices[0].message.content == "fake-vertex: Hello there"
    assert [c["id"] for _, c in sorted(collect_tool_calls(chunks).items())] == ["call_a1", "call_b2"]
    first, second = fake_vertex.requests_to("/publishers/anthropic/")
    assert first.path == f"{ROOT}/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    assert first.body["anthropic_version"] == "vertex-2023-10-16" and "model" not in first.body
    assert first.body["system"] == [{"type": "text", "text": "Brief."}]
    assert second.path.endswith(":streamRawPredict")


def test_anthropic_sdk_and_count_tokens_over_vertex_claude(gw: Gateway, fake_vertex: FakeVertex) -> None:
    with (
        anthropic_client(gw) as client,
        client.messages.stream(
            model=CLAUDE, max_tokens=30, messages=[{"role": "user", "content": "hi there"}]
        ) as stream,
    ):
        text = "".join(stream.text_stream)
        counted = client.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "a b c"}])
    assert text == "fake-vertex: hi there"
    assert counted.input_tokens == 3
    assert fake_vertex.requests[-1].path == f"{ROOT}/anthropic/models/count-tokens:rawPredict"


def test_genai_sdk_over_vertex_gemini(gw: Gateway) -> None:
    client = genai_client(gw)
    response = client.models.generate_content(model=GEMINI, contents="via genai")
    assert response.text == "fake-vertex: via genai"
    assert client.models.count_tokens(model=GEMINI, contents="one two").total_tokens == 2


def test_embeddings_and_json_mode(gw: Gateway, fake_vertex: FakeVertex) -> None:
    with gw.client() as client:
        result = client.embeddings.create(model="vertex/text-embedding-005", input=["a b", "c"], dimensions=5)
        answer = client.chat.completions.create(
            model=GEMINI, messages=MESSAGES, response_format={"type": "json_object"}
        )
    assert [len(d.embedding) for d in result.data] == [5, 5]
    assert result.usage.prompt_tokens == 3
    predict = fake_vertex.requests_to(":predict")[0]
    assert predict.body == {
        "instances": [{"content": "a b"}, {"content": "c"}],
        "parameters": {"outputDimensionality": 5},
    }
    assert json.loads(answer.choices[0].message.content or "") == {"echo": "Hello there"}


def test_stop_and_length_on_claude(gw: Gateway, fake_vertex: FakeVertex) -> None:
    fake_vertex.enqueue(Reply(content="a b STOP c"), Reply(content="one two three"))
    with gw.client() as client:
        stopped = client.chat.completions.create(model=CLAUDE, messages=MESSAGES, stop=["STOP"])
        cut = list(client.chat.completions.create(model=CLAUDE, messages=MESSAGES, max_tokens=2, stream=True))
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == ("a b ", "stop")
    assert (stream_text(cut), finish_reason(cut)) == ("one two", "length")


def test_errors_in_both_shapes(gw: Gateway, fake_vertex: FakeVertex) -> None:
    quota = google_error(
        429, "Quota exceeded for aiplatform.googleapis.com/generate_content_requests", path_contains="google"
    )
    overloaded = anthropic_error(529, "overloaded_error", "Overloaded", path_contains="anthropic")
    fake_vertex.enqueue(quota, quota, overloaded, overloaded)  # each attempt and its retry
    with gw.client() as client:
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=GEMINI, messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model=CLAUDE, messages=MESSAGES)
    assert info.value.status_code == 503
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "overloaded_error"


def test_fallback_vertex_to_openai_and_safety(gw: Gateway, fake_vertex: FakeVertex, fake_openai: FakeOpenAI) -> None:
    fake_vertex.enqueue(NativeReply(content="no", finish="SAFETY"))
    with gw.client() as client:
        filtered = client.chat.completions.create(model=GEMINI, messages=MESSAGES)
        fake_vertex.always(google_error(500, "Internal error"))
        answer = client.chat.completions.create(
            model=GEMINI, messages=MESSAGES, extra_body={"fallbacks": ["openai/gpt-4o"]}
        )
    assert filtered.choices[0].finish_reason == "content_filter"
    assert answer.choices[0].message.content == "fake-openai: Hello there"


def test_anthropic_sdk_error_shape_from_vertex(gw: Gateway, fake_vertex: FakeVertex) -> None:
    fake_vertex.always(google_error(403, "Permission 'aiplatform.endpoints.predict' denied"))
    with anthropic_client(gw) as client, pytest.raises(anthropic.PermissionDeniedError):
        client.messages.create(model=GEMINI, max_tokens=5, messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
def test_multi_turn_image_and_tool_round_trip(gw: Gateway, fake_vertex: FakeVertex, model: str) -> None:
    fake_vertex.enqueue(Reply(tool_calls=TWO_CALLS))
    image = {"type": "image_url", "image_url": {"url": PNG_DATA_URL}}
    history = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [{"type": "text", "text": "weather for this map?"}, image]},
    ]
    with gw.client() as client:
        first = client.chat.completions.create(model=model, messages=history, tools=[WEATHER_TOOL])
        message = first.choices[0].message
        calls = message.tool_calls or []
        assert first.choices[0].finish_reason == "tool_calls" and len(calls) == 2
        history += [
            message.model_dump(exclude_none=True),
            *[{"role": "tool", "tool_call_id": c.id, "content": "20C"} for c in calls],
        ]
        second = client.chat.completions.create(model=model, messages=history, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    last = fake_vertex.requests[-1].body
    if model == GEMINI:
        assert [c["role"] for c in last["contents"]] == ["user", "model", "user", "model", "user"]
        assert last["contents"][2]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}
    else:
        assert [m["role"] for m in last["messages"]] == ["user", "assistant", "user", "assistant", "user"]
        assert [b["type"] for b in last["messages"][4]["content"]] == ["tool_result", "tool_result"]
