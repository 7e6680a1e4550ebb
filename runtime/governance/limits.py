"""Budgets as hard ceilings and rate limits, for a governed caller (`ctx.caller`, a governance Caller).

A hook object (runtime/core/hooks.py contract) that the virtual-key plugin calls, or that runs as a plugin
itself after whatever sets `ctx.caller`. For a request without a Caller it does nothing.

pre_hook, before the request goes upstream, takes from every limit in the caller's chain, all or nothing
(what was taken is released if a later one refuses):

- each rate limit: 1 request, and the token estimate (prompt estimate + max output tokens);
- each budget: the worst-case cost: prompt estimate x input price + max output tokens x output price,
  priced with the injected `price(provider, model)` at the highest price among the model and its
  fallbacks (a fallback may be the one that answers).

The prompt estimate is cheap and deliberately high: the request body's length in bytes / 3 (English runs
about 4 characters a token, and the JSON around the text only adds bytes). The output bound is the
client's `max_completion_tokens` or `max_tokens`, else `default_max_tokens` (the body is not changed:
a provider that generates more is charged what it reports, and the excess is recorded).

An unpriced model (price returns None) under a budget is refused (402 budget_unpriced_model) unless
`unpriced_price` gives a default per-token price: a ceiling that cannot bound a cost is not a ceiling.

on_finish (always called, exactly once) settles each hold to the real amount: `ctx.cost` when set, else
`ctx.usage` priced with the route's price; no usage and a failure -> 0 (nothing was billed); a client that
went away after the provider started answering (status 499 with an upstream wait) and no usage -> the
whole reservation (the provider may have billed what it generated). Settlement is local arithmetic, so
on_finish never waits; there is no post_hook (on_finish sees the final usage, and one stage fewer costs
nothing per request).

When the shared-state store cannot answer while a request needs it (a lease, a rolling window's anchor),
`failure_policy` decides (docs/failure-policy.md): "fail_closed" (the default) refuses the request with 503
`governance_unavailable` (raised from the pre-hook, so each ingress renders it in its own error shape);
"fail_open" admits it and its amounts are owed (Ledger.owe), added to the store when it answers again.
Either way the decision waits at most one store timeout, and none while the store is latched down.

Answers carry OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for the most constrained
rate limit; a refusal is 429 with Retry-After (rate limit) or 402 naming the budget and its reset time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from runtime.core.context import RequestContext
from runtime.errors import BudgetExceeded, GatewayError, RateLimited, UnpricedModel
from runtime.governance.ledger import Clock, Hold, Ledger, Limit, Pool
from runtime.governance.model import Budget, Caller, RateLimit
from runtime.governance.periods import Period, format_reset, period
from runtime.stores.shared import SharedState, SharedStateError

# price(provider, model) -> (dollars per input token, dollars per output token), None when unpriced.
PriceFn = Callable[[str, str], "tuple[float, float] | None"]
BYTES_PER_TOKEN = 3
DEFAULT_MAX_TOKENS = 4096
FAILURE_POLICIES = ("fail_closed", "fail_open")


class GovernanceUnavailable(GatewayError):
    """503: budgets and rate limits apply, but the store that counts them cannot answer (fail_closed).
    The message names neither the store's address nor any secret: the log has the store's error."""

    status = 503
    type = "governance_unavailable"
    code = "governance_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "the budgets and rate limits that apply to this request cannot be checked right now "
            "(the gateway's shared-state store is unavailable); retry shortly",
            retry_after_s=1.0,
        )


class _Open:
    """What one governed request holds until it ends."""

    __slots__ = ("budget_holds", "estimate_tokens", "price", "request_holds", "token_holds")

    def __init__(self) -> None:
        self.budget_holds: list[Hold] = []
        self.token_holds: list[Hold] = []
        # Settled too (to what they took): a pool counts its holds in flight, and only a pool with none
        # is idle, so unsettled request holds kept their pool's unused lease from ever being returned.
        self.request_holds: list[Hold] = []
        self.price: tuple[float, float] | None = None
        self.estimate_tokens = 0


class _Plan:
    """A caller's limits, parsed once: (kind, Limit, RateLimit) per rate counter, (Limit, Budget) per budget."""

    __slots__ = ("budgets", "rates")

    def __init__(
        self, rates: tuple[tuple[str, Limit, RateLimit], ...], budgets: tuple[tuple[Limit, Budget], ...]
    ) -> None:
        self.rates = rates
        self.budgets = budgets


