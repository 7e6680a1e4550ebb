"""The Anthropic provider through the gateway, driven by the official `openai` SDK: every scenario the
issue lists, with the fake checking what reaches it."""

from __future__ import annotations

import json

import openai
import pytest
from fakes import FakeOpenAI, Reply
from fakes.native import FakeAnthropic, NativeReply
from fakes.native.anthropic_fake import error_reply
from harness import Gateway, StartGateway, make_config, openai_provider
from native_helpers import (
    MESSAGES,
    PNG_B64,
    PNG_DATA_URL,
    TWO_CALLS,
    WEATHER_TOOL,
    anthropic_provider,
    collect_tool_calls,
    finish_reason,
    stream_text,
)

MODEL = "anthropic/claude-sonnet-4-5"


@pytest.fixture
def gw(start_gateway: StartGateway, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI) -> Gateway:
    return start_gateway(
        make_config(
            {
                "anthropic": anthropic_provider(fake_anthropic.url, max_retries=1),
                "openai": openai_provider(fake_openai.url),
            }
        )
    )


def test_plain_chat(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    with gw.client() as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.choices[0].message.content == "fake-anthropic: Hello there"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.object == "chat.completion" and answer.id.startswith("msg_")
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (2, 3, 5)
    (rec,) = fake_anthropic.requests
    assert rec.path == "/v1/messages"
    assert rec.headers["x-api-key"] == "sk-ant-fake-1"
    assert rec.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in rec.headers
    assert rec.body == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
        "max_tokens": 4096,
    }


def test_system_prompt_and_multi_turn(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "developer", "content": "Use English."},
        {"role": "user", "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}]},
    ]
    with gw.client() as client:
        answer = client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=50, temperature=0.5, top_p=0.9
        )
    assert answer.choices[0].message.content == "fake-anthropic: three four"
    body = fake_anthropic.requests[0].body
    assert body["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use English."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][2]["content"] == [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (50, 0.5, 0.9)
    assert answer.usage is not None and answer.usage.prompt_tokens == 8  # words the fake counted


def test_tool_call_round_trip_parallel(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(Reply(tool_calls=TWO_CALLS))
    with gw.client() as client:
        first = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "weather?"}],
            tools=[WEATHER_TOOL],
            tool_choice="required",
        )
        message = first.choices[0].message
        assert first.choices[0].finish_reason == "tool_calls"
        assert message.tool_calls is not None
        assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
            ("call_a1", "get_weather", {"city": "Paris"}),
            ("call_b2", "get_weather", {"city": "Tokyo"}),
        ]
        history = [
            {"role": "user", "content": "weather?"},
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": "call_a1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_b2", "content": "25C"},
        ]
        second = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    first_body, second_body = (r.body for r in fake_anthropic.requests)
    assert first_body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert first_body["tool_choice"] == {"type": "any"}
    assistant, results = second_body["messages"][1:]
    assert assistant["content"] == [
        {"type": "tool_use", "id": "call_a1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b2", "name": "get_weather", "input": {"city": "Tokyo"}},
    ]
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_a1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_b2", "content": "25C"},
        ],
    }


