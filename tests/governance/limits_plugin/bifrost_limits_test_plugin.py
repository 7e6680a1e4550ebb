"""A test plugin: sets `ctx.caller` from a request header, then runs the budget and rate-limit hooks.

Stands in for the virtual-key plugin (issue 11 item 1) so the limits can be tested through real gateway
processes on their own. Installed through a `bifrost.plugins` entry point (tests/governance/conftest.py).
Config:
    app_dir        the gateway's app dir: the shared state is its state.db, as the gateway's own
    budgets        [{id, max_limit, reset_duration, calendar_aligned?}]
    rate_limits    [{id, request_max_limit?, request_reset_duration?, token_max_limit?, token_reset_duration?}]
    price_in, price_out   dollars per token for every model except those in `unpriced` (comma list)
    idle_return_s  how soon unused leases go back to state.db
A request with header `x-test-caller: <name>` is governed as that caller; without it, it is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.core.context import RequestContext
from runtime.governance.limits import BudgetAndRateLimits
from runtime.governance.model import Budget, Caller, RateLimit
from runtime.stores import engines


class LimitsTestPlugin:
    name = "limits-test"
    config_fields = {
        "app_dir": str,
        "budgets": list,
        "rate_limits": list,
        "price_in": (int, float),
        "price_out": (int, float),
        "unpriced": str,
        "idle_return_s": (int, float),
        "lease_fraction": (int, float),
    }

    def __init__(self, config: dict[str, Any]) -> None:
        store = engines.build_shared_state_at(engines.EMBEDDED, Path(config["app_dir"]) / engines.SHARED_STATE_FILE)
        prices = (float(config.get("price_in", 0.0)), float(config.get("price_out", 0.0)))
        unpriced = {m for m in str(config.get("unpriced", "")).split(",") if m}

        def price(provider: str, model: str) -> tuple[float, float] | None:
            return None if model in unpriced else prices

        self.limits = BudgetAndRateLimits(
            store,
            price,
            idle_return_s=float(config.get("idle_return_s", 5.0)),
            lease_fraction=float(config.get("lease_fraction", 1 / 16)),
        )
        self.budgets = tuple(Budget(**b) for b in config.get("budgets", ()))
        self.rate_limits = tuple(RateLimit(**r) for r in config.get("rate_limits", ()))

    async def pre_hook(self, ctx: RequestContext) -> None:
        who = ctx.headers.get("x-test-caller")
        if who:
            ctx.caller = Caller(who, who, budgets=self.budgets, rate_limits=self.rate_limits)
        return await self.limits.pre_hook(ctx)

    def on_finish(self, ctx: RequestContext) -> None:
        self.limits.on_finish(ctx)

    async def aclose(self) -> None:
        # As the built-in governance plugin does at shutdown: every unused lease goes back to the store,
        # including a refill leased ahead of need that landed after the last request (else a restart
        # would find it counted as spend, depending on how fast the store's thread ran).
        await self.limits.close()
