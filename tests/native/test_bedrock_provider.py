"""AWS Bedrock through the gateway (Converse, ConverseStream, InvokeModel embeddings), driven by the
`openai` and `anthropic` SDKs; the fake verifies every SigV4 signature with botocore."""

from __future__ import annotations

import json

import openai
import pytest
from fakes import FakeOpenAI, Reply
from fakes.native import FakeBedrock, NativeReply
from fakes.native.bedrock_fake import error_reply
from harness import Gateway, StartGateway, make_config, openai_provider
from native_helpers import (
    MESSAGES,
    PNG_B64,
    PNG_DATA_URL,
    TWO_CALLS,
    WEATHER_TOOL,
    anthropic_client,
    bedrock_provider,
    collect_tool_calls,
    finish_reason,
    native_provider,
    stream_text,
)

CLAUDE_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
MODEL = f"bedrock/{CLAUDE_ID}"


@pytest.fixture
def gw(start_gateway: StartGateway, fake_bedrock: FakeBedrock, fake_openai: FakeOpenAI) -> Gateway:
    return start_gateway(
        make_config(
            {"bedrock": bedrock_provider(fake_bedrock.url, max_retries=1), "openai": openai_provider(fake_openai.url)}
        )
    )


def test_plain_chat_is_signed(gw: Gateway, fake_bedrock: FakeBedrock) -> None:
    with gw.client() as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.choices[0].message.content == "fake-bedrock: Hello there"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (2, 3)
    (rec,) = fake_bedrock.requests
    assert rec.path == f"/model/{CLAUDE_ID}/converse"
    assert rec.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAFAKEEXAMPLE/")
    assert fake_bedrock.verified == 1, "the signature was checked by botocore and matched"
    assert rec.body == {"messages": [{"role": "user", "content": [{"text": "Hello there"}]}]}


def test_wrong_secret_is_an_auth_error(start_gateway: StartGateway, fake_bedrock: FakeBedrock) -> None:
    provider = bedrock_provider(fake_bedrock.url)
    provider["keys"][0]["bedrock_key_config"]["secret_key"] = "not-the-secret"
    gw = start_gateway(make_config({"bedrock": provider}))
    with gw.client() as client, pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "InvalidSignatureException"
    assert fake_bedrock.verified == 0


def test_session_token_and_deployment_alias(start_gateway: StartGateway) -> None:
    fake = FakeBedrock(session_token="FwoGZXIvYXdzEXAMPLE").start()
    try:
        key = {
            "name": "sts",
            "value": "",
            "bedrock_key_config": {
                "access_key": "AKIAFAKEEXAMPLE",
                "secret_key": "fake/secret+key",
                "region": "us-west-2",
                "session_token": "FwoGZXIvYXdzEXAMPLE",
                "deployments": {"claude": "us.anthropic.claude-sonnet-4-v1:0"},
            },
        }
        gw = start_gateway(make_config({"bedrock": native_provider(fake.url, [key])}))
        with gw.client() as client:
            client.chat.completions.create(model="bedrock/claude", messages=MESSAGES)
        assert fake.requests[0].path == "/model/us.anthropic.claude-sonnet-4-v1:0/converse"
        assert fake.verified == 1
    finally:
        fake.stop()


def test_system_multi_turn_and_inference_config(gw: Gateway, fake_bedrock: FakeBedrock) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ]
    with gw.client() as client:
        client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=30, temperature=0.1, top_p=0.8, stop=["END"]
        )
    body = fake_bedrock.requests[0].body
    assert body["system"] == [{"text": "Be brief."}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["inferenceConfig"] == {"maxTokens": 30, "temperature": 0.1, "topP": 0.8, "stopSequences": ["END"]}


def test_tool_round_trip_parallel(gw: Gateway, fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.enqueue(Reply(tool_calls=TWO_CALLS))
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
        history = [
            *MESSAGES,
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": "call_a1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_b2", "content": "25C"},
        ]
        second = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert fake_bedrock.requests[0].body["toolConfig"]["toolChoice"] == {"any": {}}
    results = fake_bedrock.requests[1].body["messages"][2]["content"]
    assert results == [
        {"toolResult": {"toolUseId": "call_a1", "content": [{"text": "18C"}]}},
        {"toolResult": {"toolUseId": "call_b2", "content": [{"text": "25C"}]}},
    ]


def test_streamed_parallel_tool_calls_and_usage(gw: Gateway, fake_bedrock: FakeBedrock) -> None:
    usage = {"inputTokens": 11, "outputTokens": 6, "cacheReadInputTokens": 40, "cacheWriteInputTokens": 2}
    fake_bedrock.enqueue(Reply(tool_calls=TWO_CALLS, usage=usage))
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
    reported = [c.usage for c in chunks if c.usage]
    assert len(reported) == 1 and reported[0] is not None
    assert (reported[0].prompt_tokens, reported[0].completion_tokens, reported[0].total_tokens) == (53, 6, 59)
    assert reported[0].prompt_tokens_details is not None and reported[0].prompt_tokens_details.cached_tokens == 40
    assert fake_bedrock.requests[0].path.endswith("/converse-stream")
    assert fake_bedrock.verified == 1


def test_streamed_text_stop_and_length(gw: Gateway, fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.enqueue(Reply(content="alpha beta STOP gamma"), Reply(content="one two three"))
    with gw.client() as client:
        stopped = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, stop="STOP"))
        cut = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, max_tokens=2))
    assert (stream_text(stopped), finish_reason(stopped)) == ("alpha beta ", "stop")
    assert (stream_text(cut), finish_reason(cut)) == ("one two", "length")