def test_streamed_parallel_tool_calls(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(Reply(tool_calls=TWO_CALLS))
    with gw.client() as client:
        chunks = list(
            client.chat.completions.create(
                model=MODEL, messages=MESSAGES, tools=[WEATHER_TOOL], stream=True, parallel_tool_calls=False
            )
        )
    calls = collect_tool_calls(chunks)
    assert calls == {
        0: {"id": "call_a1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "call_b2", "name": "get_weather", "arguments": '{"city": "Tokyo"}'},
    }
    assert finish_reason(chunks) == "tool_calls"
    assert fake_anthropic.requests[0].body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_streamed_text_and_exact_usage(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    usage = {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 20, "cache_creation_input_tokens": 3}
    fake_anthropic.enqueue(Reply(usage=usage), Reply(usage=usage))
    with gw.client() as client:
        chunks = list(
            client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
        plain = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert stream_text(chunks) == "fake-anthropic: Hello there"
    assert finish_reason(chunks) == "stop"
    usage_chunks = [c.usage for c in chunks if c.usage]
    assert len(usage_chunks) == 1, "usage is reported once, at the end"
    for got in (usage_chunks[0], plain.usage):
        assert got is not None
        assert (got.prompt_tokens, got.completion_tokens, got.total_tokens) == (33, 5, 38)
        assert got.prompt_tokens_details is not None and got.prompt_tokens_details.cached_tokens == 20
    assert fake_anthropic.requests[0].body["stream"] is True


def test_stream_without_usage_option_hides_usage_chunk(gw: Gateway) -> None:
    with gw.client() as client:
        chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert all(c.usage is None for c in chunks)
    assert stream_text(chunks) == "fake-anthropic: Hello there"


@pytest.mark.parametrize("url", [PNG_DATA_URL, "https://example.com/cat.png"])
def test_image_input(gw: Gateway, fake_anthropic: FakeAnthropic, url: str) -> None:
    content = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": url}}]
    with gw.client() as client:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
    block = fake_anthropic.requests[0].body["messages"][0]["content"][1]
    if url.startswith("data:"):
        assert block == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}
    else:
        assert block == {"type": "image", "source": {"type": "url", "url": url}}


@pytest.mark.parametrize("stream", [False, True])
def test_json_mode(gw: Gateway, fake_anthropic: FakeAnthropic, stream: bool) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    fake_anthropic.enqueue(Reply(content='{"city": "Paris"}'))
    response_format = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}
    with gw.client() as client:
        if stream:
            chunks = list(
                client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, stream=True, response_format=response_format
                )
            )  # type: ignore[arg-type]
            text, finish = stream_text(chunks), finish_reason(chunks)
        else:
            answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, response_format=response_format)  # type: ignore[arg-type]
            text, finish = answer.choices[0].message.content, answer.choices[0].finish_reason
            assert answer.choices[0].message.tool_calls is None
    assert json.loads(text or "") == {"city": "Paris"}
    assert finish == "stop"
    body = fake_anthropic.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "bifrost_json_output"}
    assert body["tools"][0]["input_schema"] == schema


def test_json_object_mode(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    with gw.client() as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, response_format={"type": "json_object"})
    assert json.loads(answer.choices[0].message.content or "") == {"echo": "Hello there"}


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequences_and_length(gw: Gateway, fake_anthropic: FakeAnthropic, stream: bool) -> None:
    fake_anthropic.enqueue(Reply(content="alpha beta STOP gamma"), Reply(content="one two three four five"))
    with gw.client() as client:
        results = []
        for kwargs in ({"stop": ["STOP"]}, {"max_tokens": 2}):
            if stream:
                chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **kwargs))  # type: ignore[arg-type]
                results.append((stream_text(chunks), finish_reason(chunks)))
            else:
                answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, **kwargs)  # type: ignore[arg-type]
                results.append((answer.choices[0].message.content, answer.choices[0].finish_reason))
    assert results == [("alpha beta ", "stop"), ("one two", "length")]
    assert fake_anthropic.requests[0].body["stop_sequences"] == ["STOP"]


