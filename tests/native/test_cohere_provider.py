"""Cohere v2 through the gateway, driven by the `openai`, `anthropic` and `google-genai` SDKs."""

from __future__ import annotations

import json

import openai
import pytest
from fakes import FakeOpenAI, Reply
from fakes.native import FakeCohere, NativeReply
from fakes.native.cohere_fake import error_reply
from harness import Gateway, StartGateway, make_config, openai_provider
from native_helpers import (
    MESSAGES,
    PNG_DATA_URL,
    TWO_CALLS,
    WEATHER_TOOL,
    anthropic_client,
    cohere_provider,
    collect_tool_calls,
    finish_reason,
    genai_client,
    stream_text,
)

MODEL = "cohere/command-a-03-2025"


@pytest.fixture
def gw(start_gateway: StartGateway, fake_cohere: FakeCohere, fake_openai: FakeOpenAI) -> Gateway:
    return start_gateway(
        make_config(
            {"cohere": cohere_provider(fake_cohere.url, max_retries=1), "openai": openai_provider(fake_openai.url)}
        )
    )


def test_plain_chat_system_and_multi_turn(gw: Gateway, fake_cohere: FakeCohere) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ]
    with gw.client() as client:
        answer = client.chat.completions.create(model=MODEL, messages=messages, top_p=0.5, temperature=0.3, seed=3)
    assert answer.choices[0].message.content == "fake-cohere: three"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (5, 2)
    (rec,) = fake_cohere.requests
    assert rec.path == "/v2/chat" and rec.bearer == "co-fake-key"
    assert rec.body == {
        "model": "command-a-03-2025",
        "stream": False,
        "p": 0.5,
        "temperature": 0.3,
        "seed": 3,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ],
    }


def test_tool_round_trip_parallel(gw: Gateway, fake_cohere: FakeCohere) -> None:
    fake_cohere.enqueue(Reply(tool_calls=TWO_CALLS))
    with gw.client() as client:
        first = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, tools=[WEATHER_TOOL], tool_choice="required"
        )
        message = first.choices[0].message
        assert first.choices[0].finish_reason == "tool_calls"
        assert [(c.id, json.loads(c.function.arguments)) for c in message.tool_calls or ()] == [
            ("call_a1", {"city": "Paris"}),
            ("call_b2", {"city": "Tokyo"}),
        ]
        assert message.model_extra and message.model_extra.get("reasoning_content") == "I will call the tools."
        history = [
            *MESSAGES,
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": "call_a1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_b2", "content": "25C"},
        ]
        second = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert fake_cohere.requests[0].body["tool_choice"] == "REQUIRED"
    sent = fake_cohere.requests[1].body["messages"]
    assert sent[1]["tool_calls"][0] == {
        "id": "call_a1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    assert sent[2:] == [
        {"role": "tool", "tool_call_id": "call_a1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b2", "content": "25C"},
    ]


def test_streamed_parallel_tools_and_usage(gw: Gateway, fake_cohere: FakeCohere) -> None:
    fake_cohere.enqueue(
        Reply(
            tool_calls=TWO_CALLS,
            usage={
                "tokens": {"input_tokens": 12, "output_tokens": 7},
                "billed_units": {"input_tokens": 10, "output_tokens": 7},
            },
        )
    )
    with gw.client() as client:
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                tools=[WEATHER_TOOL],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert collect_tool_calls(chunks) == {
        0: {"id": "call_a1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        1: {"id": "call_b2", "name": "get_weather", "arguments": '{"city": "Tokyo"}'},
    }
    assert finish_reason(chunks) == "tool_calls"
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0] is not None
    assert (usage[0].prompt_tokens, usage[0].completion_tokens) == (12, 7), "real token counts, not billed units"


def test_streamed_text_stop_length_and_json(gw: Gateway, fake_cohere: FakeCohere) -> None:
    fake_cohere.enqueue(Reply(content="a b STOP c"), Reply(content="one two three"))
    with gw.client() as client:
        stopped = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, stop="STOP"))
        cut = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
        json_answer = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        )
    assert (stream_text(stopped), finish_reason(stopped)) == ("a b ", "stop")
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("one two", "length")
    assert json.loads(json_answer.choices[0].message.content or "") == {"echo": "Hello there"}
    assert fake_cohere.requests[0].body["stop_sequences"] == ["STOP"]
    assert fake_cohere.requests[2].body["response_format"] == {"type": "json_object", "json_schema": {"type": "object"}}


def test_image_input(gw: Gateway, fake_cohere: FakeCohere) -> None:
    content = [{"type": "text", "text": "what"}, {"type": "image_url", "image_url": {"url": PNG_DATA_URL}}]
    with gw.client() as client:
        client.chat.completions.create(
            model="cohere/command-a-vision-07-2025", messages=[{"role": "user", "content": content}]
        )
    assert fake_cohere.requests[0].body["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": PNG_DATA_URL},
    }


def test_embeddings(gw: Gateway, fake_cohere: FakeCohere) -> None:
    with gw.client() as client:
        result = client.embeddings.create(model="cohere/embed-v4.0", input=["a b", "c"], dimensions=6)
    assert [len(d.embedding) for d in result.data] == [6, 6] and result.usage.prompt_tokens == 3
    assert fake_cohere.requests[0].body == {
        "model": "embed-v4.0",
        "texts": ["a b", "c"],
        "input_type": "search_document",
        "embedding_types": ["float"],
        "output_dimension": 6,
    }


@pytest.mark.parametrize(
    ("reply", "status", "code", "exc"),
    [
        (
            error_reply(429, "You are using a Trial key, which is limited to 10 API calls / minute."),
            429,
            None,
            openai.RateLimitError,
        ),
        (
            error_reply(400, "too many tokens: total number of tokens in the prompt cannot exceed 256000"),
            400,
            "context_length_exceeded",
            openai.BadRequestError,
        ),
        (error_reply(422, "invalid request: unsupported parameter"), 400, None, openai.BadRequestError),
    ],
)
def test_errors(
    gw: Gateway, fake_cohere: FakeCohere, reply: Reply, status: int, code: str | None, exc: type[openai.APIStatusError]
) -> None:
    fake_cohere.always(reply)
    with gw.client() as client, pytest.raises(exc) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert info.value.status_code == status
    assert isinstance(info.value.body, dict) and info.value.body["code"] == code


def test_invalid_key(start_gateway: StartGateway, fake_cohere: FakeCohere) -> None:
    gw = start_gateway(make_config({"cohere": cohere_provider(fake_cohere.url, key="bad")}))
    with gw.client() as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)


def test_other_sdks_and_fallback(gw: Gateway, fake_cohere: FakeCohere, fake_openai: FakeOpenAI) -> None:
    with anthropic_client(gw) as client:
        message = client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hey"}])
    assert message.content[0].text == "fake-cohere: hey"  # type: ignore[union-attr]
    genai = genai_client(gw)
    assert genai.models.generate_content(model=MODEL, contents="yo").text == "fake-cohere: yo"
    fake_cohere.always(NativeReply(status=503, json={"message": "service unavailable"}))
    with gw.client() as client:
        answer = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_body={"fallbacks": ["openai/gpt-4o-mini"]}
        )
    assert answer.choices[0].message.content == "fake-openai: Hello there"
    assert len(fake_cohere.requests) == 4  # two earlier calls, then the failing attempt and its retry
