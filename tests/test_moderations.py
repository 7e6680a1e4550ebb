"""POST /v1/moderations through a real gateway process, the official openai SDK as the client and the
fake OpenAI as the provider: routed by model like every endpoint (keys, fallbacks, timeouts, virtual keys),
OpenAI's response shape passed through, a request-log row with endpoint "moderations", and errors in the
same shape as /v1/embeddings."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from fakes import FakeOpenAI, Reply
from fakes.native import FakeAnthropic
from harness import Gateway, StartGateway, assert_error_shape, assert_gateway_headers, make_config, openai_provider
from harness.config import custom_provider

MODEL = "openai/omni-moderation-latest"


def test_sdk_moderation_flagged_and_clean(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    with gateway.client() as client:
        raw = client.moderations.with_raw_response.create(model=MODEL, input=["I will kill the process", "hello"])
        result = raw.parse()
    assert_gateway_headers(raw.headers)
    assert result.model == "omni-moderation-latest"
    assert result.id.startswith("modr-")
    first, second = result.results
    assert first.flagged and first.categories.violence and first.category_scores.violence == pytest.approx(0.91)
    assert not second.flagged and not any(second.categories.model_dump().values())
    rec = fake_openai.requests_to("/v1/moderations")[0]
    assert rec.body == {"model": "omni-moderation-latest", "input": ["I will kill the process", "hello"]}
    assert rec.headers["authorization"] == "Bearer sk-fake-1"
    row = gateway.log.row_for(raw.headers["x-request-id"])
    assert row["endpoint"] == "moderations" and row["status"] == 200 and row["provider"] == "openai"
    with gateway.client(prefix="/openai/v1") as client:  # the same route under the /openai prefix
        assert client.moderations.create(model=MODEL, input="hateful").results[0].categories.hate


def test_content_parts_and_the_default_model(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    parts: Any = [
        {"type": "text", "text": "some hateful words"},
        {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}},
    ]
    with gateway.client() as client:
        result = client.moderations.create(model=MODEL, input=parts)
    (only,) = result.results
    assert only.flagged and only.categories.hate
    assert only.category_applied_input_types.violence == ["text", "image"]
    # No model: OpenAI's documented default, on the provider named openai.
    status, body = post(gateway, {"input": "fine text"})
    sent = fake_openai.requests_to("/v1/moderations")[-1].body
    assert status == 200 and body["results"][0]["flagged"] is False, body
    assert sent["model"] == "omni-moderation-latest"


def post(gateway: Gateway, body: Any, api_key: str = "x") -> tuple[int, Any]:
    with gateway.client(api_key=api_key) as client:
        try:
            response = client.post("/moderations", body=body, cast_to=object)
            return 200, response
        except openai.APIStatusError as err:
            return err.status_code, err.response.json()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL}, "input"),
        ({"model": MODEL, "input": 5}, "input"),
        ({"model": MODEL, "input": []}, "input"),
        ({"model": MODEL, "input": [{"type": "audio"}]}, "input[0].type"),
        ({"model": MODEL, "input": [{"type": "text", "text": 3}]}, "input[0].text"),
        ({"model": MODEL, "input": ["a", 3]}, "input[1]"),
        ({"model": MODEL, "input": "x", "stream": True}, "stream"),
        ({"model": 7, "input": "x"}, None),
    ],
)
def test_invalid_bodies_are_400s_naming_the_field(
    gateway: Gateway, fake_openai: FakeOpenAI, body: dict[str, Any], param: str | None
) -> None:
    status, answer = post(gateway, body)
    assert status == 400, answer
    error = assert_error_shape(answer, 400)
    if param is not None:
        assert error["param"] == param, answer
    assert not fake_openai.requests_to("/v1/moderations")


def test_errors_have_the_embeddings_shape(gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    """An unknown provider and a provider error: the same status and shape as /v1/embeddings gives."""
    for path in ("/moderations", "/embeddings"):
        with gateway.client() as client, pytest.raises(openai.APIStatusError) as caught:
            client.post(path, body={"model": "nope/x", "input": "a"}, cast_to=object)
        assert_error_shape(caught.value.response.json(), caught.value.status_code)
        assert caught.value.status_code == 400
    fake_openai.enqueue(Reply.server_error(502, path_contains="/moderations"))
    with gateway.client() as client, pytest.raises(openai.APIStatusError) as caught:
        client.moderations.create(model=MODEL, input="a")
    error = assert_error_shape(caught.value.response.json(), 502)
    assert "error while processing" in error["message"]


def test_a_provider_without_moderation_is_refused_before_any_traffic(
    start_gateway: StartGateway, fake_anthropic: FakeAnthropic
) -> None:
    provider = {
        "keys": [{"name": "a", "value": "sk-ant-fake-1", "models": [], "weight": 1}],
        "network_config": {"base_url": fake_anthropic.url},
    }
    gateway = start_gateway(make_config({"anthropic": provider}))
    status, body = post(gateway, {"model": "anthropic/claude-3-5-haiku-latest", "input": "a"})
    assert status == 400
    assert assert_error_shape(body, 400)["type"] == "unsupported_operation"
    assert not fake_anthropic.requests


def test_retries_then_fallback(start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI) -> None:
    config = make_config(
        {
            "openai": openai_provider(fake_openai.url, max_retries=1, retry_backoff_initial_ms=1),
            "backup": custom_provider(fake_openai_2.url, keys=("sk-fake-2",)),
        }
    )
    gateway = start_gateway(config)
    fake_openai.always(Reply.server_error(503))
    with gateway.client() as client:
        result = client.moderations.create(
            model=MODEL, input="kill it", extra_body={"fallbacks": ["backup/omni-moderation-latest"]}
        )
    assert result.results[0].flagged
    assert len(fake_openai.requests_to("/v1/moderations")) == 2  # the first try and one retry
    assert fake_openai_2.requests_to("/v1/moderations")[0].headers["authorization"] == "Bearer sk-fake-2"


def test_timeout_is_a_504(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start_gateway(
        make_config({"openai": openai_provider(fake_openai.url, default_request_timeout_in_seconds=1)})
    )
    fake_openai.enqueue(Reply(delay=5, path_contains="/moderations"))
    status, body = post(gateway, {"model": MODEL, "input": "a"})
    assert status == 504
    assert_error_shape(body, 504)


def test_virtual_keys_govern_moderation(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    config = make_config({"openai": openai_provider(fake_openai.url)}, enforce_auth_on_inference=True)
    config["governance"] = {
        "virtual_keys": [
            {"id": "vk-ok", "name": "ok", "value": "sk-bf-mod-ok-0001"},
            {
                "id": "vk-chat",
                "name": "chat only",
                "value": "sk-bf-mod-chat-0002",
                "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"]}],
            },
        ]
    }
    gateway = start_gateway(config)
    status, body = post(gateway, {"model": MODEL, "input": "a"}, api_key="sk-bf-mod-ok-0001")
    assert status == 200, body
    status, body = post(gateway, {"model": MODEL, "input": "a"}, api_key="sk-bf-mod-chat-0002")
    assert status == 403
    assert_error_shape(body, 403)
    status, body = post(gateway, {"model": MODEL, "input": "a"}, api_key="sk-bf-unknown")
    assert status == 401
    assert len(fake_openai.requests_to("/v1/moderations")) == 1
