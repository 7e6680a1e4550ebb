"""The /genai ingress, driven by the official `google-genai` SDK, with models served by OpenAI, Anthropic,
the mock, and Gemini itself."""

from __future__ import annotations

import json

import pytest
from fakes import FakeOpenAI, Reply
from fakes.native import FakeAnthropic, FakeGemini
from fakes.native.gemini_fake import error_reply
from google.genai import errors, types
from harness import Gateway, StartGateway, make_config, openai_provider
from native_helpers import PNG_B64, TWO_CALLS, anthropic_provider, gemini_provider, genai_client

OPENAI_MODEL = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-sonnet-4-5"
GEMINI = "gemini/gemini-2.5-flash"
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city",
    parameters=types.Schema(
        type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}, required=["city"]
    ),
)


@pytest.fixture
def gw(
    start_gateway: StartGateway, fake_gemini: FakeGemini, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic
) -> Gateway:
    return start_gateway(
        make_config(
            {
                "gemini": gemini_provider(fake_gemini.url),
                "openai": openai_provider(fake_openai.url),
                "anthropic": anthropic_provider(fake_anthropic.url),
            }
        )
    )


def test_generate_served_by_openai(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    client = genai_client(gw)
    response = client.models.generate_content(
        model=OPENAI_MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part(text="Hi")]),
            types.Content(role="model", parts=[types.Part(text="Hello!")]),
            types.Content(role="user", parts=[types.Part(text="How are you?")]),
        ],
        config=types.GenerateContentConfig(
            system_instruction="Be brief.", max_output_tokens=50, temperature=0.4, stop_sequences=["END"]
        ),
    )
    assert response.text == "fake-openai: How are you?"
    assert response.candidates is not None and response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata is not None
    assert (response.usage_metadata.prompt_token_count, response.usage_metadata.candidates_token_count) == (7, 4)
    body = fake_openai.requests[0].body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"},
    ]
    assert (body["max_tokens"], body["temperature"], body["stop"]) == (50, 0.4, ["END"])


def test_stream_served_by_anthropic(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    client = genai_client(gw)
    chunks = list(client.models.generate_content_stream(model=CLAUDE, contents="stream please"))
    assert "".join(c.text or "" for c in chunks) == "fake-anthropic: stream please"
    last = chunks[-1]
    assert last.candidates is not None and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.total_token_count == 5
    assert fake_anthropic.requests[0].body["stream"] is True


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_function_calls_round_trip_via_openai(gw: Gateway, fake_openai: FakeOpenAI, stream: bool) -> None:
    fake_openai.enqueue(Reply(tool_calls=TWO_CALLS))
    client = genai_client(gw)
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    question = types.Content(role="user", parts=[types.Part(text="weather?")])
    if stream:
        chunks = list(client.models.generate_content_stream(model=OPENAI_MODEL, contents=[question], config=config))
        calls = [fc for c in chunks for fc in (c.function_calls or ())]
        model_parts = [
            p for c in chunks if c.candidates for p in (c.candidates[0].content.parts or ()) if p.function_call
        ]
    else:
        response = client.models.generate_content(model=OPENAI_MODEL, contents=[question], config=config)
        calls = response.function_calls or []
        model_parts = [p for p in response.candidates[0].content.parts or () if p.function_call]  # type: ignore[index, union-attr]
    assert [(c.name, c.args) for c in calls] == [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Tokyo"})]
    answers = [types.Part.from_function_response(name="get_weather", response={"temp": t}) for t in (18, 25)]
    client.models.generate_content(
        model=OPENAI_MODEL,
        config=config,
        contents=[question, types.Content(role="model", parts=model_parts), types.Content(role="user", parts=answers)],
    )
    body = fake_openai.requests[1].body
    assert body["tools"][0]["function"]["parameters"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    assistant = body["messages"][1]
    assert [json.loads(c["function"]["arguments"]) for c in assistant["tool_calls"]] == [
        {"city": "Paris"},
        {"city": "Tokyo"},
    ]
    ids = [c["id"] for c in assistant["tool_calls"]]
    assert body["messages"][2:] == [
        {"role": "tool", "tool_call_id": ids[0], "content": '{"temp":18}'},
        {"role": "tool", "tool_call_id": ids[1], "content": '{"temp":25}'},
    ]


def test_gemini_round_trip_keeps_thought_signature(gw: Gateway, fake_gemini: FakeGemini) -> None:
    client = genai_client(gw)
    signature = b"sig-bytes"
    model_turn = types.Content(
        role="model",
        parts=[
            types.Part(
                function_call=types.FunctionCall(name="get_weather", args={"city": "Rome"}), thought_signature=signature
            )
        ],
    )
    contents = [
        types.Content(role="user", parts=[types.Part(text="weather in Rome?")]),
        model_turn,
        types.Content(
            role="user", parts=[types.Part.from_function_response(name="get_weather", response={"temp": 20})]
        ),
    ]
    response = client.models.generate_content(
        model=GEMINI,
        contents=contents,
        config=types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])]),
    )
    assert response.text == "fake-gemini: "
    sent = fake_gemini.requests[0].body["contents"]
    assert sent[1]["parts"][0]["thoughtSignature"] == "c2lnLWJ5dGVz"  # base64 of the signature bytes
    assert sent[2]["parts"][0] == {"functionResponse": {"name": "get_weather", "response": {"temp": 20}}}


