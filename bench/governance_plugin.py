"""The bench's governance load: every request governed as one caller with two budgets and a rate limit.

- `governance_config()`: the `bifrost-gov` target's config.json blocks (bench/targets/bifrost.py): the
  REAL built-in governance (runtime/governance/plugin.py) with one virtual key, `VIRTUAL_KEY`, which the
  load generator sends as `Authorization: Bearer` (the target's `Running.headers`). Keys are mandatory,
  so every request goes through the key check, its budget (and its team's) and its rate limit (requests
  and tokens), priced from the model catalog, on the gateway's own state.db.
- `BenchGovernance`: the same caller without the key check, for the in-process bench
  (`python -m bench.governance`): sets `ctx.caller` and runs the budget and rate-limit hooks.

The limits are far above what a run sends, so nothing is refused: the bench measures what checking,
reserving and settling cost on every request, not refusals. Prices are made up (any positive ones do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.core.context import RequestContext
from runtime.governance.limits import BudgetAndRateLimits
from runtime.governance.model import Budget, Caller, RateLimit
from runtime.stores import engines

PRICE = (0.15e-6, 0.6e-6)  # dollars per input / output token
CALLER = Caller(
    "bench-key",
    "bench",
    team_id="bench-team",
    budgets=(Budget("bench-key-budget", 1e9, "1d"), Budget("bench-team-budget", 1e9, "1M", calendar_aligned=True)),
    rate_limits=(RateLimit("bench-key-limit", 10**9, "1m", 10**12, "1m"),),
)


VIRTUAL_KEY = "sk-bf-bench-not-a-secret"  # a made-up key, configured only in the bench's temp app dir


def governance_config() -> dict[str, Any]:
    """`client` fields and the `governance` block (Go Bifrost's schema) of CALLER's limits."""
    rl = CALLER.rate_limits[0]
    key_budget, team_budget = CALLER.budgets
    return {
        "client": {"enforce_auth_on_inference": True},
        "governance": {
            "budgets": [
                {"id": key_budget.id, "max_limit": key_budget.max_limit, "reset_duration": key_budget.reset_duration},
                {
                    "id": team_budget.id,
                    "max_limit": team_budget.max_limit,
                    "reset_duration": team_budget.reset_duration,
                    "calendar_aligned": True,
                },
            ],
            "rate_limits": [
                {
                    "id": rl.id,
                    "request_max_limit": rl.request_max_limit,
                    "request_reset_duration": rl.request_reset_duration,
                    "token_max_limit": rl.token_max_limit,
                    "token_reset_duration": rl.token_reset_duration,
                }
            ],
            "teams": [{"id": CALLER.team_id, "name": "bench", "budget_id": team_budget.id}],
            "virtual_keys": [
                {
                    "id": CALLER.virtual_key_id,
                    "name": CALLER.virtual_key_name,
                    "value": VIRTUAL_KEY,
                    "team_id": CALLER.team_id,
                    "budget_id": key_budget.id,
                    "rate_limit_id": rl.id,
                }
            ],
        },
    }


def _price(provider: str, model: str) -> tuple[float, float]:
    return PRICE


class BenchGovernance:
    name = "bench-governance"
    config_fields = {"app_dir": str}

    def __init__(self, config: dict[str, Any]) -> None:
        store = engines.build_shared_state_at(engines.EMBEDDED, Path(config["app_dir"]) / engines.SHARED_STATE_FILE)
        self.limits = BudgetAndRateLimits(store, _price)

    async def pre_hook(self, ctx: RequestContext) -> None:
        ctx.caller = CALLER
        await self.limits.pre_hook(ctx)

    def on_finish(self, ctx: RequestContext) -> None:
        self.limits.on_finish(ctx)
