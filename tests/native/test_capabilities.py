"""GET /v1/capabilities and /v1/models list the native providers honestly; an endpoint a provider lacks
is a 400 unsupported_operation naming it, in every ingress's error shape."""

from __future__ import annotations

import json
import urllib.request

import anthropic
import openai
import pytest
from fakes import FakeOpenAI
from fakes.native import FakeAnthropic, FakeCohere
from google.genai import errors
from harness import Gateway, StartGateway, make_config, openai_provider
from native_helpers import anthropic_client, anthropic_provider, cohere_provider, genai_client


@pytest.fixture
def gw(
    start_gateway: StartGateway, fake_anthropic: FakeAnthropic, fake_cohere: FakeCohere, fake_openai: FakeOpenAI
) -> Gateway:
    return start_gateway(
        make_config(
            {
                "anthropic": anthropic_provider(fake_anthropic.url),
                "cohere": cohere_provider(fake_cohere.url),
                "openai": openai_provider(fake_openai.url),
            }
        )
    )


def test_capabilities_and_models(gw: Gateway) -> None:
    with urllib.request.urlopen(gw.url("/v1/capabilities"), timeout=30) as response:
        table = {row["provider"]: row for row in json.loads(response.read())["data"]}
    assert table["anthropic"]["operations"] == ["chat", "count_tokens"]
    assert table["cohere"]["operations"] == ["chat", "embeddings"]
    assert "json_mode" in table["anthropic"]["features"]
    with gw.client() as client:
        ids = {m.id for m in client.models.list()}
    assert {"anthropic/claude-sonnet-4-5", "cohere/embed-v4.0", "mock/mock-chat"} <= ids


def test_unsupported_operation_in_each_shape(gw: Gateway, fake_anthropic: FakeAnthropic) -> None:
    with gw.client() as client, pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="anthropic/claude-sonnet-4-5", prompt="x")
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "unsupported_operation"
    assert "provider 'anthropic' does not support the completions endpoint" in info.value.body["message"]
    with anthropic_client(gw) as client, pytest.raises(anthropic.BadRequestError) as ainfo:
        client.messages.count_tokens(model="cohere/command-a-03-2025", messages=[{"role": "user", "content": "x"}])
    assert "provider 'cohere'" in ainfo.value.body["error"]["message"]  # type: ignore[index]
    genai = genai_client(gw)  # keep a reference: the SDK closes its HTTP client when the Client is collected
    with pytest.raises(errors.ClientError) as ginfo:
        genai.models.embed_content(model="anthropic/claude-sonnet-4-5", contents="x")
    assert ginfo.value.code == 400 and "provider 'anthropic'" in (ginfo.value.message or "")
    assert fake_anthropic.requests == [], "refused before any network call"
