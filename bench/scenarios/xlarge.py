"""``xlarge``: the published t3.xlarge test — 5,000 RPS for 60 s, ``speed`` profile, Bifrost's lanes sized
by the published rule (``bifrost tune --rps 5000 --latency 0.5 --write``: concurrency = rps x latency,
buffer = rps x latency x 3), as a user preparing for that load would.  The mock answers at once; 0.5 s is
the provider-like average the lanes are sized for, so the lanes are never what limits this run.

This machine has 2 cores and the gateway gets one of them, so the result is what it sustains here,
not a claim about 4-core hardware.  LiteLLM is left out unless asked for (``--targets``): its
ceiling here is two orders of magnitude lower and a 60 s overload run only measures timeouts.
"""

from __future__ import annotations

from typing import Any

from bench.mock_responses import MockSettings
from bench.scenarios.common import Context, by, diff, load_spec, measure, mock, save, target

NAME = "xlarge"
SIZING_LATENCY_S = 0.5  # the average upstream latency the lanes are sized for (see the docstring)


def run(ctx: Context, rate: float | None = None) -> str:
    rate = rate or (5000.0 if not ctx.smoke else 50.0)
    duration = ctx.dur(60.0, 2.0)
    timeout = 30.0 if not ctx.smoke else 5.0
    wanted = [n for n in ("direct", "bifrost", "litellm") if ctx.want(n) and (n != "litellm" or ctx.explicit_targets)]
    cells: list[dict[str, Any]] = []
    sizing = (int(rate), SIZING_LATENCY_S)
    with mock(MockSettings(latency_ms=0.0)) as m:
        for name in wanted:
            with target(ctx, name, m, profile="speed", sizing=sizing) as running:
                if running is None:
                    continue
                out, _ = measure(
                    ctx,
                    running,
                    load_spec(ctx, running, rate=rate, duration=duration, timeout=timeout),
                    timeline=True,
                    rss_series=True,
                )
                out.update(rate=rate, mock_latency_ms=0.0)
                cells.append(out)
    b, d = by(cells, target="bifrost"), by(cells, target="direct")
    derived = {}
    if b:
        derived = {
            "sustained": b["success_rate"] == 1.0 and (b["latency_ms"]["p99"] or 1e9) < 1000,
            "throughput_rps": b["throughput_rps"],
            "success_rate": b["success_rate"],
            "added_p99_ms": diff(b["latency_ms"]["p99"], d and d["latency_ms"]["p99"]),
            "peak_rss_mb": b["resources"]["peak_rss_mb"],
        }
    return save(
        ctx,
        NAME,
        {
            "rate": rate,
            "duration_s": duration,
            "profile": "speed",
            "mock_latency_ms": 0,
            "sizing": f"bifrost tune --rps {sizing[0]} --latency {sizing[1]:g} --write",
        },
        cells,
        derived,
    )
