"""Rate limits through real gateway processes (the limits plugin behind a test plugin that sets the
caller from a header; see test_budget_gateway.py): OpenAI-style x-ratelimit-* headers on plain and
streamed answers, 429 with Retry-After in the OpenAI and Anthropic shapes, and a limit shared by
`--workers 2`."""

from __future__ import annotations

import anthropic
import openai
import pytest
from harness.process import CLIENT_KEY

from .test_budget_gateway import GOVERNED, MESSAGES, StartLimited, start_limited

__all__ = ["start_limited"]  # the fixture, shared with the budget tests

REQUESTS = {"id": "rl-key", "request_max_limit": 3, "request_reset_duration": "1h"}


def test_headers_count_down_then_429_with_retry_after(start_limited: StartLimited) -> None:
    gw = start_limited(rate_limits=[{**REQUESTS, "token_max_limit": 100_000, "token_reset_duration": "1m"}])
    seen = []
    with gw.client(default_headers=GOVERNED) as client:
        for _ in range(2):
            raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
            seen.append(raw.headers)
        with client.chat.completions.with_streaming_response.create(
            model="openai/gpt-4o-mini", messages=MESSAGES, stream=True
        ) as resp:
            seen.append(resp.headers)
            assert "".join(resp.iter_lines())
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert [h["x-ratelimit-remaining-requests"] for h in seen] == ["2", "1", "0"]
    assert {h["x-ratelimit-limit-requests"] for h in seen} == {"3"}
    assert all(h["x-ratelimit-reset-requests"].endswith("s") for h in seen)
    assert {h["x-ratelimit-limit-tokens"] for h in seen} == {"100000"}
    assert int(seen[0]["x-ratelimit-remaining-tokens"]) < 100_000  # the estimate is held until settled
    err = refused.value
    assert err.status_code == 429
    assert err.body["type"] == "rate_limited" and err.body["code"] == "request_limited"  # type: ignore[index]
    assert "rate limit 'rl-key'" in err.message
    retry_after = int(err.response.headers["retry-after"])
    assert 3500 < retry_after <= 3600  # the rest of the hour-long window
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_a_token_limit_refuses_what_would_not_fit(start_limited: StartLimited) -> None:
    gw = start_limited(rate_limits=[{"id": "tok", "token_max_limit": 1000, "token_reset_duration": "1h"}])
    with gw.client(default_headers=GOVERNED) as client:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=100)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=5000)
    assert refused.value.body["code"] == "token_limited"  # type: ignore[index]


def test_anthropic_clients_get_their_own_429_shape(start_limited: StartLimited) -> None:
    gw = start_limited(rate_limits=[{**REQUESTS, "request_max_limit": 1}])
    with anthropic.Anthropic(
        base_url=gw.base_url + "/anthropic", api_key=CLIENT_KEY, max_retries=0, default_headers=GOVERNED
    ) as client:
        client.messages.create(model="openai/gpt-4o-mini", max_tokens=16, messages=MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(anthropic.RateLimitError) as refused:
            client.messages.create(model="openai/gpt-4o-mini", max_tokens=16, messages=MESSAGES)  # type: ignore[arg-type]
    assert refused.value.response.headers["retry-after"]
    assert refused.value.body["type"] == "error"  # type: ignore[index]


async def test_two_workers_share_one_request_limit(start_limited: StartLimited) -> None:
    gw = start_limited(rate_limits=[{**REQUESTS, "request_max_limit": 20}], args=("--workers", "2"))
    answered = refused = 0
    async with gw.async_client(default_headers=GOVERNED) as client:
        for _ in range(40):  # new connections each time: both workers take requests
            try:
                await client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
                answered += 1
            except openai.RateLimitError:
                refused += 1
    assert answered <= 20 and answered >= 18 and answered + refused == 40
