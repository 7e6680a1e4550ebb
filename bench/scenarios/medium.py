"""``medium``: the published t3.medium test — 500 RPS for 60 s, ``cost`` profile, mock latency 0 ms
and 1,500 ms; and the same at 50 RPS, where no gateway saturates, to show pure overhead.

Targets run interleaved cell by cell (direct, Bifrost, LiteLLM, Portkey for each latency x rate), each
gateway started fresh per cell so a melted-down run cannot spill into the next (smoke mode starts
each once).
"""

from __future__ import annotations

from typing import Any

from bench.mock_responses import MockSettings
from bench.mockproc import MockProcess
from bench.scenarios.common import Context, by, diff, load_spec, measure, mock, ratio, save, target
from bench.targets import Running

NAME = "medium"


def run(ctx: Context, rate: float | None = None) -> str:
    latencies = [0.0, 1500.0] if not ctx.smoke else [0.0, 200.0]
    rates = [rate or 500.0, 50.0] if not ctx.smoke else [rate or 20.0, 5.0]
    duration = ctx.dur(60.0, 2.0)
    timeout = 30.0 if not ctx.smoke else 5.0
    cells: list[dict[str, Any]] = []
    grid = [(lat, r) for lat in latencies for r in rates]
    with mock(MockSettings()) as m:
        if ctx.smoke:
            # Smoke: one start per target (LiteLLM takes seconds to boot); cells share it.
            for name in ("direct", "bifrost", "litellm", "portkey"):
                if ctx.want(name):
                    with target(ctx, name, m, profile="cost") as running:
                        for lat, r in grid:
                            if running is not None:
                                cells.append(_cell(ctx, m, running, lat, r, duration, timeout))
        else:
            # Full: interleaved cell by cell, each gateway fresh per cell.
            for lat, r in grid:
                for name in ("direct", "bifrost", "litellm", "portkey"):
                    if ctx.want(name):
                        with target(ctx, name, m, profile="cost") as running:
                            if running is not None:
                                cells.append(_cell(ctx, m, running, lat, r, duration, timeout))
    derived = _derive(cells, latencies, rates)
    return save(
        ctx,
        NAME,
        {"latencies_ms": latencies, "rates": rates, "duration_s": duration, "profile": "cost", "timeout_s": timeout},
        cells,
        derived,
    )


def _cell(
    ctx: Context, m: MockProcess, running: Running, lat: float, r: float, duration: float, timeout: float
) -> dict[str, Any]:
    m.configure(latency_ms=lat)
    spec = load_spec(ctx, running, rate=r, duration=duration, timeout=timeout, latency_hint_s=lat / 1000 + 0.005)
    out, _res = measure(ctx, running, spec, timeline=True, rss_series=True)
    out.update(mock_latency_ms=lat, rate=r)
    return out


def _derive(cells: list[dict[str, Any]], latencies: list[float], rates: list[float]) -> dict[str, Any]:
    rows = []
    for lat in latencies:
        for r in rates:
            base = by(cells, target="direct", mock_latency_ms=lat, rate=r)
            for name in ("bifrost", "litellm", "portkey"):
                c = by(cells, target=name, mock_latency_ms=lat, rate=r)
                if c is None:
                    continue
                rows.append(
                    {
                        "target": name,
                        "mock_latency_ms": lat,
                        "rate": r,
                        "added_p50_ms": diff(c["latency_ms"]["p50"], base and base["latency_ms"]["p50"]),
                        "added_p99_ms": diff(c["latency_ms"]["p99"], base and base["latency_ms"]["p99"]),
                        "success_rate": c["success_rate"],
                        "throughput_rps": c["throughput_rps"],
                        "peak_rss_mb": c["resources"]["peak_rss_mb"],
                    }
                )
    out: dict[str, Any] = {"added_vs_direct": rows}
    for peer in ("litellm", "portkey"):
        ratios = []
        for lat in latencies:
            for r in rates:
                b = by(cells, target="bifrost", mock_latency_ms=lat, rate=r)
                p = by(cells, target=peer, mock_latency_ms=lat, rate=r)
                if b and p:
                    ratios.append(
                        {
                            "mock_latency_ms": lat,
                            "rate": r,
                            "throughput_x": ratio(b["throughput_rps"], p["throughput_rps"]),
                            f"{peer}_p50_over_bifrost": ratio(p["latency_ms"]["p50"], b["latency_ms"]["p50"]),
                            f"{peer}_p99_over_bifrost": ratio(p["latency_ms"]["p99"], b["latency_ms"]["p99"]),
                            f"{peer}_rss_over_bifrost": ratio(
                                p["resources"]["peak_rss_mb"], b["resources"]["peak_rss_mb"]
                            ),
                        }
                    )
        if peer == "litellm" or ratios:
            out[f"bifrost_vs_{peer}"] = ratios
    return out
