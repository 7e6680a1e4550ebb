"""``logging``: saturating throughput with Bifrost's request log on vs. off.

Closed loop at a concurrency that saturates one core; the two settings alternate (on, off, on,
off, ...) so drift in the shared machine hits both alike; the cost is 1 - mean(on) / mean(off).

The gateway's CPU per request is reported beside it (`cpu_cost_pct` = 1 - cpu(off) / cpu(on)): at
saturation throughput is the inverse of CPU per request, and CPU time is far less disturbed than
throughput when neighbours take the shared cores (`cpu_pressure_pct_max` says how much they did).
"""

from __future__ import annotations

from statistics import mean
from typing import Any

from bench.mock_responses import MockSettings
from bench.scenarios.common import Context, load_spec, measure, mock, save, target

NAME = "logging"


def run(ctx: Context) -> str:
    rounds = 2 if not ctx.smoke else 1
    conc = 64 if not ctx.smoke else 4
    duration = ctx.dur(20.0, 2.0)
    cells: list[dict[str, Any]] = []
    if not ctx.want("bifrost"):
        return save(ctx, NAME, {}, cells, {"error": "bifrost not selected"})
    with mock(MockSettings(latency_ms=0.0)) as m:
        for i in range(rounds):
            for on in (True, False):
                label = "bifrost"
                with target(ctx, label, m, profile="cost", logging=on) as running:
                    if running is None:
                        break
                    spec = load_spec(ctx, running, mode="closed", concurrency=conc, duration=duration, timeout=10.0)
                    out, _ = measure(ctx, running, spec)
                out.update(logging=on, round=i)
                cells.append(out)
    on_thr = [c["throughput_rps"] for c in cells if c["logging"]]
    off_thr = [c["throughput_rps"] for c in cells if not c["logging"]]
    derived: dict[str, Any] = {}
    if on_thr and off_thr:
        derived = {
            "throughput_on_rps": round(mean(on_thr), 1),
            "throughput_off_rps": round(mean(off_thr), 1),
            "cost_pct": round((1 - mean(on_thr) / mean(off_thr)) * 100.0, 2),
        }
        on_cpu, off_cpu = _cpu_per_request(cells, True), _cpu_per_request(cells, False)
        if on_cpu and off_cpu:
            derived.update(
                cpu_ms_per_request_on=round(on_cpu, 4),
                cpu_ms_per_request_off=round(off_cpu, 4),
                cpu_cost_pct=round((1 - off_cpu / on_cpu) * 100.0, 2),
            )
        pressure = [c["cpu_pressure_pct"] for c in cells if isinstance(c.get("cpu_pressure_pct"), (int, float))]
        if pressure:
            derived["cpu_pressure_pct_max"] = max(pressure)
    return save(
        ctx, NAME, {"concurrency": conc, "duration_s": duration, "rounds": rounds, "profile": "cost"}, cells, derived
    )


def _cpu_per_request(cells: list[dict[str, Any]], logging: bool) -> float | None:
    values = [
        c["resources"]["cpu_ms_per_request"]
        for c in cells
        if c["logging"] is logging and (c.get("resources") or {}).get("cpu_ms_per_request")
    ]
    return mean(values) if values else None
