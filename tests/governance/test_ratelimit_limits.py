"""Rate limits through the hook object (runtime/governance/limits.py), in-process on a real state.db:
requests and tokens per window, OpenAI's x-ratelimit-* headers, 429 with Retry-After, token settlement,
resets with an injectable clock, and the most constrained of several limits in the headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import BudgetExceeded, RateLimited
from runtime.governance.limits import BudgetAndRateLimits
from runtime.governance.model import Budget, Caller, RateLimit
from runtime.providers.base import Usage
from runtime.stores.shared_sqlite import SQLiteSharedState

from .test_budget_ledger import Clock, make_ctx, price


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteSharedState]:
    s = SQLiteSharedState(tmp_path / "state.db")
    yield s
    await s.close()


def limits_on(store: SQLiteSharedState, clock: Clock) -> BudgetAndRateLimits:
    return BudgetAndRateLimits(store, price, clock=clock, idle_return_s=0)


async def test_requests_per_window_headers_and_429(store: SQLiteSharedState) -> None:
    clock = Clock(1_800_000_000.0)
    limits = limits_on(store, clock)
    caller = Caller("vk1", rate_limits=(RateLimit("rl1", request_max_limit=3, request_reset_duration="1m"),))
    seen = []
    for _ in range(3):
        ctx = make_ctx(caller)
        await limits.pre_hook(ctx)
        seen.append(ctx.response_headers)
        clock.now += 1
    assert [h["x-ratelimit-remaining-requests"] for h in seen] == ["2", "1", "0"]
    assert seen[0]["x-ratelimit-limit-requests"] == "3"
    assert seen[0]["x-ratelimit-reset-requests"] == "1m0s"  # the window is anchored at first use
    assert "x-ratelimit-limit-tokens" not in seen[0]  # no token limit configured
    refused = make_ctx(caller)
    with pytest.raises(RateLimited) as err:
        await limits.pre_hook(refused)
    assert err.value.status == 429 and err.value.code == "request_limited"
    assert err.value.retry_after_s == 57  # 60 s window, 3 s in
    assert "rate limit 'rl1'" in err.value.message
    assert refused.response_headers is not None  # headers go out on the refusal too
    assert refused.response_headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.response_headers["x-ratelimit-reset-requests"] == "57s"
    clock.now += 57  # the window ends: a fresh one
    ctx = make_ctx(caller)
    await limits.pre_hook(ctx)
    assert ctx.response_headers is not None and ctx.response_headers["x-ratelimit-remaining-requests"] == "2"


async def test_tokens_reserve_the_estimate_and_settle_to_usage(store: SQLiteSharedState) -> None:
    clock = Clock(1_800_000_000.0)
    limits = limits_on(store, clock)
    rl = RateLimit("tok", token_max_limit=100, token_reset_duration="1h")
    caller = Caller("vk1", rate_limits=(rl,))
    # estimate: 2-byte body -> 1 prompt token, + max_tokens 60 = 61 of 100
    first = make_ctx(caller, max_tokens=60)
    await limits.pre_hook(first)
    assert first.response_headers is not None and first.response_headers["x-ratelimit-remaining-tokens"] == "39"
    with pytest.raises(RateLimited) as err:
        await limits.pre_hook(make_ctx(caller, max_tokens=60))
    assert err.value.code == "token_limited" and "needs up to 61" in err.value.message
    first.status, first.usage = 200, Usage(5, 5)  # it used 10 tokens, not 61
    limits.on_finish(first)
    second = make_ctx(caller, max_tokens=60)
    await limits.pre_hook(second)
    assert second.response_headers is not None and second.response_headers["x-ratelimit-remaining-tokens"] == "29"


async def test_the_most_constrained_limit_is_shown_and_refusals_release_the_rest(store: SQLiteSharedState) -> None:
    clock = Clock(1_800_000_000.0)
    limits = limits_on(store, clock)
    roomy = RateLimit("key", request_max_limit=100, request_reset_duration="1m")
    tight = RateLimit("provider", request_max_limit=2, request_reset_duration="1h")
    caller = Caller("vk1", rate_limits=(roomy, tight), budgets=(Budget("b", 1.0, "1d"),))
    ctx = make_ctx(caller)
    await limits.pre_hook(ctx)
    assert ctx.response_headers is not None
    assert ctx.response_headers["x-ratelimit-limit-requests"] == "2"
    assert ctx.response_headers["x-ratelimit-remaining-requests"] == "1"
    # a budget refusal after the rate limits were taken gives the requests back
    broke = Caller("vk1", rate_limits=(roomy, tight), budgets=(Budget("empty", 0.0, "1d"),))
    with pytest.raises(BudgetExceeded):
        await limits.pre_hook(make_ctx(broke))
    again = make_ctx(caller)
    await limits.pre_hook(again)
    assert again.response_headers is not None and again.response_headers["x-ratelimit-remaining-requests"] == "0"


async def test_a_request_limit_holds_across_two_workers(tmp_path: Path) -> None:
    stores = [SQLiteSharedState(tmp_path / "state.db") for _ in range(2)]
    try:
        clock = Clock(1_800_000_000.0)
        workers = [limits_on(s, clock) for s in stores]
        caller = Caller("vk1", rate_limits=(RateLimit("rl", request_max_limit=10, request_reset_duration="1h"),))
        admitted = 0
        for i in range(30):
            ctx: Any = make_ctx(caller)
            try:
                await workers[i % 2].pre_hook(ctx)
                admitted += 1
            except RateLimited:
                pass
        assert admitted == 10
    finally:
        for s in stores:
            await s.close()
