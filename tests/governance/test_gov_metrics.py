"""/metrics governance families on a real gateway: spend by virtual key, remaining budget by budget id
(read from the ledger at scrape time), rejections by reason; one worker and two (merged)."""

from __future__ import annotations

import asyncio
import calendar
import time
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest
from fakes import FakeOpenAI, Reply
from harness import Gateway
from harness.process import StartGateway
from prometheus_client.parser import text_string_to_metric_families

from runtime.core.context import RequestContext
from runtime.governance.limits import BudgetAndRateLimits
from runtime.governance.model import Budget, Caller, RateLimit
from runtime.plugins.metrics import MetricsPlugin
from runtime.stores.shared_sqlite import SQLiteSharedState

from .test_budget_ledger import Clock, finish, make_ctx, price
from .test_governance_wired import COST, MAX_TOKENS, MESSAGES, USAGE, VK, wired_config

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
TINY = "sk-bf-metrics-tiny-0001"
LIMITED = "sk-bf-metrics-limited-0002"
OFF = "sk-bf-metrics-off-0003"
ONE = "sk-bf-metrics-one-a-minute-0004"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics_config(url: str) -> dict[str, Any]:
    config = wired_config(url, budget_requests=100, requests_per_minute=1000)
    gov = config["governance"]
    gov["budgets"].append({"id": "b-tiny", "max_limit": COST, "reset_duration": "1d"})
    # One request a minute: deterministic with any number of workers (no slice to lease ahead).
    gov["rate_limits"].append({"id": "rl-one", "request_max_limit": 1, "request_reset_duration": "1m"})
    gov["virtual_keys"] += [
        {"id": "vk-one", "name": "one a minute", "value": ONE, "rate_limit_id": "rl-one"},
        {"id": "vk-tiny", "name": "tiny", "value": TINY, "budget_id": "b-tiny"},
        {
            "id": "vk-limited",
            "name": "limited",
            "value": LIMITED,
            "provider_configs": [{"provider": "openai", "allowed_models": ["gpt-4o-mini"]}],
        },
        {"id": "vk-off", "name": "off", "value": OFF, "is_active": False},
    ]
    return config


def status_of(gw: Gateway, api_key: str, model: str = "openai/gpt-4o-mini") -> int:
    with gw.client(api_key=api_key, max_retries=0) as client:
        try:
            client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=MAX_TOKENS)
        except openai.APIStatusError as err:
            return err.status_code
    return 200


def scrape(gw: Gateway) -> Samples:
    with _OPENER.open(gw.base_url + "/metrics", timeout=30) as answer:
        text = answer.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def wait_sample(gw: Gateway, name: str, labels: dict[str, str], expected: float, timeout: float = 10.0) -> float:
    """Poll /metrics until the sample is `expected` (other workers publish once a second)."""
    key = (name, tuple(sorted(labels.items())))
    deadline = time.monotonic() + timeout
    value = scrape(gw).get(key)
    while value != pytest.approx(expected) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = scrape(gw).get(key)
    assert value is not None, f"{name}{labels} missing"
    return value


def drive(gw: Gateway) -> None:
    assert [status_of(gw, VK) for _ in range(3)] == [200, 200, 200]
    assert [status_of(gw, ONE) for _ in range(2)] == [200, 429]  # one a minute
    assert [status_of(gw, TINY) for _ in range(2)] == [200, 402]  # one request's worth
    assert status_of(gw, "sk-not-a-virtual-key") == 401  # no virtual key: a client key is not one
    assert status_of(gw, "sk-bf-nobody-0000") == 401
    assert status_of(gw, OFF) == 403
    assert status_of(gw, LIMITED, "openai/gpt-4o") == 403
    assert status_of(gw, LIMITED, "anthropic/claude-3-5-haiku") == 403


