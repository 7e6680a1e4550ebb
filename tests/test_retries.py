"""Retries: max_retries extra attempts on 429 with Retry-After and on 5xx; a dropped connection fails
over at once unless the provider's failure_policy says `retry`; never on a 400; attempts listed when
they all fail."""

from __future__ import annotations

import time

import openai
import pytest
from fakes import FakeOpenAI, Reply
from harness import Gateway, StartGateway, assert_error_shape, make_config, openai_provider

MESSAGES = [{"role": "user", "content": "retry me"}]


def start(
    start_gateway: StartGateway,
    fake: FakeOpenAI,
    max_retries: int,
    backoff_max_ms: int = 500,
    policy: dict[str, str] | None = None,
) -> Gateway:
    provider = openai_provider(
        fake.url, max_retries=max_retries, retry_backoff_initial_ms=50, retry_backoff_max_ms=backoff_max_ms
    )
    if policy is not None:
        provider["failure_policy"] = policy
    return start_gateway(make_config({"openai": provider}))


def chat(gateway: Gateway) -> str | None:
    with gateway.client() as client:
        answer = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    return answer.choices[0].message.content


def test_retry_on_429_honours_retry_after(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start(start_gateway, fake_openai, max_retries=2, backoff_max_ms=5000)
    fake_openai.enqueue(Reply.rate_limited(retry_after=1))
    assert chat(gateway) == "fake-openai: retry me"
    first, second = fake_openai.requests
    waited = second.at - first.at
    assert waited >= 0.9, f"Retry-After: 1 asks for a 1 s wait; the retry came after {waited:.3f} s"
    assert fake_openai.recorder.statuses == {429: 1, 200: 1}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_retry_on_5xx(start_gateway: StartGateway, fake_openai: FakeOpenAI, status: int) -> None:
    gateway = start(start_gateway, fake_openai, max_retries=2)
    fake_openai.enqueue(Reply.server_error(status), Reply.server_error(status))
    assert chat(gateway) == "fake-openai: retry me"
    assert len(fake_openai.requests) == 3


def test_a_dropped_connection_is_not_retried_on_the_same_target_by_default(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = start(start_gateway, fake_openai, max_retries=3)
    fake_openai.enqueue(Reply(drop=True))
    with gateway.client() as client, pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert err.value.status_code == 502
    assert len(fake_openai.requests) == 1, "an unreachable upstream fails over at once (here: no fallback)"


def test_retry_on_connection_error_when_the_policy_says_so(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = start(start_gateway, fake_openai, max_retries=1, policy={"connection": "retry"})
    fake_openai.enqueue(Reply(drop=True))
    assert chat(gateway) == "fake-openai: retry me"
    assert len(fake_openai.requests) == 2
    assert fake_openai.counts["dropped"] == 1


def test_garbage_upstream_body_is_an_error(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start(start_gateway, fake_openai, max_retries=0)
    fake_openai.enqueue(Reply.garbage())
    with gateway.client() as client, pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert err.value.status_code >= 500
    assert_error_shape(err.value.response.json(), err.value.status_code)


def test_no_retry_on_400(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start(start_gateway, fake_openai, max_retries=3)
    fake_openai.enqueue(Reply.bad_request("Invalid value for 'temperature': 7 is greater than the maximum of 2."))
    with gateway.client() as client, pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert len(fake_openai.requests) == 1, "a 400 is the caller's fault; retrying cannot help"
    body = err.value.response.json()
    error = assert_error_shape(body, 400)
    assert "7 is greater than the maximum of 2" in error["message"], "the provider's message is kept"
    assert body["is_bifrost_error"] is False


def test_retries_exhausted_lists_attempts(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start(start_gateway, fake_openai, max_retries=2)
    fake_openai.always(Reply.server_error(503))
    with gateway.client() as client, pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert len(fake_openai.requests) == 3, "one attempt plus max_retries=2"
    body = err.value.response.json()
    assert_error_shape(body, 503)
    assert body["extra_fields"]["provider"] == "openai"
    assert len(body["extra_fields"]["attempts"]) == 3


def test_zero_retries_means_one_attempt(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start(start_gateway, fake_openai, max_retries=0)
    fake_openai.enqueue(Reply.rate_limited(retry_after=0))
    with gateway.client() as client, pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert len(fake_openai.requests) == 1
    assert_error_shape(err.value.response.json(), 429)


def test_retry_before_stream_starts(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start(start_gateway, fake_openai, max_retries=1)
    fake_openai.enqueue(Reply.server_error(500))
    with gateway.client() as client:
        chunks = list(client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "fake-openai: retry me"
    assert len(fake_openai.requests) == 2


def test_retry_is_logged(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start(start_gateway, fake_openai, max_retries=2)
    fake_openai.enqueue(Reply.server_error(500))
    with gateway.client() as client:
        raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    row = gateway.log.row_for(raw.headers["x-request-id"])
    assert row["retries"] == 1
    assert row["status"] == 200
    assert row["error"] is None


def test_backoff_grows_between_attempts(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    provider = openai_provider(
        fake_openai.url, max_retries=2, retry_backoff_initial_ms=300, retry_backoff_max_ms=10_000
    )
    gateway = start_gateway(make_config({"openai": provider}))
    fake_openai.enqueue(Reply.server_error(500), Reply.server_error(500))
    assert chat(gateway) == "fake-openai: retry me"
    a, b, c = (r.at for r in fake_openai.requests)
    # Exponential from 300 ms with ±20% jitter: first wait >= 240 ms, second >= 480 ms.
    assert b - a >= 0.24, f"first backoff {b - a:.3f}s"
    assert c - b >= 0.48, f"second backoff {c - b:.3f}s"


def test_retry_after_beyond_the_cap_is_not_waited_out(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start(start_gateway, fake_openai, max_retries=1, backoff_max_ms=500)
    fake_openai.enqueue(Reply.rate_limited(retry_after=90))
    started = time.monotonic()
    with gateway.client() as client:
        try:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        except openai.RateLimitError as err:
            assert_error_shape(err.response.json(), 429)
    assert time.monotonic() - started < 45, "a Retry-After longer than the backoff cap must not stall the request"