class BudgetAndRateLimits:
    name = "governance-limits"

    def __init__(
        self,
        store: SharedState,
        price: PriceFn,
        *,
        clock: Clock = time.time,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        unpriced_price: tuple[float, float] | None = None,
        lease_fraction: float = 1 / 16,
        idle_return_s: float = 5.0,
        failure_policy: str = "fail_closed",
    ) -> None:
        if failure_policy not in FAILURE_POLICIES:
            raise ValueError(f"failure_policy must be one of {FAILURE_POLICIES}, got {failure_policy!r}")
        self.fail_open = failure_policy == "fail_open"
        self.price = price
        self.clock = clock
        self.default_max_tokens = default_max_tokens
        self.unpriced_price = unpriced_price
        self.ledger = Ledger(store, clock=clock, lease_fraction=lease_fraction, idle_return_s=idle_return_s)
        # Parsed once per budget / rate-limit object, keyed by id() with the object kept alongside (an id is
        # only reused once its object is gone, and then `is` fails): hashing a frozen dataclass per request
        # would hash every field.
        self._limits: dict[tuple[int, str], tuple[Any, Limit]] = {}
        self._plans: dict[int, tuple[Caller, _Plan]] = {}  # by id(caller), the caller kept (see _limits)
        self._open: dict[str, _Open] = {}  # by request id, until on_finish

    # -- the hooks -----------------------------------------------------------------------------------
    async def pre_hook(self, ctx: RequestContext) -> None:
        caller = ctx.caller
        if not isinstance(caller, Caller) or not (caller.budgets or caller.rate_limits):
            return None
        if ctx.id in self._open:  # called twice for one request (plugged in twice): hold once, settle once
            return None
        body = ctx.body
        prompt = -(-len(ctx.input_raw or b"") // BYTES_PER_TOKEN)
        max_out = body.get("max_completion_tokens") or body.get("max_tokens")
        if not isinstance(max_out, int) or isinstance(max_out, bool) or max_out <= 0:
            max_out = self.default_max_tokens
        state = _Open()
        state.estimate_tokens = prompt + max_out
        taken: list[Hold] = []
        now = self.clock()  # one reading per request: every limit's window is judged at the same instant
        entry = self._plans.get(id(caller))
        plan = entry[1] if entry is not None and entry[0] is caller else self._plan(caller)
        try:
            if plan.rates:
                await self._rate_limits(ctx, plan.rates, state, taken, now)
            if plan.budgets:
                state.price = self._worst_price(body)
                cost = prompt * state.price[0] + max_out * state.price[1]
                for limit, budget in plan.budgets:
                    hold = self._take_now(limit, cost, now) or await self._take(limit, cost, now)
                    if hold is None:
                        raise self._budget_refusal(budget, limit, cost)
                    taken.append(hold)
                    state.budget_holds.append(hold)
        except BaseException:
            for hold in taken:
                self.ledger.settle(hold, 0.0)
            raise
        self._open[ctx.id] = state
        return None

    def on_finish(self, ctx: RequestContext) -> None:
        state = self._open.pop(ctx.id, None)  # pop: settled exactly once, whatever ran before
        if state is None:
            return
        # A cache hit (runtime/cache/plugin.py) reached no provider: it costs no tokens and no dollars (its
        # request still counted against the request rate limits in the pre-hook).
        hit = ctx.cache is not None and ctx.cache.startswith("hit")
        usage = None if hit else ctx.usage
        charge_all = usage is None and not hit and ctx.status == 499 and ctx.upstream_ns > 0
        for hold in state.request_holds:
            self.ledger.settle(hold, hold.amount)
        if state.token_holds:
            tokens = 0.0
            if usage is not None:
                tokens = float(usage.prompt_tokens + usage.completion_tokens)
            for hold in state.token_holds:
                self.ledger.settle(hold, hold.amount if charge_all else tokens)
        if state.budget_holds:
            cost = 0.0 if hit else self._actual_cost(ctx, state)
            for hold in state.budget_holds:
                self.ledger.settle(hold, hold.amount if charge_all else cost)

    async def close(self) -> None:
        """Give unused leases back to the shared store (call at shutdown, before closing the store)."""
        await self.ledger.close()

    # -- taking --------------------------------------------------------------------------------------
    def _take_now(self, limit: Limit, amount: float, now: float) -> Hold | None:
        """The common case, without a coroutine: this window's pool is here and its lease covers it."""
        pool = self.ledger._pools.get(limit.name)
        if pool is None or pool.limit is not limit or not (pool.start <= now < pool.end):
            return None
        return self.ledger.try_take(pool, amount)

    async def _take(self, limit: Limit, amount: float, now: float) -> Hold | None:
        try:
            pool = self.ledger.current(limit)
            if pool is None:
                pool = await self.ledger.pool(limit)
            hold = self.ledger.try_take(pool, amount)  # the common case: the local lease covers it, no await
            if hold is None:
                hold = await self.ledger.take(pool, amount)
            return hold
        except SharedStateError:  # the store cannot answer (the ledger logged why, once)
            if not self.fail_open:
                raise GovernanceUnavailable() from None
            return self.ledger.owe(limit, amount, now)

    async def _rate_limits(
        self,
        ctx: RequestContext,
        rates: tuple[tuple[str, Limit, RateLimit], ...],
        state: _Open,
        taken: list[Hold],
        now: float,
    ) -> None:
        shown: dict[str, tuple[float, Pool]] = {}  # kind -> (remaining, pool) of the most constrained
        for kind, limit, rl in rates:
            amount = 1 if kind == "requests" else state.estimate_tokens
            hold = self._take_now(limit, amount, now) or await self._take(limit, amount, now)
            if hold is None:
                pool = self.ledger._pools[limit.name]
                shown[kind] = (0.0, pool)
                _headers(ctx, shown, self.clock())
                raise self._rate_refusal(rl, kind, limit, pool, amount)
            taken.append(hold)
            if kind == "tokens":
                state.token_holds.append(hold)
            else:
                state.request_holds.append(hold)
            if hold.pool is None:  # admitted without the store (fail_open): no remaining to show
                continue
            remaining = hold.pool.remaining()
            if kind not in shown or remaining < shown[kind][0]:
                shown[kind] = (remaining, hold.pool)
        if shown:
            _headers(ctx, shown, now)

    def _plan(self, caller: Caller) -> _Plan:
        rates = []
        for rl in caller.rate_limits:
            if rl.request_max_limit is not None and rl.request_reset_duration:
                rates.append(
                    ("requests", self._rate_limit(rl, "requests", rl.request_max_limit, rl.request_reset_duration), rl)
                )
            if rl.token_max_limit is not None and rl.token_reset_duration:
                rates.append(
                    ("tokens", self._rate_limit(rl, "tokens", rl.token_max_limit, rl.token_reset_duration), rl)
                )
        plan = _Plan(tuple(rates), tuple((self._budget_limit(b), b) for b in caller.budgets))
        if len(self._plans) > 10_000:  # callers built per request, or many config changes: start over
            self._plans.clear()
        self._plans[id(caller)] = (caller, plan)
        return plan

    # -- reading (admin API, /metrics) ----------------------------------------------------------------
    async def budget_usage(self, budget: Budget) -> tuple[float, float, float]:
        """(dollars used, window start, window end) of `budget`'s current window (Ledger.usage)."""
        return await self.ledger.usage(self._budget_limit(budget))

    async def rate_limit_usage(self, rl: RateLimit, kind: str) -> tuple[float, float, float] | None:
        """(used, window start, window end) of `rl`'s `kind` ("requests" or "tokens"), None if not limited."""
        max_, duration = (
            (rl.request_max_limit, rl.request_reset_duration)
            if kind == "requests"
            else (rl.token_max_limit, rl.token_reset_duration)
        )
        if max_ is None or not duration:
            return None
        return await self.ledger.usage(self._rate_limit(rl, kind, max_, duration))

    # -- limits, parsed once per definition ----------------------------------------------------------
    def _budget_limit(self, budget: Budget) -> Limit:
        entry = self._limits.get((id(budget), "b"))
        if entry is not None and entry[0] is budget:
            return entry[1]
        limit = Limit(
            f"budget:{budget.id}", float(budget.max_limit), _period(budget.reset_duration, budget.calendar_aligned)
        )
        self._remember((id(budget), "b"), budget, limit)
        return limit

    def _rate_limit(self, rl: RateLimit, kind: str, max_: int, duration: str) -> Limit:
        entry = self._limits.get((id(rl), kind))
        if entry is not None and entry[0] is rl:
            return entry[1]
        limit = Limit(f"rl:{rl.id}:{kind}", float(max_), _period(duration, False), True)
        self._remember((id(rl), kind), rl, limit)
        return limit

    def _remember(self, key: tuple[int, str], definition: Any, limit: Limit) -> None:
        if len(self._limits) > 10_000:  # definitions replaced by many live config changes: start over
            self._limits.clear()
        # Equal definitions (a config reload builds new objects) share one Limit, so its pool carries on.
        for _definition, known in self._limits.values():
            if known.name == limit.name and known == limit:
                limit = known
                break
        self._limits[key] = (definition, limit)

    # -- prices --------------------------------------------------------------------------------------
    def _price_of(self, model: str) -> tuple[float, float] | None:
        provider, slash, name = model.partition("/")
        if not slash:
            provider, name = "", model
        return self.price(provider, name)

    def _worst_price(self, body: dict[str, Any]) -> tuple[float, float]:
        """The highest input and output prices among the model and its fallbacks (any may answer)."""
        models = [body.get("model")]
        fallbacks = body.get("fallbacks")
        if isinstance(fallbacks, list):
            models.extend(fallbacks)
        worst_in = worst_out = 0.0
        for model in models:
            if not isinstance(model, str) or not model:
                continue
            price = self._price_of(model) or self.unpriced_price
            if price is None:
                raise UnpricedModel(
                    f"model '{model}' has no price, so the budget that applies to this key cannot bound its cost; "
                    "use a priced model (or give the model a price in pricing_overrides)",
                    param="model",
                )
            worst_in = max(worst_in, price[0])
            worst_out = max(worst_out, price[1])
        return worst_in, worst_out

    def _actual_cost(self, ctx: RequestContext, state: _Open) -> float:
        if ctx.cost is not None:
            return float(ctx.cost)
        usage = ctx.usage
        if usage is None:
            return 0.0  # a failure with no usage: nothing was billed
        price = None
        if ctx.provider and ctx.model:
            price = self.price(ctx.provider, ctx.model)
        if price is None:
            price = state.price or self.unpriced_price or (0.0, 0.0)
        return usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]

    # -- refusals ------------------------------------------------------------------------------------
    def _budget_refusal(self, budget: Budget, limit: Limit, cost: float) -> GatewayError:
        pool = self.ledger._pools[limit.name]
        resets = datetime.fromtimestamp(pool.end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return BudgetExceeded(
            f"budget '{budget.id}' (${budget.max_limit:g} per {budget.reset_duration}) cannot cover this request's "
            f"worst-case cost of ${cost:.6f}; it resets at {resets}",
            retry_after_s=max(1.0, pool.end - self.clock()),
        )

    def _rate_refusal(self, rl: RateLimit, kind: str, limit: Limit, pool: Pool, amount: float) -> GatewayError:
        wait = max(1.0, pool.end - self.clock())
        what = "requests" if kind == "requests" else f"tokens (this request needs up to {int(amount)})"
        return RateLimited(
            f"rate limit '{rl.id}' allows {int(limit.max)} {kind} per {limit.period.text}: no {what} left; "
            f"it resets in {format_reset(wait)}",
            code="request_limited" if kind == "requests" else "token_limited",
            retry_after_s=wait,
        )


def _period(text: str, calendar_aligned: bool) -> Period:
    try:
        return period(text, calendar_aligned)
    except ValueError as exc:  # a config the loader let through: say which, without failing silently
        raise GatewayError(
            f"governance: invalid reset duration: {exc}", status=500, type="configuration_error"
        ) from None


# The rate-limit headers' names per kind, built once (not three f-strings per kind per request).
_HEADER_NAMES = {
    kind: (f"x-ratelimit-limit-{kind}", f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}")
    for kind in ("requests", "tokens")
}


def _headers(ctx: RequestContext, shown: dict[str, tuple[float, Pool]], now: float) -> None:
    headers = ctx.response_headers
    if headers is None:
        headers = ctx.response_headers = {}
    for kind, (remaining, pool) in shown.items():
        names = _HEADER_NAMES.get(kind) or (
            f"x-ratelimit-limit-{kind}",
            f"x-ratelimit-remaining-{kind}",
            f"x-ratelimit-reset-{kind}",
        )
        headers[names[0]] = str(int(pool.limit.max))
        headers[names[1]] = str(int(remaining))
        left = pool.end - now
        whole = int(left)
        if whole != pool.reset_text[0] or left < 1:
            pool.reset_text = (whole, format_reset(left))
        headers[names[2]] = pool.reset_text[1]