@pytest.mark.parametrize("workers", [1, 2])
def test_spend_remaining_budget_and_rejections(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, workers: int
) -> None:
    fake_openai.always(Reply(usage=USAGE))
    gw = start_gateway(metrics_config(fake_openai.url), args=("--workers", str(workers)))
    drive(gw)
    spend = "bifrost_governance_spend_dollars_total"
    assert wait_sample(gw, spend, {"virtual_key": "vk-wired"}, 3 * COST) == pytest.approx(3 * COST)
    assert wait_sample(gw, spend, {"virtual_key": "vk-tiny"}, COST) == pytest.approx(COST)
    rejections = "bifrost_governance_rejections_total"
    for reason in (
        "rate_limited",
        "budget_exceeded",
        "virtual_key_required",
        "virtual_key_not_found",
        "virtual_key_blocked",
        "model_blocked",
        "provider_blocked",
    ):
        assert wait_sample(gw, rejections, {"reason": reason}, 1) == 1, reason
    remaining = "bifrost_governance_budget_remaining_dollars"
    # Shared counters: the worker answering the scrape sees every worker's spend (its own unused lease
    # excluded; another worker's goes back once it is idle).
    assert wait_sample(gw, remaining, {"budget": "b-wired"}, 97 * COST) == pytest.approx(97 * COST)
    assert wait_sample(gw, remaining, {"budget": "b-tiny"}, 0.0) == pytest.approx(0.0)
    samples = scrape(gw)
    assert samples[("bifrost_governance_budget_limit_dollars", (("budget", "b-wired"),))] == pytest.approx(100 * COST)
    assert VK not in str(samples) and TINY not in str(samples)  # ids, never values


def test_ungoverned_requests_add_no_governance_series() -> None:
    plugin = MetricsPlugin()
    ctx = RequestContext("r1", "chat", "openai")
    ctx.status, ctx.cost, ctx.provider, ctx.model = 200, 0.5, "openai", "gpt-4o-mini"
    ctx.end_ns = ctx.start_ns + 1000
    ctx.caller = Caller("vk-1")
    plugin.on_finish(ctx)
    assert plugin.spend == {}  # a gateway without the governance plugin keeps no governance counters
    plugin.governed = True
    ctx.caller = None
    plugin.on_finish(ctx)
    ctx.status, ctx.error_type = 500, "api_error"
    plugin.on_finish(ctx)
    assert plugin.spend == {} and plugin.rejections == {}
    ctx.caller, ctx.status, ctx.error_type = Caller("vk-1"), 200, None
    plugin.on_finish(ctx)
    assert plugin.spend == {"vk-1": 0.5}


async def test_ledger_usage_reads_the_window_without_taking(tmp_path: Path) -> None:
    """Ledger.usage (via BudgetAndRateLimits.budget_usage / rate_limit_usage): the shared counter minus this
    worker's unused lease, in the window the injectable clock is in; a read takes nothing."""
    clock = Clock(calendar.timegm((2026, 3, 10, 12, 0, 0)))
    store, other_store = SQLiteSharedState(tmp_path / "state.db"), SQLiteSharedState(tmp_path / "state.db")
    budget = Budget("b-day", 10 * COST, "1d", calendar_aligned=True)
    rl = RateLimit("rl", request_max_limit=5, request_reset_duration="1h")
    caller = Caller("vk1", budgets=(budget,), rate_limits=(rl,))
    limits = BudgetAndRateLimits(store, price, clock=clock, idle_return_s=0)
    other = BudgetAndRateLimits(other_store, price, clock=clock, idle_return_s=0)  # a second worker
    try:
        assert await limits.budget_usage(budget) == (0.0, clock.now - 12 * 3600, clock.now + 12 * 3600)
        assert await limits.rate_limit_usage(rl, "tokens") is None  # not limited
        used, start, end = await limits.rate_limit_usage(rl, "requests")
        assert used == 0 and end - start == 3600 and start <= clock.now < end
        for worker in (limits, other, limits):
            ctx = make_ctx(caller)
            await worker.pre_hook(ctx)
            finish(ctx, worker)
        await asyncio.gather(*limits.ledger._tasks, *other.ledger._tasks)  # background refills landed
        # both workers' spend, as either sees it (the other's unused lease counts until it goes back)
        assert (await limits.budget_usage(budget))[0] == pytest.approx(
            3 * COST + other.ledger._pools["budget:b-day"].avail
        )
        await other.close()  # gives its unused lease back
        assert (await limits.budget_usage(budget))[0] == pytest.approx(3 * COST)
        assert (await limits.rate_limit_usage(rl, "requests"))[0] == 3
        total_before = await store.total(limits.ledger._pools["budget:b-day"].key)
        await limits.budget_usage(budget)
        assert await store.total(limits.ledger._pools["budget:b-day"].key) == total_before  # reads take nothing
        clock.now += 86400  # the next day: a new window, nothing used in it yet
        used, start, _end = await limits.budget_usage(budget)
        assert used == 0.0 and start == calendar.timegm((2026, 3, 11, 0, 0, 0))
    finally:
        await limits.close()
        await store.close()
        await other_store.close()
