"""Non-streaming inference through the gateway with the official SDK: chat, tool calls, unknown
fields, embeddings, legacy completions, models, and provider/model routing."""

from __future__ import annotations

import json
import urllib.request

import pytest
from fakes import FakeOpenAI, Reply
from fakes.wire import embedding_vector
from harness import Gateway, StartGateway, assert_gateway_headers, custom_provider, make_config, openai_provider
from harness.config import key

MESSAGES = [{"role": "user", "content": "Hello, Bifrost!"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    }
]
TOOL_CALL = ({"id": "call_w1", "name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'},)


def test_health(gateway: Gateway) -> None:
    with urllib.request.urlopen(gateway.url("/health"), timeout=10) as response:
        assert response.status == 200
        assert json.loads(response.read())["status"] == "ok"


@pytest.mark.parametrize("prefix", ["/v1", "/openai/v1"])
def test_chat_completion(gateway: Gateway, fake_openai: FakeOpenAI, prefix: str) -> None:
    with gateway.client(prefix) as client:
        raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        answer = raw.parse()
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "fake-openai: Hello, Bifrost!"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (2, 3)
    assert_gateway_headers(raw.headers)

    (rec,) = fake_openai.requests
    assert (rec.method, rec.path) == ("POST", "/v1/chat/completions")
    assert rec.body["model"] == "gpt-4o-mini", "the provider prefix is stripped before the upstream call"
    assert rec.body["messages"] == MESSAGES
    assert rec.bearer == "sk-fake-1", "the gateway authenticates upstream with the configured key"


def test_unknown_body_fields_pass_through_untouched(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    extra = {
        "vendor_extension": {"nested": [1, 2.5, {"deep": None, "flag": True}], "text": "ünïcødé ✓"},
        "seed": 7,
        "temperature": 0.25,
        "logit_bias": {"50256": -100},
        "metadata": {"team": "search"},
        "parallel_tool_calls": False,
    }
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]},
    ]
    with gateway.client() as client:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=messages, extra_body=extra)  # type: ignore[arg-type]
    body = fake_openai.requests[0].body
    for name, value in extra.items():
        assert body.get(name) == value, f"field {name!r} changed on the way upstream"
    assert body["messages"] == messages


def test_tool_calls_pass_through(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(tool_calls=TOOL_CALL))
    with gateway.client() as client:
        answer = client.chat.completions.create(
            model="openai/gpt-4o",
            messages=MESSAGES,
            tools=TOOLS,
            tool_choice="auto",  # type: ignore[arg-type]
        )
    assert answer.choices[0].finish_reason == "tool_calls"
    (call,) = answer.choices[0].message.tool_calls or []
    assert call.id == "call_w1" and call.type == "function"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}  # type: ignore[union-attr]
    body = fake_openai.requests[0].body
    assert body["tools"] == TOOLS
    assert body["tool_choice"] == "auto"


def test_tool_result_turn_passes_through(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    messages = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_w1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_w1", "content": '{"temp_c": 21}'},
    ]
    with gateway.client() as client:
        client.chat.completions.create(model="openai/gpt-4o", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    assert fake_openai.requests[0].body["messages"] == messages


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings(gateway: Gateway, fake_openai: FakeOpenAI, encoding: str) -> None:
    with gateway.client() as client:
        if encoding == "float":
            result = client.embeddings.create(
                model="openai/text-embedding-3-small", input=["alpha", "beta gamma"], encoding_format="float"
            )
        else:  # the SDK asks for base64 by default and decodes it
            result = client.embeddings.create(model="openai/text-embedding-3-small", input=["alpha", "beta gamma"])
    assert result.object == "list"
    assert [d.index for d in result.data] == [0, 1]
    assert result.data[0].embedding == embedding_vector("alpha", 8)
    assert result.data[1].embedding == embedding_vector("beta gamma", 8)
    assert result.usage.prompt_tokens == 3
    rec = fake_openai.requests[0]
    assert rec.path == "/v1/embeddings"
    assert rec.body["model"] == "text-embedding-3-small"
    assert rec.body["input"] == ["alpha", "beta gamma"]


def test_legacy_completions(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    with gateway.client() as client:
        raw = client.completions.with_raw_response.create(
            model="openai/gpt-3.5-turbo-instruct", prompt="Say this is a test", max_tokens=7
        )
        completion = raw.parse()
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "fake-openai: Say this is a test"
    assert completion.usage is not None and completion.usage.prompt_tokens == 5
    assert_gateway_headers(raw.headers)
    rec = fake_openai.requests[0]
    assert rec.path == "/v1/completions"
    assert rec.body == {"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", "max_tokens": 7}


def test_models_are_listed_as_provider_slash_model(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    provider = openai_provider(fake_openai.url, keys=[key("sk-fake-1", models=["gpt-4o-mini", "gpt-4o"])])
    gateway = start_gateway(make_config({"openai": provider}))
    with gateway.client() as client:
        raw = client.models.with_raw_response.list()
        ids = [m.id for m in raw.parse()]
    assert_gateway_headers(raw.headers)
    assert {"openai/gpt-4o-mini", "openai/gpt-4o"} <= set(ids), ids
    assert all("/" in model_id for model_id in ids), ids
    with gateway.client("/openai/v1") as client:
        assert {m.id for m in client.models.list()} == set(ids)


def test_model_with_slashes_keeps_them(start_gateway: StartGateway) -> None:
    upstream = FakeOpenAI(name="router", prefixes=("/v1", "/api/v1")).start()
    try:
        gateway = start_gateway(
            make_config(
                {
                    "openrouter": openai_provider(upstream.url),
                    "my-vllm": custom_provider(upstream.url),
                }
            )
        )
        with gateway.client() as client:
            client.chat.completions.create(model="openrouter/meta-llama/llama-3-70b", messages=MESSAGES)
            client.chat.completions.create(model="my-vllm/Qwen/Qwen2.5-7B-Instruct", messages=MESSAGES)
        first, second = upstream.requests
        assert first.body["model"] == "meta-llama/llama-3-70b"
        assert second.body["model"] == "Qwen/Qwen2.5-7B-Instruct"
        assert second.path == "/v1/chat/completions"
    finally:
        upstream.stop()


def test_extra_headers_reach_the_provider(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    provider = openai_provider(fake_openai.url, extra_headers={"X-Team": "search", "OpenAI-Organization": "org-x"})
    gateway = start_gateway(make_config({"openai": provider}))
    with gateway.client() as client:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    headers = fake_openai.requests[0].headers
    assert headers.get("x-team") == "search"
    assert headers.get("openai-organization") == "org-x"


def test_client_credentials_are_not_forwarded(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    with gateway.client(api_key="sk-client-secret-do-not-forward") as client:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    rec = fake_openai.requests[0]
    assert "sk-client-secret-do-not-forward" not in json.dumps(dict(rec.headers))
    assert rec.bearer == "sk-fake-1"


def test_streamed_legacy_completions(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    with gateway.client() as client:
        chunks = list(
            client.completions.create(model="openai/gpt-3.5-turbo-instruct", prompt="count to three", stream=True)
        )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "fake-openai: count to three"
    assert fake_openai.requests[0].body["stream"] is True
