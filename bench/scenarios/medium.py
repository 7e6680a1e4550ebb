"""``medium``: the published t3.medium test — 500 RPS for 60 s, ``cost`` profile, mock latency 0 ms
and 1,500 ms; and the same at 50 RPS, where no gateway saturates, to show pure overhead.

Targets run interleaved cell by cell (direct, Bifrost, LiteLLM for each latency x rate), each
gateway started fresh per cell so a melted-down run cannot spill into the next.
"""

from __future__ import annotations

from typing import Any

from bench.mock_responses import MockSettings
from bench.scenarios.common import Context, by, diff, load_spec, measure, mock, ratio, save, target

NAME = "medium"


def run(ctx: Context, rate: float | None = None) -> str:
    latencies = [0.0, 1500.0] if not ctx.smoke else [0.0, 200.0]
    rates = [rate or 500.0, 50.0] if not ctx.smoke else [rate or 20.0, 5.0]
    duration = ctx.dur(60.0, 2.0)
    timeout = 30.0 if not ctx.smoke else 5.0
    cells: list[dict[str, Any]] = []
    with mock(MockSettings()) as m:
        for lat in latencies:
            m.configure(latency_ms=lat)
            for r in rates:
                for name in ("direct", "bifrost", "litellm"):
                    if not ctx.want(name):
                        continue
                    with target(ctx, name, m, profile="cost") as running:
                        if running is None:
                            continue
                        spec_kw = dict(rate=r, duration=duration, timeout=timeout,
                                       latency_hint_s=lat / 1000 + 0.005)
                        out, _res = measure(ctx, running, load_spec(ctx, running, **spec_kw),
                                            timeline=True, rss_series=True)
                        out.update(mock_latency_ms=lat, rate=r)
                        cells.append(out)
    derived = _derive(cells, latencies, rates)
    return save(ctx, NAME, {"latencies_ms": latencies, "rates": rates, "duration_s": duration,
                            "profile": "cost", "timeout_s": timeout}, cells, derived)


def _derive(cells: list[dict[str, Any]], latencies: list[float], rates: list[float]) -> dict[str, Any]:
    rows = []
    for lat in latencies:
        for r in rates:
            base = by(cells, target="direct", mock_latency_ms=lat, rate=r)
            for name in ("bifrost", "litellm"):
                c = by(cells, target=name, mock_latency_ms=lat, rate=r)
                if c is None:
                    continue
                rows.append({
                    "target": name, "mock_latency_ms": lat, "rate": r,
                    "added_p50_ms": diff(c["latency_ms"]["p50"], base and base["latency_ms"]["p50"]),
                    "added_p99_ms": diff(c["latency_ms"]["p99"], base and base["latency_ms"]["p99"]),
                    "success_rate": c["success_rate"], "throughput_rps": c["throughput_rps"],
                    "peak_rss_mb": c["resources"]["peak_rss_mb"],
                })
    ratios = []
    for lat in latencies:
        for r in rates:
            b = by(cells, target="bifrost", mock_latency_ms=lat, rate=r)
            ll = by(cells, target="litellm", mock_latency_ms=lat, rate=r)
            if b and ll:
                ratios.append({
                    "mock_latency_ms": lat, "rate": r,
                    "throughput_x": ratio(b["throughput_rps"], ll["throughput_rps"]),
                    "litellm_p50_over_bifrost": ratio(ll["latency_ms"]["p50"], b["latency_ms"]["p50"]),
                    "litellm_p99_over_bifrost": ratio(ll["latency_ms"]["p99"], b["latency_ms"]["p99"]),
                    "litellm_rss_over_bifrost": ratio(ll["resources"]["peak_rss_mb"],
                                                      b["resources"]["peak_rss_mb"]),
                })
    return {"added_vs_direct": rows, "bifrost_vs_litellm": ratios}
