"""``calibrate``: what the harness can do with no gateway at all.

1. The mock alone: pinned to the gateway's core, driven closed-loop by the load generator from the
   other core — its maximum rate and CPU per request (it must be far cheaper than any gateway).
2. The load generator: in the real layout (mock + load generator sharing the bench core), open-loop
   direct-to-mock at rising rates — the highest rate it drives with p99 under 10 ms is the ceiling
   above which a frontier result would measure the harness, not the gateway.
"""

from __future__ import annotations

from typing import Any

from bench.loadgen.driver import LoadSpec
from bench.loadgen.payloads import ENDPOINTS, request_body
from bench.mock_responses import MockSettings
from bench.mockproc import MockProcess
from bench.scenarios.common import Context, measure, save
from bench.targets import Running

NAME = "calibrate"


def run(ctx: Context) -> str:
    duration = ctx.dur(10.0, 1.0)
    body = request_body(ENDPOINTS["chat"], "gpt-4o-mini")
    cells: list[dict[str, Any]] = []
    with MockProcess(MockSettings(), cpus=ctx.layout.gateway) as m:
        running = Running("mock-alone", m.port, "gpt-4o-mini", m.pid)
        for conc in [64] if ctx.smoke else [16, 64, 256]:
            spec = LoadSpec(
                port=m.port,
                body=body,
                mode="closed",
                concurrency=conc,
                duration=duration,
                processes=ctx.processes,
                cpus=ctx.layout.bench,
            )
            out, _ = measure(ctx, running, spec)
            out.update(kind="mock_alone", concurrency=conc)
            cells.append(out)
    with MockProcess(MockSettings()) as m:  # inherits this process's pinning: the bench core
        running = Running("direct", m.port, "gpt-4o-mini", m.pid)
        for rate in [50] if ctx.smoke else [1000, 2500, 5000, 7500, 10000, 15000]:
            spec = LoadSpec(
                port=m.port,
                body=body,
                mode="open",
                rate=rate,
                duration=duration,
                processes=ctx.processes,
                cpus=ctx.layout.bench,
            )
            out, _ = measure(ctx, running, spec)
            out.update(kind="loadgen_shared_core", rate=rate)
            cells.append(out)
    alone = [c for c in cells if c["kind"] == "mock_alone"]
    shared = [c for c in cells if c["kind"] == "loadgen_shared_core"]
    good = [c for c in shared if c["success_rate"] == 1.0 and (c["latency_ms"]["p99"] or 1e9) <= 10.0]
    derived = {
        "mock_max_rps": max(c["throughput_rps"] for c in alone),
        "mock_cpu_us_per_request": min((c["resources"]["cpu_ms_per_request"] or 0) * 1000 for c in alone),
        "loadgen_ceiling_rps": max((c["rate"] for c in good), default=0),
    }
    return save(ctx, NAME, {"duration_s": duration}, cells, derived)