def test_image_json_mode_to_gemini(gw: Gateway, fake_gemini: FakeGemini) -> None:
    client = genai_client(gw)
    response = client.models.generate_content(
        model=GEMINI,
        contents=[
            types.Part.from_bytes(data=__import__("base64").b64decode(PNG_B64), mime_type="image/png"),
            "describe",
        ],
        config=types.GenerateContentConfig(
            response_mime_type="application/json",
            response_schema=types.Schema(
                type=types.Type.OBJECT, properties={"echo": types.Schema(type=types.Type.STRING)}
            ),
        ),
    )
    assert json.loads(response.text or "") == {"echo": "describe"}
    body = fake_gemini.requests[0].body
    assert body["contents"][0]["parts"][0] == {"inlineData": {"mimeType": "image/png", "data": PNG_B64}}
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    assert body["generationConfig"]["responseSchema"] == {"type": "OBJECT", "properties": {"echo": {"type": "STRING"}}}


def test_embed_content_via_openai_and_gemini(gw: Gateway, fake_openai: FakeOpenAI, fake_gemini: FakeGemini) -> None:
    client = genai_client(gw)
    result = client.models.embed_content(model="openai/text-embedding-3-small", contents=["a", "b c"])
    assert result.embeddings is not None and [len(e.values or ()) for e in result.embeddings] == [8, 8]
    assert fake_openai.requests[0].body["input"] == ["a", "b c"]
    result = client.models.embed_content(
        model="gemini/gemini-embedding-001", contents="hello", config=types.EmbedContentConfig(output_dimensionality=3)
    )
    assert result.embeddings is not None and len(result.embeddings[0].values or ()) == 3


def test_count_tokens(gw: Gateway, fake_gemini: FakeGemini) -> None:
    client = genai_client(gw)
    counted = client.models.count_tokens(model=GEMINI, contents="one two three")
    assert counted.total_tokens == 3
    assert fake_gemini.requests[0].path == "/v1beta/models/gemini-2.5-flash:countTokens"
    with pytest.raises(errors.ClientError) as info:
        client.models.count_tokens(model=OPENAI_MODEL, contents="x")
    assert info.value.code == 400 and "does not support the count_tokens endpoint" in (info.value.message or "")


def test_mock_and_models_list(gw: Gateway) -> None:
    client = genai_client(gw)
    assert "You said: ping" in (client.models.generate_content(model="mock/mock-chat", contents="ping").text or "")
    names = [m.name for m in client.models.list()]
    assert "models/gemini/gemini-2.5-flash" in names and "models/mock/mock-chat" in names


@pytest.mark.parametrize(
    ("reply", "code"), [(Reply.rate_limited(), 429), (Reply.server_error(500), 500), (Reply.bad_request(), 400)]
)
def test_errors_in_google_shape(gw: Gateway, fake_openai: FakeOpenAI, reply: Reply, code: int) -> None:
    fake_openai.enqueue(reply)
    client = genai_client(gw)
    with pytest.raises(errors.APIError) as info:
        client.models.generate_content(model=OPENAI_MODEL, contents="x")
    assert info.value.code == code
    assert info.value.status == {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 400: "INVALID_ARGUMENT"}[code]


def test_unknown_provider_and_error_mid_stream(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    client = genai_client(gw)
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model="nope/x", contents="x")
    assert info.value.code == 400
    fake_openai.always(Reply(content="a b c d e f", cut_after=3))
    with pytest.raises(errors.APIError):
        list(client.models.generate_content_stream(model=OPENAI_MODEL, contents="x"))


def test_fallback_gemini_to_anthropic(gw: Gateway, fake_gemini: FakeGemini, fake_anthropic: FakeAnthropic) -> None:
    fake_gemini.always(error_reply(503, "The model is overloaded."))
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "fallbacks": [CLAUDE]}
    import urllib.request

    request = urllib.request.Request(
        gw.url("/genai/v1beta/models/gemini/gemini-2.5-flash:generateContent"),
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert answer["candidates"][0]["content"]["parts"][0]["text"] == "fake-anthropic: x"
