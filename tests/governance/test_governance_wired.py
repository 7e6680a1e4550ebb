"""Issue 11 end to end: a virtual key from config.json, its budget and rate limit enforced by the
built-in `governance` plugin (auth + the ledger on the gateway's own shared state, priced from the
catalog and pricing_overrides), through the official openai SDK against a real gateway process.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
from fakes import FakeOpenAI, Reply
from harness import Gateway
from harness.config import make_config, openai_provider
from harness.process import StartGateway

VK = "sk-bf-wired-0001"
PRICE_OUT = 1 / 1024  # dollars per output token, so one answer of 16 tokens costs 1/64 dollar
MAX_TOKENS = 16
COST = MAX_TOKENS * PRICE_OUT
USAGE = {"prompt_tokens": 7, "completion_tokens": MAX_TOKENS, "total_tokens": 7 + MAX_TOKENS}
MESSAGES = [{"role": "user", "content": "hello"}]


def wired_config(fake_url: str, *, budget_requests: int, requests_per_minute: int | None = None) -> dict[str, Any]:
    provider = openai_provider(fake_url)
    provider["pricing_overrides"] = [
        {
            "model_pattern": "*",
            "match_type": "wildcard",
            "input_cost_per_token": 0.0,
            "output_cost_per_token": PRICE_OUT,
        }
    ]
    config = make_config({"openai": provider}, enforce_auth_on_inference=True)
    key: dict[str, Any] = {"id": "vk-wired", "name": "wired", "value": VK, "budget_id": "b-wired"}
    governance: dict[str, Any] = {
        "budgets": [{"id": "b-wired", "max_limit": budget_requests * COST, "reset_duration": "1d"}],
        "virtual_keys": [key],
    }
    if requests_per_minute is not None:
        governance["rate_limits"] = [
            {"id": "rl-wired", "request_max_limit": requests_per_minute, "request_reset_duration": "1m"}
        ]
        key["rate_limit_id"] = "rl-wired"
    config["governance"] = governance
    return config


async def _burst(gateway: Gateway, n: int) -> tuple[int, list[openai.APIStatusError]]:
    async with gateway.async_client(api_key=VK, timeout=120.0) as client:

        async def one() -> Any:
            try:
                return await client.chat.completions.create(
                    model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS
                )
            except openai.APIStatusError as err:
                return err

        results = await asyncio.gather(*(one() for _ in range(n)))
    refusals = [r for r in results if isinstance(r, openai.APIStatusError)]
    return n - len(refusals), refusals


async def test_a_virtual_keys_budget_is_a_hard_ceiling_under_concurrency(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.always(Reply(usage=USAGE))
    gateway = start_gateway(wired_config(fake_openai.url, budget_requests=20))
    ok, refusals = await _burst(gateway, 80)
    assert 16 <= ok <= 20, ok  # never over the budget; a worker may strand less than one leased slice
    assert len(fake_openai.requests_to("/chat/completions")) == ok, "refused requests never went upstream"
    assert {r.status_code for r in refusals} == {402}
    rows = await asyncio.to_thread(gateway.log.wait_rows, 80)
    assert sum(r["cost"] or 0 for r in rows) <= 20 * COST + 1e-9
    assert {r["virtual_key_id"] for r in rows} == {"vk-wired"}


def test_a_virtual_keys_rate_limit_answers_429_with_headers(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.always(Reply(usage=USAGE))
    gateway = start_gateway(wired_config(fake_openai.url, budget_requests=1000, requests_per_minute=3))
    with gateway.client(api_key=VK, max_retries=0) as client:
        for left in (2, 1, 0):
            raw = client.chat.completions.with_raw_response.create(
                model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS
            )
            assert raw.headers["x-ratelimit-limit-requests"] == "3"
            assert raw.headers["x-ratelimit-remaining-requests"] == str(left)
        try:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS)
        except openai.RateLimitError as err:
            assert err.response.headers.get("retry-after")
        else:
            raise AssertionError("the fourth request in a minute was admitted")


def test_without_the_virtual_key_the_request_is_refused_401(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = start_gateway(wired_config(fake_openai.url, budget_requests=10))
    with gateway.client(api_key="sk-not-a-virtual-key", max_retries=0) as client:
        try:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        except openai.AuthenticationError as err:
            assert VK not in str(err.body)
        else:
            raise AssertionError("an unauthenticated request was answered")
    assert fake_openai.requests_to("/chat/completions") == []


def test_a_bare_model_name_is_priced_for_the_budget_before_routing(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    # Budgets are reserved before routing; a bare model name must still be priced (as the configured
    # provider that prices it), not refused as an unpriced model.
    fake_openai.always(Reply(usage=USAGE))
    gateway = start_gateway(wired_config(fake_openai.url, budget_requests=2))
    with gateway.client(api_key=VK, max_retries=0) as client:
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS)
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS)
        except openai.APIStatusError as err:
            assert err.status_code == 402 and err.body["type"] == "budget_exceeded"
        else:
            raise AssertionError("a third request fitted a budget of two")
