"""The /anthropic ingress, driven by the official `anthropic` SDK, with models served by other providers
(OpenAI, the mock) and by Anthropic itself."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import anthropic
import pytest
from fakes import FakeOpenAI, Reply
from fakes.native import FakeAnthropic
from fakes.native.anthropic_fake import error_reply
from harness import Gateway, StartGateway, make_config, openai_provider
from native_helpers import PNG_B64, TWO_CALLS, anthropic_client, anthropic_provider

OPENAI_MODEL = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-sonnet-4-5"
TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def gw(start_gateway: StartGateway, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI) -> Gateway:
    return start_gateway(
        make_config({"anthropic": anthropic_provider(fake_anthropic.url), "openai": openai_provider(fake_openai.url)})
    )


def test_messages_served_by_openai(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    with anthropic_client(gw) as client:
        message = client.messages.create(
            model=OPENAI_MODEL,
            max_tokens=100,
            system="Be brief.",
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "How are you?"},
            ],
        )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == OPENAI_MODEL
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "fake-openai: How are you?"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 4)
    body = fake_openai.requests[0].body
    assert body["model"] == "gpt-4o-mini"
    assert body["max_tokens"] == 100
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ]


def test_stream_served_by_openai_with_usage(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    with (
        anthropic_client(gw) as client,
        client.messages.stream(
            model=OPENAI_MODEL, max_tokens=100, messages=[{"role": "user", "content": "stream me"}]
        ) as stream,
    ):
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "fake-openai: stream me"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 3)
    assert fake_openai.requests[0].body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_use_round_trip_via_openai(gw: Gateway, fake_openai: FakeOpenAI, stream: bool) -> None:
    fake_openai.enqueue(Reply(tool_calls=TWO_CALLS))
    question = {"role": "user", "content": "weather in Paris and Tokyo?"}
    with anthropic_client(gw) as client:
        if stream:
            with client.messages.stream(
                model=OPENAI_MODEL,
                max_tokens=200,
                tools=[TOOL],  # type: ignore[list-item]
                messages=[question],
            ) as s:  # type: ignore[list-item]
                first = s.get_final_message()
        else:
            first = client.messages.create(
                model=OPENAI_MODEL,
                max_tokens=200,
                tools=[TOOL],  # type: ignore[list-item]
                tool_choice={"type": "any"},
                messages=[question],
            )  # type: ignore[list-item]
        assert first.stop_reason == "tool_use"
        uses = [b for b in first.content if b.type == "tool_use"]
        assert [(u.id, u.name, u.input) for u in uses] == [  # type: ignore[union-attr]
            ("call_a1", "get_weather", {"city": "Paris"}),
            ("call_b2", "get_weather", {"city": "Tokyo"}),
        ]
        results = [
            {"type": "tool_result", "tool_use_id": u.id, "content": f"{i}8C"}  # type: ignore[union-attr]
            for i, u in enumerate(uses)
        ]
        second = client.messages.create(
            model=OPENAI_MODEL,
            max_tokens=200,
            tools=[TOOL],  # type: ignore[list-item]
            messages=[
                question,
                {"role": "assistant", "content": first.content},  # type: ignore[list-item]
                {"role": "user", "content": [*results, {"type": "text", "text": "and now?"}]},
            ],
        )
    assert second.stop_reason == "end_turn"
    first_body, second_body = (r.body for r in fake_openai.requests)
    assert first_body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": TOOL["input_schema"],
            },
        }
    ]
    if not stream:
        assert first_body["tool_choice"] == "required"
    msgs = second_body["messages"]
    assert msgs[1]["role"] == "assistant"
    assert [(c["id"], json.loads(c["function"]["arguments"])) for c in msgs[1]["tool_calls"]] == [
        ("call_a1", {"city": "Paris"}),
        ("call_b2", {"city": "Tokyo"}),
    ]
    assert msgs[2:] == [
        {"role": "tool", "tool_call_id": "call_a1", "content": "08C"},
        {"role": "tool", "tool_call_id": "call_b2", "content": "18C"},
        {"role": "user", "content": "and now?"},
    ]


def test_image_and_stop_sequences_to_openai(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(content="done"))
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "text", "text": "describe"},
    ]
    with anthropic_client(gw) as client:
        client.messages.create(
            model=OPENAI_MODEL,
            max_tokens=10,
            stop_sequences=["END"],
            extra_body={"temperature": 0.2},
            messages=[{"role": "user", "content": content}],
        )  # type: ignore[list-item]
    body = fake_openai.requests[0].body
    assert body["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "text", "text": "describe"},
    ]
    assert (body["stop"], body["temperature"]) == (["END"], 0.2)


def test_messages_served_by_anthropic_keep_cache_control(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(Reply(usage={"input_tokens": 4, "output_tokens": 3, "cache_read_input_tokens": 100}))
    system = [{"type": "text", "text": "Long reusable context.", "cache_control": {"type": "ephemeral"}}]
    with anthropic_client(gw) as client:
        message = client.messages.create(
            model=CLAUDE,
            max_tokens=64,
            system=system,  # type: ignore[arg-type]
            messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
        )
    assert message.content[0].text == "fake-anthropic: Hi"  # type: ignore[union-attr]
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (
        4,
        100,
        3,
    )
    rec = fake_anthropic.requests[0]
    assert rec.body["system"] == system
    assert rec.body["max_tokens"] == 64
    assert rec.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "anthropic_beta" not in rec.body


def test_stream_served_by_anthropic(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(Reply(tool_calls=TWO_CALLS[:1]))
    with (
        anthropic_client(gw) as client,
        client.messages.stream(
            model=CLAUDE, max_tokens=64, tools=[TOOL], messages=[{"role": "user", "content": "w?"}]
        ) as s,
    ):  # type: ignore[list-item]
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Paris"}


def test_mock_provider_through_anthropic_sdk(gw: Gateway) -> None:
    with anthropic_client(gw) as client:
        message = client.messages.create(
            model="mock/mock-chat", max_tokens=10, messages=[{"role": "user", "content": "ping"}]
        )
    assert "You said: ping" in message.content[0].text  # type: ignore[union-attr]


def test_count_tokens(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    with anthropic_client(gw) as client:
        counted = client.messages.count_tokens(
            model=CLAUDE, system="one two", messages=[{"role": "user", "content": "three four five"}]
        )
        assert counted.input_tokens == 5
        assert fake_anthropic.requests[0].path == "/v1/messages/count_tokens"
        assert "max_tokens" not in fake_anthropic.requests[0].body
        with pytest.raises(anthropic.BadRequestError) as info:
            client.messages.count_tokens(model=OPENAI_MODEL, messages=[{"role": "user", "content": "x"}])
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "provider 'openai' does not support the count_tokens endpoint" in body["error"]["message"]


@pytest.mark.parametrize(
    ("reply", "exc", "status"),
    [
        (Reply.rate_limited(retry_after=3), anthropic.RateLimitError, 429),
        (
            Reply.error(401, "Incorrect API key provided", "invalid_request_error", code="invalid_api_key"),
            anthropic.AuthenticationError,
            401,
        ),
        (Reply.server_error(503), anthropic.InternalServerError, 503),
        (Reply.bad_request("This model's maximum context length is 128000 tokens."), anthropic.BadRequestError, 400),
    ],
)
def test_errors_in_anthropic_shape(
    gw: Gateway, fake_openai: FakeOpenAI, reply: Reply, exc: type[anthropic.APIStatusError], status: int
) -> None:
    fake_openai.enqueue(reply)
    with anthropic_client(gw) as client, pytest.raises(exc) as info:
        client.messages.create(model=OPENAI_MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    expected = {429: "rate_limit_error", 401: "authentication_error", 503: "api_error", 400: "invalid_request_error"}[
        status
    ]
    assert body["error"]["type"] == expected
    if status == 429:
        assert info.value.response.headers["retry-after"] == "3"


def test_overloaded_anthropic_answers_529_to_anthropic_clients(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(error_reply(529, "overloaded_error", "Overloaded"))
    with anthropic_client(gw) as client, pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 529
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == "overloaded_error"


def test_invalid_request_and_unknown_provider(gw: Gateway) -> None:
    with anthropic_client(gw) as client:
        with pytest.raises(anthropic.BadRequestError) as info:
            client.messages.create(model="nope/model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
        assert "unknown provider 'nope'" in info.value.body["error"]["message"]  # type: ignore[index]
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model=OPENAI_MODEL, max_tokens=10, messages=[{"role": "system", "content": "x"}])  # type: ignore[list-item, misc]


def test_error_event_mid_stream(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(content="a b c d e f", cut_after=3))
    with (
        anthropic_client(gw) as client,
        pytest.raises(anthropic.APIStatusError) as info,
        client.messages.stream(model=OPENAI_MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}]) as s,
    ):
        for _ in s.text_stream:
            pass
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "api_error"


def test_fallback_from_anthropic_to_openai(gw: Gateway, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI) -> None:
    fake_anthropic.always(error_reply(529, "overloaded_error", "Overloaded"))
    with anthropic_client(gw) as client:
        message = client.messages.create(
            model=CLAUDE,
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
            extra_body={"fallbacks": [OPENAI_MODEL]},
        )
    assert message.content[0].text == "fake-openai: x"  # type: ignore[union-attr]


def test_x_api_key_header_and_models_list(gw: Gateway) -> None:
    body = json.dumps({"model": "mock/mock-chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hey"}]})
    request = urllib.request.Request(
        gw.url("/anthropic/v1/messages"),
        data=body.encode(),
        method="POST",
        headers={"x-api-key": "anything", "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read())["type"] == "message"
    with anthropic_client(gw) as client:
        ids = [m.id for m in client.models.list()]
    assert "anthropic/claude-sonnet-4-5" in ids and "mock/mock-chat" in ids


def test_missing_max_tokens_is_an_anthropic_400(gw: Gateway) -> None:
    body = json.dumps({"model": "mock/mock-chat", "messages": [{"role": "user", "content": "hey"}]})
    request = urllib.request.Request(
        gw.url("/anthropic/v1/messages"),
        data=body.encode(),
        method="POST",
        headers={"content-type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 400
    payload = json.loads(info.value.read())
    assert payload["type"] == "error" and "max_tokens" in payload["error"]["message"]


def test_anthropic_only_fields_never_reach_openai(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    system = [{"type": "text", "text": "Context.", "cache_control": {"type": "ephemeral"}}]
    messages = [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Oslo"}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": True},
                {"type": "text", "text": "retry?", "cache_control": {"type": "ephemeral"}},
            ],
        },
    ]
    with anthropic_client(gw) as client:
        client.messages.create(
            model=OPENAI_MODEL,
            max_tokens=10,
            system=system,
            tools=[TOOL],  # type: ignore[arg-type, list-item]
            messages=messages,
            extra_body={"top_k": 3},
        )  # type: ignore[arg-type]
    raw = fake_openai.requests[0].raw.decode()
    for field in ("cache_control", "is_error", "top_k"):
        assert field not in raw, f"{field} was forwarded to an OpenAI-format upstream"
    assert fake_openai.requests[0].body["messages"][3] == {"role": "tool", "tool_call_id": "t1", "content": "boom"}


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequence_survives_anthropic_to_anthropic(
    gw: Gateway, fake_anthropic: FakeAnthropic, stream: bool
) -> None:
    fake_anthropic.enqueue(Reply(content="one two END three"))
    kwargs = {
        "model": CLAUDE,
        "max_tokens": 20,
        "stop_sequences": ["END"],
        "messages": [{"role": "user", "content": "count"}],
    }
    with anthropic_client(gw) as client:
        if stream:
            with client.messages.stream(**kwargs) as s:  # type: ignore[arg-type]
                message = s.get_final_message()
        else:
            message = client.messages.create(**kwargs)  # type: ignore[arg-type]
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
    assert message.content[0].text == "one two "  # type: ignore[union-attr]
