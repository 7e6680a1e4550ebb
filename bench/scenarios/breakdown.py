"""``breakdown``: Bifrost's per-stage timings (queue wait, key selection, build, encode, upstream,
parse) from its request log, at 500 RPS and at the highest sustained rate of the last ``frontier``
run (or ``--rate``), plus the ``x-bf-overhead-us`` header the client saw."""

from __future__ import annotations

import json
import os
from typing import Any

from bench.mock_responses import MockSettings
from bench.requestlog import read_stages
from bench.scenarios.common import Context, last_stopped, load_spec, log, measure, mock, save, target
from bench.targets import BifrostTarget

NAME = "breakdown"


def _frontier_rate(ctx: Context) -> float | None:
    path = os.path.join(ctx.out_dir, "frontier.json")
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    if doc.get("smoke") != ctx.smoke:
        return None
    rate = doc.get("derived", {}).get("bifrost", {}).get("max_sustained_rps")
    return float(rate) if rate else None


def run(ctx: Context, rate: float | None = None) -> str:
    high = rate or _frontier_rate(ctx) or (2000.0 if not ctx.smoke else 40.0)
    rates = [500.0, high] if not ctx.smoke else [20.0, high]
    rates = sorted(set(rates))
    duration = ctx.dur(30.0, 2.0)
    cells: list[dict[str, Any]] = []
    if not ctx.want("bifrost"):
        return save(ctx, NAME, {"rates": rates}, cells, {"error": "bifrost not selected"})
    with mock(MockSettings(latency_ms=0.0)) as m:
        for r in rates:
            with target(ctx, "bifrost", m, profile="cost") as running:
                if running is None:
                    break
                out, _ = measure(
                    ctx, running, load_spec(ctx, running, rate=r, duration=duration, timeout=10.0), warm=True
                )
            gw = last_stopped("bifrost")
            # Warm-up requests are in the log too; they share the code path, so they stay in.
            out["stages"] = read_stages(gw.log_db) if isinstance(gw, BifrostTarget) else {"error": "no log"}
            out["rate"] = r
            if "error" in out["stages"]:
                log(f"breakdown: {out['stages']['error']}")
            cells.append(out)
    return save(
        ctx,
        NAME,
        {"rates": rates, "duration_s": duration, "mock_latency_ms": 0, "profile": "cost"},
        cells,
        {"rates": rates},
    )
