"""``overhead``: one request at a time (closed loop, concurrency 1) against a 0 ms mock.

Added latency = target percentile - direct-to-mock percentile, plus Bifrost's own account of its
time from the ``x-bf-overhead-us`` response header.
"""

from __future__ import annotations

from typing import Any

from bench.mock_responses import MockSettings
from bench.scenarios.common import Context, by, diff, load_spec, measure, mock, save, target

NAME = "overhead"


def run(ctx: Context) -> str:
    duration = ctx.dur(30.0, 2.0)
    cells: list[dict[str, Any]] = []
    with mock(MockSettings(latency_ms=0.0)) as m:
        # bifrost-gov (governance on: budgets + rate limit on every request) only with --targets naming it
        for name in ("direct", "bifrost", "bifrost-gov", "litellm", "portkey"):
            if not ctx.want(name):
                continue
            with target(ctx, name, m, profile="cost") as running:
                if running is None:
                    continue
                spec = load_spec(ctx, running, mode="closed", concurrency=1, duration=duration, timeout=10.0)
                spec.processes = 1
                out, _ = measure(ctx, running, spec)
                cells.append(out)
    base = by(cells, target="direct")
    derived: dict[str, Any] = {}
    for name in ("bifrost", "bifrost-gov", "litellm", "portkey"):
        c = by(cells, target=name)
        if c is None or base is None:
            continue
        derived[name] = {
            "added_p50_us": _us(diff(c["latency_ms"]["p50"], base["latency_ms"]["p50"], 4)),
            "added_p90_us": _us(diff(c["latency_ms"]["p90"], base["latency_ms"]["p90"], 4)),
            "added_p99_us": _us(diff(c["latency_ms"]["p99"], base["latency_ms"]["p99"], 4)),
            "x_bf_overhead_us": c["x_bf_overhead_us"],
            "requests": c["ok"],
        }
    return save(ctx, NAME, {"duration_s": duration, "concurrency": 1, "mock_latency_ms": 0}, cells, derived)


def _us(ms: float | None) -> float | None:
    return None if ms is None else round(ms * 1000.0, 1)