def test_image_json_mode_and_guardrail(gw: Gateway, fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.enqueue(Reply(), NativeReply(content="blocked", finish="guardrail_intervened"))
    content = [{"type": "text", "text": "what"}, {"type": "image_url", "image_url": {"url": PNG_DATA_URL}}]
    with gw.client() as client:
        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": content}], response_format={"type": "json_object"}
        )
        guarded = client.chat.completions.create(model=MODEL, messages=MESSAGES)
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model=MODEL,
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
                    }
                ],
            )
    assert json.loads(answer.choices[0].message.content or "") == {"echo": "what"}
    assert answer.choices[0].finish_reason == "stop"
    body = fake_bedrock.requests[0].body
    assert body["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": PNG_B64}}}
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "bifrost_json_output"}}
    assert guarded.choices[0].finish_reason == "content_filter"
    assert "inline" in str(info.value)


def test_embeddings_titan_and_cohere(gw: Gateway, fake_bedrock: FakeBedrock) -> None:
    with gw.client() as client:
        titan = client.embeddings.create(model="bedrock/amazon.titan-embed-text-v2:0", input="a b c", dimensions=4)
        cohere = client.embeddings.create(model="bedrock/cohere.embed-english-v3", input=["x", "y"])
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model="bedrock/amazon.titan-embed-text-v2:0", input=["x", "y"])
    assert len(titan.data[0].embedding) == 4 and titan.usage.prompt_tokens == 3
    assert [len(d.embedding) for d in cohere.data] == [8, 8]
    assert fake_bedrock.requests[0].path == "/model/amazon.titan-embed-text-v2:0/invoke"
    assert fake_bedrock.requests[0].body == {"inputText": "a b c", "dimensions": 4}
    assert fake_bedrock.requests[1].body == {"texts": ["x", "y"], "input_type": "search_document"}
    assert fake_bedrock.verified == 2


@pytest.mark.parametrize(
    ("reply", "status", "exc"),
    [
        (
            error_reply(429, "ThrottlingException", "Too many requests, please wait before trying again."),
            429,
            openai.RateLimitError,
        ),
        (
            error_reply(400, "ValidationException", "Input is too long for requested model."),
            400,
            openai.BadRequestError,
        ),
        (
            error_reply(
                403, "AccessDeniedException", "You don't have access to the model with the specified model ID."
            ),
            403,
            openai.PermissionDeniedError,
        ),
    ],
)
def test_errors(
    gw: Gateway, fake_bedrock: FakeBedrock, reply: Reply, status: int, exc: type[openai.APIStatusError]
) -> None:
    fake_bedrock.always(reply)
    with gw.client() as client, pytest.raises(exc) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict)
    if status == 400:
        assert body["code"] == "context_length_exceeded"


def test_unavailable_is_retried(gw: Gateway, fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.enqueue(error_reply(503, "ServiceUnavailableException", "Bedrock is unable to process your request."))
    with gw.client() as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.choices[0].message.content == "fake-bedrock: Hello there"
    assert len(fake_bedrock.requests) == 2


def test_exception_frame_inside_stream(gw: Gateway, fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.always(
        NativeReply(cut_after=3, stream_error={"type": "throttlingException", "message": "Too many tokens"})
    )
    with gw.client() as client, pytest.raises(openai.APIError) as info:
        list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert "Too many tokens" in str(info.value)


def test_anthropic_sdk_over_bedrock_with_fallback_to_openai(
    gw: Gateway, fake_bedrock: FakeBedrock, fake_openai: FakeOpenAI
) -> None:
    with anthropic_client(gw) as client:
        message = client.messages.create(model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "hi"}])
        assert message.content[0].text == "fake-bedrock: hi"  # type: ignore[union-attr]
        fake_bedrock.always(error_reply(500, "InternalServerException", "internal"))
        fallback = client.messages.create(
            model=MODEL,
            max_tokens=20,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"fallbacks": ["openai/gpt-4o-mini"]},
        )
    assert fallback.content[0].text == "fake-openai: hi"  # type: ignore[union-attr]
