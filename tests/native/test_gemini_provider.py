"""The Gemini provider through the gateway, driven by the official `openai` SDK."""

from __future__ import annotations

import json

import openai
import pytest
from fakes import FakeOpenAI, Reply
from fakes.native import FakeGemini, NativeReply
from fakes.native.gemini_fake import error_reply
from harness import Gateway, StartGateway, make_config, openai_provider
from native_helpers import (
    MESSAGES,
    PNG_B64,
    PNG_DATA_URL,
    TWO_CALLS,
    WEATHER_TOOL,
    collect_tool_calls,
    finish_reason,
    gemini_provider,
    stream_text,
)

MODEL = "gemini/gemini-2.5-flash"


@pytest.fixture
def gw(start_gateway: StartGateway, fake_gemini: FakeGemini, fake_openai: FakeOpenAI) -> Gateway:
    return start_gateway(
        make_config(
            {"gemini": gemini_provider(fake_gemini.url, max_retries=1), "openai": openai_provider(fake_openai.url)}
        )
    )


def test_plain_chat(gw: Gateway, fake_gemini: FakeGemini) -> None:
    with gw.client() as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.choices[0].message.content == "fake-gemini: Hello there"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == "gemini-2.5-flash"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (2, 3, 5)
    (rec,) = fake_gemini.requests
    assert rec.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert rec.headers["x-goog-api-key"] == "gemini-fake-key"
    assert rec.body == {"contents": [{"role": "user", "parts": [{"text": "Hello there"}]}]}


def test_system_prompt_multi_turn_and_generation_config(gw: Gateway, fake_gemini: FakeGemini) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ]
    with gw.client() as client:
        answer = client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=40, temperature=0.3, top_p=0.5, seed=7, presence_penalty=0.1
        )
    assert answer.choices[0].message.content == "fake-gemini: three"
    body = fake_gemini.requests[0].body
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["generationConfig"] == {
        "maxOutputTokens": 40,
        "temperature": 0.3,
        "topP": 0.5,
        "seed": 7,
        "presencePenalty": 0.1,
    }


def test_tool_round_trip_parallel(gw: Gateway, fake_gemini: FakeGemini) -> None:
    strict_tool = {
        "type": "function",
        "function": {
            **WEATHER_TOOL["function"],
            "strict": True,
            "parameters": {
                **WEATHER_TOOL["function"]["parameters"],
                "additionalProperties": False,
                "properties": {"city": {"type": ["string", "null"]}},
            },
        },
    }
    fake_gemini.enqueue(Reply(tool_calls=TWO_CALLS))
    with gw.client() as client:
        first = client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=[strict_tool])
        message = first.choices[0].message
        assert first.choices[0].finish_reason == "tool_calls"
        calls = message.tool_calls or []
        assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
            ("get_weather", {"city": "Paris"}),
            ("get_weather", {"city": "Tokyo"}),
        ]
        assert len({c.id for c in calls}) == 2 and all(c.id for c in calls)
        history = [
            *MESSAGES,
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": calls[1].id, "content": '{"temp": 25}'},
            {"role": "tool", "tool_call_id": calls[0].id, "content": "18C"},
        ]
        second = client.chat.completions.create(model=MODEL, messages=history, tools=[strict_tool])
    assert second.choices[0].finish_reason == "stop"
    decl = fake_gemini.requests[0].body["tools"][0]["functionDeclarations"][0]
    assert decl["parameters"] == {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING", "nullable": True}},
        "required": ["city"],
    }
    contents = fake_gemini.requests[1].body["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_weather", "args": {"city": "Tokyo"}}},
        ],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp": 25}}},
            {"functionResponse": {"name": "get_weather", "response": {"content": "18C"}}},
        ],
    }


def test_streamed_parallel_tool_calls_and_forced_choice(gw: Gateway, fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(Reply(tool_calls=TWO_CALLS))
    with gw.client() as client:
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                tools=[WEATHER_TOOL],
                stream=True,
                tool_choice={"type": "function", "function": {"name": "get_weather"}},
            )
        )
    calls = collect_tool_calls(chunks)
    assert [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Tokyo"}),
    ]
    assert finish_reason(chunks) == "tool_calls"
    rec = fake_gemini.requests[0]
    assert rec.path.endswith(":streamGenerateContent") and rec.query == {"alt": "sse"}
    assert rec.body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}