def test_refusal_maps_to_content_filter(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(NativeReply(content="I can't help with that.", finish="refusal"))
    with gw.client() as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.choices[0].finish_reason == "content_filter"


@pytest.mark.parametrize(
    ("reply", "status", "etype", "code", "exc"),
    [
        (
            error_reply(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                headers={"retry-after": "7"},
            ),
            429,
            "rate_limit_error",
            "rate_limit_exceeded",
            openai.RateLimitError,
        ),
        (
            error_reply(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
            400,
            "invalid_request_error",
            "context_length_exceeded",
            openai.BadRequestError,
        ),
        (
            error_reply(401, "authentication_error", "invalid x-api-key"),
            401,
            "authentication_error",
            None,
            openai.AuthenticationError,
        ),
        (
            error_reply(403, "permission_error", "Your API key does not have permission"),
            403,
            "permission_error",
            None,
            openai.PermissionDeniedError,
        ),
    ],
)
def test_errors_keep_status_and_type(
    gw: Gateway,
    fake_anthropic: FakeAnthropic,
    reply: Reply,
    status: int,
    etype: str,
    code: str | None,
    exc: type[openai.APIStatusError],
) -> None:
    fake_anthropic.enqueue(reply)
    with gw.client() as client, pytest.raises(exc) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert info.value.status_code == status
    error = info.value.body
    assert isinstance(error, dict)
    assert (error["type"], error["code"]) == (etype, code)
    assert len(fake_anthropic.requests) == 1, "client errors are not retried"
    if status == 429:
        assert info.value.response.headers["retry-after"] == "7"


def test_overloaded_529_is_retried_then_reported_as_503(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    overloaded = error_reply(529, "overloaded_error", "Overloaded")
    fake_anthropic.enqueue(overloaded)
    with gw.client() as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert answer.choices[0].message.content == "fake-anthropic: Hello there"
        assert len(fake_anthropic.requests) == 2, "529 is retryable"
        fake_anthropic.enqueue(overloaded, overloaded)
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert info.value.status_code == 503
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "overloaded_error"


def test_error_event_inside_stream(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    # Every attempt fails the same way, so whether the error lands before the first byte (a JSON error after
    # the retry) or after it (an error event), the client sees a failure and never a clean end.
    fake_anthropic.always(
        NativeReply(
            cut_after=4, stream_error={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        )
    )
    with gw.client() as client, pytest.raises(openai.APIError) as info:
        list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert "Overloaded" in str(info.value)


def test_cut_stream_is_not_a_success(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(Reply(cut_after=5))
    with gw.client() as client, pytest.raises((openai.APIError, openai.APIConnectionError)):
        list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_anthropic_to_openai(
    gw: Gateway, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI, stream: bool
) -> None:
    fake_anthropic.always(error_reply(500, "api_error", "Internal server error"))
    with gw.client() as client:
        kwargs = {"model": MODEL, "messages": MESSAGES, "extra_body": {"fallbacks": ["openai/gpt-4o-mini"]}}
        if stream:
            text = stream_text(list(client.chat.completions.create(stream=True, **kwargs)))  # type: ignore[call-overload]
        else:
            text = client.chat.completions.create(**kwargs).choices[0].message.content  # type: ignore[call-overload]
    assert text == "fake-openai: Hello there"
    assert len(fake_anthropic.requests) == 2  # the attempt and its retry
    assert fake_openai.requests[0].body["model"] == "gpt-4o-mini"


def test_fallback_openai_to_anthropic(gw: Gateway, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI) -> None:
    fake_openai.always(Reply.rate_limited())
    with gw.client() as client:
        answer = client.chat.completions.create(
            model="openai/gpt-4o", messages=MESSAGES, extra_body={"fallbacks": [MODEL]}
        )
    assert answer.choices[0].message.content == "fake-anthropic: Hello there"


def test_embeddings_are_unsupported(gw: Gateway) -> None:
    with gw.client() as client, pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input="hi")
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "unsupported_operation"
    assert "anthropic" in body["message"]


def test_request_log_has_exact_usage_for_streams(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    usage = {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 20, "cache_creation_input_tokens": 3}
    fake_anthropic.enqueue(Reply(usage=usage))
    with gw.client() as client:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, stream=True)
        text = stream_text(list(raw.parse()))
    assert text == "fake-anthropic: Hello there"
    row = gw.log.row_for(raw.headers["x-request-id"])
    assert (row["provider"], row["model"], row["stream"], row["status"]) == ("anthropic", "claude-sonnet-4-5", 1, 200)
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (33, 5, 38)
