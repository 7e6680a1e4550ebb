"""Azure OpenAI behind the gateway: deployment map, api-version query, api-key header, and Azure's
content-filter annotations (including the prompt-filter chunk that opens an Azure stream)."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from fakes import FakeAzure
from harness import Gateway, StartGateway, azure_provider, make_config
from harness.process import CLIENT_KEY

MESSAGES = [{"role": "user", "content": "hello azure"}]
DEPLOYMENTS = {"gpt-4o": "my-gpt4o-deploy", "text-embedding-3-small": "my-embed"}


@pytest.fixture
def azure_fake() -> Iterator[FakeAzure]:
    fake = FakeAzure(
        deployments={"my-gpt4o-deploy": "gpt-4o-2024-08-06", "my-embed": "text-embedding-3-small"},
        api_versions={"2024-10-21"},
    ).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def azure_gateway(start_gateway: StartGateway, azure_fake: FakeAzure) -> Gateway:
    provider = azure_provider(azure_fake.url, deployments=DEPLOYMENTS, api_version="2024-10-21")
    return start_gateway(make_config({"azure": provider}))


def test_chat_goes_to_the_deployment(azure_gateway: Gateway, azure_fake: FakeAzure) -> None:
    with azure_gateway.client() as client:
        answer = client.chat.completions.create(model="azure/gpt-4o", messages=MESSAGES, temperature=0.5)
    assert answer.choices[0].message.content == "fake-azure: hello azure"
    assert answer.usage is not None and answer.usage.total_tokens == 5
    (rec,) = azure_fake.requests
    assert rec.path == "/openai/deployments/my-gpt4o-deploy/chat/completions"
    assert rec.query.get("api-version") == "2024-10-21"
    assert rec.headers.get("api-key") == "azure-fake-key"
    assert CLIENT_KEY not in str(dict(rec.headers)), "the client's own key is not forwarded"
    assert rec.body["messages"] == MESSAGES
    assert rec.body["temperature"] == 0.5
    assert azure_fake.recorder.statuses == {200: 1}


def test_stream_through_azure(azure_gateway: Gateway, azure_fake: FakeAzure) -> None:
    with azure_gateway.client() as client:
        chunks = list(
            client.chat.completions.create(
                model="azure/gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "fake-azure: hello azure"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5
    assert azure_fake.wait_for("streams_completed"), "the fake records completion just after its last write"


def test_azure_embeddings(azure_gateway: Gateway, azure_fake: FakeAzure) -> None:
    with azure_gateway.client() as client:
        result = client.embeddings.create(model="azure/text-embedding-3-small", input="vector please")
    assert len(result.data) == 1 and len(result.data[0].embedding) == 8
    assert azure_fake.requests[0].path == "/openai/deployments/my-embed/embeddings"


def test_azure_model_without_deployment_is_rejected(azure_gateway: Gateway, azure_fake: FakeAzure) -> None:
    with azure_gateway.client() as client, pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="azure/gpt-35-turbo", messages=MESSAGES)
    assert azure_fake.requests == []


def test_azure_models_listed(azure_gateway: Gateway) -> None:
    with azure_gateway.client() as client:
        ids = {m.id for m in client.models.list()}
    assert "azure/gpt-4o" in ids