def test_streamed_text_and_exact_usage(gw: Gateway, fake_gemini: FakeGemini) -> None:
    usage = {
        "promptTokenCount": 30,
        "candidatesTokenCount": 5,
        "thoughtsTokenCount": 7,
        "cachedContentTokenCount": 12,
        "totalTokenCount": 42,
    }
    fake_gemini.enqueue(Reply(usage=usage), Reply(usage=usage))
    with gw.client() as client:
        chunks = list(
            client.chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
        plain = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert stream_text(chunks) == "fake-gemini: Hello there"
    assert finish_reason(chunks) == "stop"
    reported = [c.usage for c in chunks if c.usage]
    assert len(reported) == 1
    for got in (reported[0], plain.usage):
        assert got is not None
        assert (got.prompt_tokens, got.completion_tokens, got.total_tokens) == (30, 12, 42)
        assert got.prompt_tokens_details is not None and got.prompt_tokens_details.cached_tokens == 12


@pytest.mark.parametrize("url", [PNG_DATA_URL, "https://example.com/cat.png"])
def test_image_input(gw: Gateway, fake_gemini: FakeGemini, url: str) -> None:
    content = [{"type": "text", "text": "what"}, {"type": "image_url", "image_url": {"url": url}}]
    with gw.client() as client:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
    part = fake_gemini.requests[0].body["contents"][0]["parts"][1]
    if url.startswith("data:"):
        assert part == {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}
    else:
        assert part == {"fileData": {"mimeType": "image/png", "fileUri": url}}


def test_json_mode(gw: Gateway, fake_gemini: FakeGemini) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False}
    with gw.client() as client:
        answer = client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )
        loose = client.chat.completions.create(model=MODEL, messages=MESSAGES, response_format={"type": "json_object"})
    assert json.loads(answer.choices[0].message.content or "") == {"echo": "Hello there"}
    assert json.loads(loose.choices[0].message.content or "") == {"echo": "Hello there"}
    config = fake_gemini.requests[0].body["generationConfig"]
    assert config == {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}},
    }


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequences_length_and_safety(gw: Gateway, fake_gemini: FakeGemini, stream: bool) -> None:
    fake_gemini.enqueue(
        Reply(content="alpha beta STOP gamma"),
        Reply(content="one two three"),
        NativeReply(content="hmm", finish="SAFETY"),
    )
    results = []
    with gw.client() as client:
        for kwargs in ({"stop": "STOP"}, {"max_completion_tokens": 2}, {}):
            if stream:
                chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, **kwargs))  # type: ignore[arg-type]
                results.append((stream_text(chunks), finish_reason(chunks)))
            else:
                a = client.chat.completions.create(model=MODEL, messages=MESSAGES, **kwargs)  # type: ignore[arg-type]
                results.append((a.choices[0].message.content, a.choices[0].finish_reason))
    assert results == [("alpha beta ", "stop"), ("one two", "length"), ("hmm", "content_filter")]
    assert fake_gemini.requests[0].body["generationConfig"] == {"stopSequences": ["STOP"]}


def test_multiple_candidates(gw: Gateway) -> None:
    with gw.client() as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, n=2)
    assert [c.index for c in answer.choices] == [0, 1]


def test_embeddings(gw: Gateway, fake_gemini: FakeGemini) -> None:
    with gw.client() as client:
        result = client.embeddings.create(model="gemini/gemini-embedding-001", input=["a b", "c"], dimensions=4)
    assert [len(d.embedding) for d in result.data] == [4, 4]
    assert [d.index for d in result.data] == [0, 1]
    rec = fake_gemini.requests[0]
    assert rec.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert rec.body["requests"][1] == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "c"}]},
        "outputDimensionality": 4,
    }


def test_prompt_blocked_is_a_content_filter_error(gw: Gateway, fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(
        NativeReply(json={"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {}}, status=200)
    )
    with gw.client() as client, pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "content_filter"


@pytest.mark.parametrize(
    ("reply", "status", "code", "exc"),
    [
        (
            error_reply(
                429,
                "Resource has been exhausted (e.g. check quota).",
                [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9s"}],
            ),
            429,
            "resource_exhausted",
            openai.RateLimitError,
        ),
        (
            error_reply(400, "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."),
            400,
            "context_length_exceeded",
            openai.BadRequestError,
        ),
        (
            error_reply(403, "Permission denied on resource project."),
            403,
            "permission_denied",
            openai.PermissionDeniedError,
        ),
    ],
)
def test_errors(
    gw: Gateway, fake_gemini: FakeGemini, reply: Reply, status: int, code: str, exc: type[openai.APIStatusError]
) -> None:
    fake_gemini.enqueue(reply)
    with gw.client() as client, pytest.raises(exc) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert info.value.status_code == status
    assert isinstance(info.value.body, dict) and info.value.body["code"] == code
    if status == 429:
        assert info.value.response.headers["retry-after"] == "9"


def test_invalid_key_is_401(start_gateway: StartGateway, fake_gemini: FakeGemini) -> None:
    gw = start_gateway(make_config({"gemini": gemini_provider(fake_gemini.url, key="wrong")}))
    with gw.client() as client, pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "invalid_api_key"


def test_unavailable_is_retried(gw: Gateway, fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(error_reply(503, "The model is overloaded. Please try again later."))
    with gw.client() as client:
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.choices[0].message.content == "fake-gemini: Hello there"
    assert len(fake_gemini.requests) == 2


def test_cut_stream_is_an_error(gw: Gateway, fake_gemini: FakeGemini) -> None:
    fake_gemini.always(Reply(content="a b c d e f g", cut_after=3))
    with gw.client() as client, pytest.raises((openai.APIError, openai.APIConnectionError)):
        list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))


def test_fallback_gemini_to_openai(gw: Gateway, fake_gemini: FakeGemini, fake_openai: FakeOpenAI) -> None:
    fake_gemini.always(error_reply(500, "Internal error encountered."))
    with gw.client() as client:
        answer = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_body={"fallbacks": ["openai/gpt-4o-mini"]}
        )
    assert answer.choices[0].message.content == "fake-openai: Hello there"
