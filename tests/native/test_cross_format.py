"""Tool calls across formats — the field's most common translation bugs: an SDK of one vendor driving a
provider of another through a full tool round trip, streamed and not."""

from __future__ import annotations

import pytest
from fakes import Reply
from fakes.native import FakeAnthropic, FakeBedrock, FakeGemini
from google.genai import types
from harness import Gateway, StartGateway, make_config
from native_helpers import (
    TWO_CALLS,
    anthropic_client,
    anthropic_provider,
    bedrock_provider,
    gemini_provider,
    genai_client,
)

TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def gw(
    start_gateway: StartGateway, fake_anthropic: FakeAnthropic, fake_gemini: FakeGemini, fake_bedrock: FakeBedrock
) -> Gateway:
    return start_gateway(
        make_config(
            {
                "anthropic": anthropic_provider(fake_anthropic.url),
                "gemini": gemini_provider(fake_gemini.url),
                "bedrock": bedrock_provider(fake_bedrock.url),
            }
        )
    )


@pytest.mark.parametrize("model", ["gemini/gemini-2.5-flash", "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"])
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_tool_round_trip(
    gw: Gateway, fake_gemini: FakeGemini, fake_bedrock: FakeBedrock, model: str, stream: bool
) -> None:
    fake = fake_gemini if model.startswith("gemini") else fake_bedrock
    fake.enqueue(Reply(tool_calls=TWO_CALLS))
    question = {"role": "user", "content": "weather in Paris and Tokyo?"}
    with anthropic_client(gw) as client:
        if stream:
            with client.messages.stream(
                model=model,
                max_tokens=100,
                tools=[TOOL],  # type: ignore[list-item]
                messages=[question],
            ) as s:  # type: ignore[list-item]
                first = s.get_final_message()
        else:
            first = client.messages.create(
                model=model,
                max_tokens=100,
                tools=[TOOL],  # type: ignore[list-item]
                messages=[question],
            )  # type: ignore[list-item]
        uses = [b for b in first.content if b.type == "tool_use"]
        assert first.stop_reason == "tool_use"
        assert [u.input for u in uses] == [{"city": "Paris"}, {"city": "Tokyo"}]  # type: ignore[union-attr]
        assert len({u.id for u in uses}) == 2  # type: ignore[union-attr]
        results = [{"type": "tool_result", "tool_use_id": u.id, "content": "20C"} for u in uses]  # type: ignore[union-attr]
        final = client.messages.create(
            model=model,
            max_tokens=100,
            tools=[TOOL],  # type: ignore[list-item]
            messages=[
                question,
                {"role": "assistant", "content": first.content},  # type: ignore[list-item]
                {"role": "user", "content": results},
            ],
        )  # type: ignore[list-item]
    assert final.stop_reason == "end_turn"
    # The provider's own validation accepted the history (results matched to calls), and got both results.
    last = fake.requests[-1].body
    if model.startswith("gemini"):
        assert [p["functionResponse"]["name"] for p in last["contents"][2]["parts"]] == ["get_weather"] * 2
    else:
        assert [b["toolResult"]["toolUseId"] for b in last["messages"][2]["content"]] == [u.id for u in uses]  # type: ignore[union-attr]


def test_genai_sdk_function_round_trip_on_anthropic(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(Reply(tool_calls=TWO_CALLS))
    client = genai_client(gw)
    decl = types.FunctionDeclaration(
        name="get_weather",
        description="Weather",
        parameters=types.Schema(type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}),
    )
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[decl])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    question = types.Content(role="user", parts=[types.Part(text="weather?")])
    chunks = list(
        client.models.generate_content_stream(model="anthropic/claude-sonnet-4-5", contents=[question], config=config)
    )
    calls = [p for c in chunks if c.candidates for p in (c.candidates[0].content.parts or ()) if p.function_call]
    assert [p.function_call.args for p in calls] == [{"city": "Paris"}, {"city": "Tokyo"}]  # type: ignore[union-attr]
    answers = [
        types.Part(
            function_response=types.FunctionResponse(id=p.function_call.id, name="get_weather", response={"temp": 20})
        )
        for p in calls
    ]  # type: ignore[union-attr]
    response = client.models.generate_content(
        model="anthropic/claude-sonnet-4-5",
        config=config,
        contents=[question, types.Content(role="model", parts=calls), types.Content(role="user", parts=answers)],
    )
    assert response.text == "fake-anthropic: "
    sent = fake_anthropic.requests[-1].body["messages"]
    assert [b["id"] for b in sent[1]["content"]] == ["call_a1", "call_b2"]
    assert [b["tool_use_id"] for b in sent[2]["content"]] == ["call_a1", "call_b2"]
