"""The failure policy by class of error (issue 13 item 2; runtime/core/failover.py, docs/failover.md),
against a real gateway and the fake OpenAI provider, asserting what the client gets and how many
attempts each target saw."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest
from fakes import FakeOpenAI, Reply
from harness import Gateway, StartGateway, make_config, openai_provider

from runtime.config.load import ConfigError, parse_document
from runtime.config.model import Tuning

MESSAGES = [{"role": "user", "content": "policy"}]
CONTEXT_ERROR = Reply.error(
    400,
    "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
    "invalid_request_error",
    code="context_length_exceeded",
    param="messages",
)
FILTERED = Reply.error(
    400,
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
    "invalid_request_error",
    code="content_filter",
)
UNAUTHORIZED = Reply.error(
    401, "Incorrect API key provided: sk-fake-1.", "invalid_request_error", code="invalid_api_key"
)


def gateway_for(
    start_gateway: StartGateway, fake: FakeOpenAI, *, client: dict[str, Any] | None = None, **provider: Any
) -> Gateway:
    keys = provider.pop("keys", ("sk-fake-1",))
    policy = provider.pop("failure_policy", None)
    entry = openai_provider(fake.url, keys, retry_backoff_initial_ms=20, retry_backoff_max_ms=200, **provider)
    if policy is not None:
        entry["failure_policy"] = policy
    return start_gateway(make_config({"openai": entry}, **(client or {})))


def ask(gateway: Gateway, model: str = "openai/gpt-4o-mini", fallbacks: list[str] | None = None) -> Any:
    extra = {"fallbacks": fallbacks} if fallbacks else None
    with gateway.client() as client:
        return client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, extra_body=extra)


def attempts_of(gateway: Gateway, request_id: str) -> list[dict[str, Any]]:
    row = gateway.log.row_for(request_id)
    return json.loads(row["attempts"]) if row["attempts"] else []


def test_a_context_length_error_goes_only_to_a_larger_window(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = gateway_for(start_gateway, fake_openai, max_retries=3)
    fake_openai.enqueue(CONTEXT_ERROR)
    # mock-chat's window is unknown (skipped); gpt-4o's is the same 128k (skipped); gpt-4.1-mini's is ~1M.
    raw = ask(gateway, fallbacks=["mock/mock-chat", "openai/gpt-4o", "openai/gpt-4.1-mini"])
    assert raw.parse().choices[0].message.content == "fake-openai: policy"
    assert [r.model for r in fake_openai.requests] == ["gpt-4o-mini", "gpt-4.1-mini"], "never resent to one window"


def test_a_context_length_error_with_no_larger_target_is_the_answer(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = gateway_for(start_gateway, fake_openai, max_retries=3)
    fake_openai.enqueue(CONTEXT_ERROR)
    with pytest.raises(openai.BadRequestError) as err:
        ask(gateway, fallbacks=["mock/mock-chat"])
    assert err.value.code == "context_length_exceeded"
    assert len(fake_openai.requests) == 1


def test_context_window_fallbacks_from_the_config_are_tried(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    client = {"context_window_fallbacks": {"openai/gpt-4o-mini": ["openai/my-long-model"]}}
    gateway = gateway_for(start_gateway, fake_openai, client=client)
    fake_openai.enqueue(CONTEXT_ERROR)
    raw = ask(gateway)
    assert raw.parse().choices[0].message.content == "fake-openai: policy"
    assert [r.model for r in fake_openai.requests] == ["gpt-4o-mini", "my-long-model"]


def test_a_content_filter_refusal_is_returned_not_failed_over(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = gateway_for(start_gateway, fake_openai, max_retries=3)
    fake_openai.enqueue(FILTERED)
    with pytest.raises(openai.BadRequestError) as err:
        ask(gateway, fallbacks=["mock/mock-chat"])
    assert err.value.code == "content_filter"
    assert len(fake_openai.requests) == 1


def test_a_content_filter_refusal_fails_over_when_the_policy_says_so(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = gateway_for(start_gateway, fake_openai, failure_policy={"content_policy": "failover"})
    fake_openai.enqueue(FILTERED)
    assert ask(gateway, fallbacks=["mock/mock-chat"]).parse().model == "mock-chat"


def test_a_401_tries_another_key_at_once_and_later_requests_skip_the_refused_key(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    # The fake accepts only sk-fake-1 (it answers OpenAI's 401 to anything else); the revoked key weighs
    # 1000 times more, so without the policy nearly every request would go to it and fail.
    keys = (
        {"name": "revoked", "value": "sk-revoked", "weight": 1000},
        {"name": "good", "value": "sk-fake-1", "weight": 1},
    )
    gateway = gateway_for(start_gateway, fake_openai, keys=keys, max_retries=0)
    raw = ask(gateway)
    assert raw.parse().choices[0].message.content == "fake-openai: policy", "another key answered, no retry budget used"
    used = [r.bearer for r in fake_openai.requests]
    assert used[-1] == "sk-fake-1" and used.count("sk-revoked") <= 1
    for _ in range(20):
        ask(gateway)
    later = [r.bearer for r in fake_openai.requests[len(used) :]]
    assert later == ["sk-fake-1"] * 20, "a key the provider refused is set aside for the cooldown"


def test_a_429_without_retry_after_fails_over_at_once(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = gateway_for(start_gateway, fake_openai, max_retries=3)
    fake_openai.enqueue(Reply.rate_limited())
    assert ask(gateway, fallbacks=["mock/mock-chat"]).parse().model == "mock-chat"
    assert len(fake_openai.requests) == 1


def test_a_429_with_retry_after_under_the_cap_is_retried(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = gateway_for(start_gateway, fake_openai, max_retries=3)
    fake_openai.enqueue(Reply.rate_limited(retry_after=0.05))
    raw = ask(gateway, fallbacks=["mock/mock-chat"])
    assert raw.parse().choices[0].message.content == "fake-openai: policy"
    assert len(fake_openai.requests) == 2


def test_5xx_is_retried_with_backoff_then_fails_over(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = gateway_for(start_gateway, fake_openai, max_retries=2)
    for _ in range(3):
        fake_openai.enqueue(Reply.server_error(503))
    raw = ask(gateway, fallbacks=["mock/mock-chat"])
    assert raw.parse().model == "mock-chat"
    assert len(fake_openai.requests) == 3
    statuses = [a["status"] for a in attempts_of(gateway, raw.headers["x-request-id"])]
    assert statuses == [503, 503, 503, 200], "the failures, then the attempt that answered"


def test_the_request_deadline_bounds_retries_and_fallbacks(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    # Each attempt may take 5 s; the request as a whole gets 1.5 s, whatever the retries would allow.
    gateway = gateway_for(
        start_gateway,
        fake_openai,
        client={"request_deadline_in_seconds": 1.5},
        default_request_timeout_in_seconds=5,
        max_retries=3,
        failure_policy={"timeout": "retry"},
    )
    for _ in range(4):
        fake_openai.enqueue(Reply(delay=20))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as err:
        ask(gateway, fallbacks=["openai/gpt-4o"])
    assert err.value.status_code == 504 and err.value.code == "request_deadline"
    assert time.monotonic() - started < 4.5, "bounded by the deadline, not by 5 s per attempt"
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize(
    ("policy", "path"),
    [
        ({"timeouts": "retry"}, "providers.openai.failure_policy.timeouts"),
        ({"timeout": "return"}, "providers.openai.failure_policy.timeout"),
        ({"auth": 3}, "providers.openai.failure_policy.auth"),
    ],
)
def test_an_unknown_failure_class_or_action_is_a_config_error_with_its_path(policy: dict[str, Any], path: str) -> None:
    entry = openai_provider("http://127.0.0.1:9")
    entry["failure_policy"] = policy
    with pytest.raises(ConfigError) as err:
        parse_document(make_config({"openai": entry}), {}, Tuning())
    assert err.value.args[0].startswith(path) or path in str(err.value)
