"""Budgets through the hook object itself (runtime/governance/limits.py), in-process, on a real state.db:
hard ceiling under concurrency and across two workers' stores, reset windows with an injectable clock,
settlement (real cost, failure, cancellation, exactly once), all-or-nothing chains, unpriced models."""

from __future__ import annotations

import asyncio
import calendar
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.core.context import RequestContext
from runtime.errors import BudgetExceeded, UnpricedModel
from runtime.governance.limits import BudgetAndRateLimits
from runtime.governance.model import Budget, Caller
from runtime.providers.base import Usage
from runtime.stores.shared import SharedState
from runtime.stores.shared_sqlite import SQLiteSharedState

PRICE_OUT = 1 / 1024  # binary-exact dollars per output token, so sums are exact
MAX_TOKENS = 16
COST = MAX_TOKENS * PRICE_OUT  # 1/64 $: the worst case of one request (input is free here)
_ids = itertools.count()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def price(provider: str, model: str) -> tuple[float, float] | None:
    return None if model == "unpriced" else (0.0, PRICE_OUT)


def make_ctx(caller: Caller | None, model: str = "openai/gpt-4o-mini", max_tokens: int | None = MAX_TOKENS) -> Any:
    ctx = RequestContext(f"r{next(_ids)}", "chat")
    ctx.caller = caller
    ctx.body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if max_tokens is not None:
        ctx.body["max_tokens"] = max_tokens
    ctx.input_raw = b"{}"
    return ctx


def finish(ctx: Any, limits: BudgetAndRateLimits, completion: int | None = MAX_TOKENS, status: int = 200) -> None:
    ctx.status = status
    ctx.provider, ctx.model = "openai", "gpt-4o-mini"
    ctx.usage = None if completion is None else Usage(0, completion)
    limits.on_finish(ctx)


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Callable[[], SharedState]]:
    opened: list[SharedState] = []

    def make() -> SharedState:
        store = SQLiteSharedState(tmp_path / "state.db")
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


async def counter(store: SharedState, limits: BudgetAndRateLimits, name: str) -> float:
    pool = limits.ledger._pools[name]
    return float(await store.total(pool.key))


async def admitted(limits: BudgetAndRateLimits, ctx: Any) -> bool:
    try:
        await limits.pre_hook(ctx)
    except BudgetExceeded:
        return False
    return True


async def test_200_concurrent_against_a_budget_of_50_across_two_workers(
    stores: Callable[[], SharedState],
) -> None:
    budget = Budget("team-b", 50 * COST, "1d")
    caller = Caller("vk1", budgets=(budget,))
    workers = [BudgetAndRateLimits(stores(), price, idle_return_s=0) for _ in range(2)]
    ctxs = [make_ctx(caller) for _ in range(200)]
    results = await asyncio.gather(*(admitted(workers[i % 2], c) for i, c in enumerate(ctxs)))
    assert 40 <= sum(results) <= 50  # a worker may strand less than one slice; never more than 50
    for ok, (i, ctx) in zip(results, enumerate(ctxs), strict=True):
        if ok:
            finish(ctx, workers[i % 2])
    spent = sum(results) * COST
    assert spent <= budget.max_limit
    for w in workers:
        await w.close()
    # every unused lease went back: the store holds exactly what was spent
    store = stores()
    assert await counter(store, workers[0], "budget:team-b") == spent


