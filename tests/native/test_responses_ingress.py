"""POST /v1/responses (the OpenAI Responses API) through the gateway with the official `openai` SDK,
translated onto OpenAI-format, Anthropic and Gemini providers, JSON and typed SSE events."""

from __future__ import annotations

import json

import openai
import pytest
from fakes import FakeOpenAI, Reply
from fakes.native import FakeAnthropic, FakeGemini
from harness import Gateway, StartGateway, make_config, openai_provider
from native_helpers import PNG_DATA_URL, TWO_CALLS, anthropic_provider, gemini_provider

OPENAI_MODEL = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-sonnet-4-5"
GEMINI = "gemini/gemini-2.5-flash"
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "strict": False,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def gw(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini
) -> Gateway:
    return start_gateway(
        make_config(
            {
                "openai": openai_provider(fake_openai.url),
                "anthropic": anthropic_provider(fake_anthropic.url),
                "gemini": gemini_provider(fake_gemini.url),
            }
        )
    )


@pytest.mark.parametrize("prefix", ["/v1", "/openai/v1"])
def test_text_response_from_openai(gw: Gateway, fake_openai: FakeOpenAI, prefix: str) -> None:
    with gw.client(prefix) as client:
        response = client.responses.create(
            model=OPENAI_MODEL, instructions="Be brief.", input="Hello there", max_output_tokens=100, temperature=0.2
        )
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "fake-openai: Hello there"
    assert response.model == OPENAI_MODEL
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (4, 3, 7)
    assert response.instructions == "Be brief." and response.temperature == 0.2
    body = fake_openai.requests[0].body
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    assert body["max_completion_tokens"] == 100


def test_function_call_round_trip_from_anthropic(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(Reply(tool_calls=TWO_CALLS))
    with gw.client() as client:
        first = client.responses.create(model=CLAUDE, input="weather in Paris and Tokyo?", tools=[TOOL])  # type: ignore[list-item]
        calls = [item for item in first.output if item.type == "function_call"]
        assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [  # type: ignore[union-attr]
            ("call_a1", "get_weather", {"city": "Paris"}),
            ("call_b2", "get_weather", {"city": "Tokyo"}),
        ]
        follow_up = [
            {"role": "user", "content": "weather in Paris and Tokyo?"},
            *[c.model_dump(exclude_none=True) for c in calls],
            *[{"type": "function_call_output", "call_id": c.call_id, "output": "20C"} for c in calls],
        ]  # type: ignore[union-attr]
        second = client.responses.create(model=CLAUDE, input=follow_up, tools=[TOOL])  # type: ignore[arg-type, list-item]
    assert second.output_text.startswith("fake-anthropic")
    messages = fake_anthropic.requests[1].body["messages"]
    assert [b["type"] for b in messages[1]["content"]] == ["tool_use", "tool_use"]
    assert [b["tool_use_id"] for b in messages[2]["content"]] == ["call_a1", "call_b2"]


def test_stream_events_from_openai(gw: Gateway) -> None:
    with gw.client() as client:
        events = list(client.responses.create(model=OPENAI_MODEL, input="stream me", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert deltas == "fake-openai: stream me"
    done = events[-1].response  # type: ignore[union-attr]
    assert done.output_text == "fake-openai: stream me"
    assert done.usage is not None and (done.usage.input_tokens, done.usage.output_tokens) == (2, 3)


@pytest.mark.parametrize("model", [CLAUDE, GEMINI])
def test_streamed_function_calls_with_sdk_helper(
    gw: Gateway, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini, model: str
) -> None:
    (fake_anthropic if model == CLAUDE else fake_gemini).enqueue(Reply(tool_calls=TWO_CALLS))
    with gw.client() as client, client.responses.stream(model=model, input="weather?", tools=[TOOL]) as stream:  # type: ignore[list-item]
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Tokyo"}),
    ]


def test_json_schema_and_image_to_gemini(gw: Gateway, fake_gemini: FakeGemini) -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    with gw.client() as client:
        response = client.responses.create(
            model=GEMINI,
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "describe"},
                        {"type": "input_image", "image_url": PNG_DATA_URL},
                    ],
                }
            ],
            text={"format": {"type": "json_schema", "name": "out", "schema": schema}},
        )  # type: ignore[arg-type, list-item]
    assert json.loads(response.output_text) == {"echo": "describe"}
    body = fake_gemini.requests[0].body
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    assert body["contents"][0]["parts"][1]["inlineData"]["mimeType"] == "image/png"


def test_length_cut_is_incomplete(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(Reply(content="one two three four"))
    with gw.client() as client:
        response = client.responses.create(model=CLAUDE, input="x", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "one two"


def test_errors(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.rate_limited())
    with gw.client() as client:
        with pytest.raises(openai.RateLimitError):
            client.responses.create(model=OPENAI_MODEL, input="x")
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model=OPENAI_MODEL, input="x", previous_response_id="resp_123")
        assert "stores no responses" in str(info.value)
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model=OPENAI_MODEL, input="x", tools=[{"type": "web_search"}])  # type: ignore[list-item]
        assert "hosted by OpenAI" in str(info.value)


def test_error_mid_stream_raises(gw: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.always(Reply(content="a b c d e f", cut_after=3))
    with gw.client() as client, pytest.raises(openai.APIError):
        for _ in client.responses.create(model=OPENAI_MODEL, input="x", stream=True):
            pass


def test_fallback_across_formats(gw: Gateway, fake_gemini: FakeGemini, fake_anthropic: FakeAnthropic) -> None:
    fake_gemini.always(
        Reply(status=503, json={"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})
    )
    with gw.client() as client:
        response = client.responses.create(model=GEMINI, input="x", extra_body={"fallbacks": [CLAUDE]})
    assert response.output_text == "fake-anthropic: x"
