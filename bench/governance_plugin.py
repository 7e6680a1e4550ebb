"""The bench's governance load: every request governed as one caller with a budget and a rate limit.

Used by the `bifrost-gov` target (bench/targets/bifrost.py): installed into the gateway through a
`bifrost.plugins` entry point, it sets `ctx.caller` (what the virtual-key plugin does for a keyed
request) and runs the budget and rate-limit hooks (runtime/governance/limits.py) on the gateway's own
state.db. The limits are far above what a run sends, so nothing is refused: the bench measures what
reserving and settling costs on every request, not refusals. Prices are made up (any positive ones do).
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


def install(site: Path) -> Path:
    """A dist-info directory declaring the entry point; put `site` and the repo on the gateway's path."""
    info = site / "bifrost_bench_governance-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bifrost-bench-governance\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[bifrost.plugins]\nbench-governance = bench.governance_plugin:BenchGovernance\n"
    )
    return site