async def test_the_worst_case_is_reserved_and_the_rest_refunded(stores: Callable[[], SharedState]) -> None:
    caller = Caller("vk1", budgets=(Budget("b", 3 * COST, "1h"),))
    limits = BudgetAndRateLimits(stores(), price, idle_return_s=0)
    first, second, third = (make_ctx(caller) for _ in range(3))
    for ctx in (first, second, third):
        await limits.pre_hook(ctx)
    with pytest.raises(BudgetExceeded) as refused:
        await limits.pre_hook(make_ctx(caller))
    assert "budget 'b'" in refused.value.message and "resets at" in refused.value.message
    assert refused.value.status == 402
    finish(first, limits, completion=MAX_TOKENS // 4)  # cost a quarter of its reservation
    finish(second, limits, completion=None, status=502)  # failed upstream, no usage: costs nothing
    finish(second, limits)  # on_finish twice (a bug elsewhere) must not settle twice
    # 1/4 + 0 + 1 (still held) of 3 spent: one more whole request fits, and the rest is not enough for 2
    await limits.pre_hook(make_ctx(caller))
    with pytest.raises(BudgetExceeded):
        await limits.pre_hook(make_ctx(caller, max_tokens=MAX_TOKENS))


async def test_a_client_gone_mid_answer_without_usage_is_charged_its_reservation(
    stores: Callable[[], SharedState],
) -> None:
    caller = Caller("vk1", budgets=(Budget("b", 2 * COST, "1h"),))
    limits = BudgetAndRateLimits(stores(), price, idle_return_s=0)
    gone = make_ctx(caller)
    await limits.pre_hook(gone)
    gone.upstream_ns = 1_000_000  # the provider had started answering
    finish(gone, limits, completion=None, status=499)
    await limits.pre_hook(make_ctx(caller))
    with pytest.raises(BudgetExceeded):
        await limits.pre_hook(make_ctx(caller))


async def test_ctx_cost_wins_over_usage(stores: Callable[[], SharedState]) -> None:
    caller = Caller("vk1", budgets=(Budget("b", 2 * COST, "1h"),))
    limits = BudgetAndRateLimits(stores(), price, idle_return_s=0)
    ctx = make_ctx(caller)
    await limits.pre_hook(ctx)
    ctx.cost = 2 * COST  # the catalog priced it higher than the reservation (cached writes, say)
    finish(ctx, limits)
    with pytest.raises(BudgetExceeded):
        await limits.pre_hook(make_ctx(caller))


async def test_a_chain_is_all_or_nothing(stores: Callable[[], SharedState]) -> None:
    roomy = Budget("key", 10 * COST, "1h")
    tight = Budget("team", 1 * COST, "1h")
    limits = BudgetAndRateLimits(stores(), price, idle_return_s=0)
    await limits.pre_hook(make_ctx(Caller("vk1", budgets=(tight,))))
    with pytest.raises(BudgetExceeded, match="budget 'team'"):
        await limits.pre_hook(make_ctx(Caller("vk1", budgets=(roomy, tight))))
    # the key budget got back what it had taken: all 10 still fit
    for _ in range(10):
        await limits.pre_hook(make_ctx(Caller("vk2", budgets=(roomy,))))


async def test_windows_reset_with_the_clock(stores: Callable[[], SharedState]) -> None:
    jan31 = float(calendar.timegm((2026, 1, 31, 23, 59, 0)))
    clock = Clock(jan31)
    monthly = Caller("vk1", budgets=(Budget("m", COST, "1M", calendar_aligned=True),))
    limits = BudgetAndRateLimits(stores(), price, clock=clock, idle_return_s=0)
    await limits.pre_hook(make_ctx(monthly))
    with pytest.raises(BudgetExceeded, match="resets at 2026-02-01T00:00:00Z"):
        await limits.pre_hook(make_ctx(monthly))
    clock.now = float(calendar.timegm((2026, 2, 1, 0, 0, 0)))
    await limits.pre_hook(make_ctx(monthly))  # a new calendar month: a new budget

    # rolling: anchored at first use, resets a whole duration later, not at a clock boundary
    clock.now = float(calendar.timegm((2026, 3, 1, 10, 30, 0)))
    hourly = Caller("vk1", budgets=(Budget("h", COST, "1h"),))
    await limits.pre_hook(make_ctx(hourly))
    clock.now += 1800  # 11:00 passes: no reset
    with pytest.raises(BudgetExceeded, match="resets at 2026-03-01T11:30:00Z"):
        await limits.pre_hook(make_ctx(hourly))
    clock.now += 1800
    await limits.pre_hook(make_ctx(hourly))


async def test_spend_is_in_state_db_for_the_next_process(stores: Callable[[], SharedState]) -> None:
    caller = Caller("vk1", budgets=(Budget("b", 3 * COST, "1d"),))
    before = BudgetAndRateLimits(stores(), price, idle_return_s=0)
    for _ in range(2):
        ctx = make_ctx(caller)
        await before.pre_hook(ctx)
        finish(ctx, before)
    await before.close()  # a graceful stop gives its unused lease back
    after = BudgetAndRateLimits(stores(), price, idle_return_s=0)  # a restarted worker: a fresh store
    await after.pre_hook(make_ctx(caller))
    with pytest.raises(BudgetExceeded):
        await after.pre_hook(make_ctx(caller))


async def test_unpriced_models_and_ungoverned_requests(stores: Callable[[], SharedState]) -> None:
    limits = BudgetAndRateLimits(stores(), price, idle_return_s=0)
    caller = Caller("vk1", budgets=(Budget("b", 1.0, "1d"),))
    with pytest.raises(UnpricedModel, match="'openai/unpriced' has no price"):
        await limits.pre_hook(make_ctx(caller, model="openai/unpriced"))
    ctx = make_ctx(caller, model="openai/gpt-4o-mini")
    ctx.body["fallbacks"] = ["openai/unpriced"]  # a fallback may answer: it must be priced too
    with pytest.raises(UnpricedModel):
        await limits.pre_hook(ctx)
    lenient = BudgetAndRateLimits(stores(), price, unpriced_price=(0.0, PRICE_OUT), idle_return_s=0)
    await lenient.pre_hook(make_ctx(caller, model="openai/unpriced"))
    plain = make_ctx(None)
    await limits.pre_hook(plain)  # no Caller: nothing governed, nothing held
    assert plain.response_headers is None and not limits._open


class SlowAnswers(SQLiteSharedState):
    """The real store, whose `reserve` answers only once `gate` opens: the SQL has run (the lease is granted)
    but the caller has not heard yet, which is when a client that walks away cancels its request."""

    gate: asyncio.Event | None = None
    waiting = 0

    async def reserve(self, key: str, amount: float, limit: float, window_s: float | None = None) -> bool:
        ok = await super().reserve(key, amount, limit, window_s)
        if self.gate is not None:
            self.waiting += 1
            await self.gate.wait()
        return ok


async def cancel_mid_lease(store: SlowAnswers, limits: BudgetAndRateLimits, ctx: Any) -> None:
    store.gate, store.waiting = asyncio.Event(), 0
    task = asyncio.create_task(limits.pre_hook(ctx))
    while not store.waiting:  # the store granted the lease; the answer is on its way
        await asyncio.sleep(0.01)
    task.cancel()  # the client went away
    await asyncio.gather(task, return_exceptions=True)
    store.gate.set()
    store.gate = None
    await asyncio.sleep(0.05)


async def test_a_request_cancelled_while_leasing_does_not_strand_the_lease(tmp_path: Path) -> None:
    store = SlowAnswers(tmp_path / "state.db")
    try:
        caller = Caller("vk1", budgets=(Budget("b", 100 * COST, "1h"),))
        limits = BudgetAndRateLimits(store, price, idle_return_s=0)
        warm = make_ctx(caller, max_tokens=1)  # the window, its anchor and a first small lease
        await limits.pre_hook(warm)
        finish(warm, limits, completion=1)
        await cancel_mid_lease(store, limits, make_ctx(caller, max_tokens=20 * MAX_TOKENS))  # needs a lease
        await limits.close()  # a graceful stop gives every unused lease back
        assert await counter(store, limits, "budget:b") == PRICE_OUT  # only the warm-up's 1 token is spent
    finally:
        await store.close()


async def test_a_budget_far_from_its_limit_never_refuses_under_churn(tmp_path: Path) -> None:
    """Leases given back and taken again, with clients walking away mid-lease: a budget nowhere near spent
    keeps admitting (a stranded slice per cancellation would fill the counter after 16 of them)."""
    store = SlowAnswers(tmp_path / "state.db")
    try:
        caller = Caller("vk1", budgets=(Budget("big", 1e9, "1d"),))
        limits = BudgetAndRateLimits(store, price, idle_return_s=0)
        for _ in range(20):
            await limits.ledger.return_idle(force=True)  # the lease goes back: the next request leases again
            await cancel_mid_lease(store, limits, make_ctx(caller))
            await limits.ledger.return_idle(force=True)
            ctx = make_ctx(caller)
            await limits.pre_hook(ctx)  # never BudgetExceeded
            finish(ctx, limits)
    finally:
        await store.close()


async def test_a_budget_redefined_live_keeps_its_spend(stores: Callable[[], SharedState]) -> None:
    store = stores()
    limits = BudgetAndRateLimits(store, price, idle_return_s=0)
    small = Caller("vk1", budgets=(Budget("b", 2 * COST, "1d"),))
    for _ in range(2):
        ctx = make_ctx(small)
        await limits.pre_hook(ctx)
        finish(ctx, limits)
    with pytest.raises(BudgetExceeded):
        await limits.pre_hook(make_ctx(small))
    raised = Caller("vk1", budgets=(Budget("b", 4 * COST, "1d"),))  # a config change: the same budget, raised
    for _ in range(2):
        ctx = make_ctx(raised)
        await limits.pre_hook(ctx)
        finish(ctx, limits)
    with pytest.raises(BudgetExceeded):
        await limits.pre_hook(make_ctx(raised))
    await limits.close()
    assert await counter(store, limits, "budget:b") == 4 * COST


class SlowReturns:
    """The real SQLite store, with every negative `incr` (a lease going back) held until released:
    the window in which another request arrives while the hand-back is on its way."""

    def __init__(self, store: SharedState) -> None:
        self._store = store
        self.release = asyncio.Event()
        self.returning = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def incr(self, key: str, amount: Any = 1, window_s: float | None = None) -> Any:
        if amount < 0:
            self.returning.set()
            await self.release.wait()
        return await self._store.incr(key, amount, window_s)


async def test_a_request_arriving_while_a_lease_goes_back_waits_for_it_instead_of_being_refused(
    stores: Callable[[], SharedState],
) -> None:
    # One worker leases the whole budget, spends nothing, and goes idle; while its lease is on its way
    # back to the store, a request needs it. Leasing against the store counter before the hand-back
    # landed would find the budget full and refuse a request the budget has room for.
    budget = Budget("team-r", 4 * COST, "1d")
    caller = Caller("vk1", budgets=(budget,))
    store = SlowReturns(stores())
    limits = BudgetAndRateLimits(store, price, idle_return_s=0, lease_fraction=1.0)  # type: ignore[arg-type]
    first = make_ctx(caller)
    assert await admitted(limits, first)
    finish(first, limits, completion=0)  # spends nothing: the whole lease is unused
    sweep = asyncio.ensure_future(limits.ledger.return_idle(force=True))
    await asyncio.wait_for(store.returning.wait(), 10)
    second = asyncio.ensure_future(admitted(limits, make_ctx(caller)))
    await asyncio.sleep(0.05)
    store.release.set()
    await sweep
    assert await asyncio.wait_for(second, 10), "refused while the budget had room"
    await limits.close()
