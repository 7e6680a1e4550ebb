"""``frontier``: step the offered rate up against a 20 ms mock until p99 > 1 s or errors > 0.1 %;
the highest step that passed is the highest sustained rate.

Each target climbs its own ladder (LiteLLM's starts two orders of magnitude lower, Portkey's one), then one
bisection step between the last pass and the first failure sharpens the answer.  Direct-to-mock is
run at Bifrost's first failing rate to show the limit was the gateway and not the load generator.
"""

from __future__ import annotations

from typing import Any

from bench.mock_responses import MockSettings
from bench.scenarios.common import Context, load_spec, log, measure, mock, ratio, save, target
from bench.targets import Running

NAME = "frontier"
P99_LIMIT_MS = 1000.0
ERROR_LIMIT = 0.001
LADDERS = {
    "bifrost": [250, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 5000, 6000, 8000, 10000],
    "litellm": [10, 25, 50, 75, 100, 150, 200, 300, 500, 1000],
    "portkey": [100, 250, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000, 4000, 5000],
    "direct": [1000, 2500, 5000, 10000],
    # The framework floors (bench/floor_relay.py; only when --targets names them): the ceiling any gateway
    # built on aiohttp (or on a bare protocol) reaches on this core, to read Bifrost's frontier against.
    "floor-aiohttp": [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 10000, 12000],
    "floor-raw": [1000, 2000, 4000, 6000, 8000, 10000, 12000, 14000, 16000],
}
SMOKE_LADDER = [10, 20]
# A step only counts against the gateway if the load generator kept its schedule: on a shared
# machine a neighbour can starve the generator itself (its send lag then shows it).  Such a step is
# measured again, up to RETRIES times; if it still fails it counts as failed (a gateway that stalls
# long enough makes the generator open thousands of connections, which also makes it lag).
STARVED_LAG_MS = 50.0
RETRIES = 2


def passed(cell: dict[str, Any]) -> bool:
    """The frontier rule for one step."""
    p99 = cell["latency_ms"]["p99"]
    total = cell["scheduled"] or 1
    return p99 is not None and p99 <= P99_LIMIT_MS and cell["error_total"] / total <= ERROR_LIMIT


def harness_starved(cell: dict[str, Any]) -> bool:
    lag = cell.get("send_lag_ms", {}).get("p99")
    return lag is not None and lag > STARVED_LAG_MS


def _step(ctx: Context, running: Running, rate: float, duration: float) -> dict[str, Any]:
    for attempt in range(RETRIES + 1):
        spec = load_spec(ctx, running, rate=rate, duration=duration, timeout=10.0, latency_hint_s=0.025)
        out, _ = measure(ctx, running, spec, warm=False)
        out.update(rate=rate, passed=passed(out), attempt=attempt, harness_starved=harness_starved(out))
        if out["passed"] or not out["harness_starved"]:
            break
        log(
            f"frontier: load generator fell {out['send_lag_ms']['p99']} ms behind its schedule at {rate} RPS "
            "(its CPU was taken, by a neighbour or by its own connection storm); measuring the step again"
        )
    return out


def climb(ctx: Context, running: Running, ladder: list[float], duration: float) -> list[dict[str, Any]]:
    """Climb ``ladder`` until a step fails, then bisect once; returns every step measured."""
    steps: list[dict[str, Any]] = []
    last_ok: float | None = None
    for rate in ladder:
        cell = _step(ctx, running, rate, duration)
        steps.append(cell)
        if not cell["passed"]:
            if last_ok is not None and not ctx.smoke:
                mid = round((last_ok + rate) / 2.0)
                if mid not in (last_ok, rate):
                    steps.append(_step(ctx, running, mid, duration))
            break
        last_ok = rate
    return steps


def run(ctx: Context) -> str:
    duration = ctx.dur(20.0, 2.0)
    cells: list[dict[str, Any]] = []
    derived: dict[str, Any] = {}
    with mock(MockSettings(latency_ms=20.0)) as m:
        for name in ("bifrost", "litellm", "portkey", "floor-aiohttp", "floor-raw"):
            if not ctx.want(name):
                continue
            with target(ctx, name, m, profile="cost") as running:
                if running is None:
                    continue
                ladder = SMOKE_LADDER if ctx.smoke else LADDERS[name]
                # One warm-up at the bottom of the ladder, then no per-step warm-ups (the target stays up).
                measure(
                    ctx,
                    running,
                    load_spec(ctx, running, rate=ladder[0], duration=1.0 if ctx.smoke else 5.0, latency_hint_s=0.025),
                    warm=False,
                )
                steps = climb(ctx, running, ladder, duration)
            for s in steps:
                s["target"] = name
            cells += steps
            derived[name] = _best(steps)
            log(f"frontier {name}: {derived[name]}")
        first_fail = derived.get("bifrost", {}).get("first_failed_rate")
        if ctx.want("direct") and first_fail:
            with target(ctx, "direct", m) as running:
                if running is not None:
                    c = _step(ctx, running, first_fail, duration)
                    c["target"] = "direct"
                    cells.append(c)
                    derived["direct_at_bifrost_limit"] = {
                        "rate": first_fail,
                        "passed": c["passed"],
                        "p99_ms": c["latency_ms"]["p99"],
                    }
    for peer in ("litellm", "portkey"):
        if "bifrost" in derived and peer in derived:
            derived[f"bifrost_over_{peer}"] = ratio(
                derived["bifrost"]["max_sustained_rps"], derived[peer]["max_sustained_rps"], 1
            )
    return save(
        ctx,
        NAME,
        {
            "mock_latency_ms": 20,
            "step_duration_s": duration,
            "p99_limit_ms": P99_LIMIT_MS,
            "error_limit": ERROR_LIMIT,
            "profile": "cost",
        },
        cells,
        derived,
    )


def _best(steps: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [s for s in steps if s["passed"]]
    bad = [s for s in steps if not s["passed"]]
    best = max(ok, key=lambda s: s["rate"]) if ok else None
    return {
        "max_sustained_rps": best["rate"] if best else 0,
        "throughput_at_max": best["throughput_rps"] if best else 0,
        "p99_at_max_ms": best["latency_ms"]["p99"] if best else None,
        "peak_rss_mb": max((s["resources"]["peak_rss_mb"] or 0) for s in steps) if steps else None,
        "first_failed_rate": min(s["rate"] for s in bad) if bad else None,
    }
