"""``full``: the full stack (issue 16 item 3) — every per-request feature on, and what each one costs.

The full stack is the `bifrost-full` target (bench/targets/bifrost.py): a virtual key with its budgets and
a rate limit (the `bifrost-gov` blocks), the exact cache (the `semantic_cache` plugin in direct mode with a
default cache key: every request is looked up by its exact hash), the PII guardrail on input (cards and
e-mails redacted, rule "true") and the request log.

(a) Per-feature cost, c=1 closed loop against a 0 ms mock: the bare gateway (every feature off, the request
    log too), then the bare gateway with ONE feature on, for each feature; the cache twice (misses: a new
    prompt per request; hits: one prompt, primed by the warm-up). Each cell's `x-bf-overhead-us` median,
    its end-to-end p50 and the gateway's CPU per request; "cost" = on - off.
(b) The full stack at c=1 (misses and hits separately): added p50/p99 vs direct-to-mock, as `overhead`.
(c) The full stack's frontier on one core, as `frontier` (20 ms mock, a step passes with p99 <= 1 s and
    errors <= 0.1 %), with a controlled cache hit ratio: HIT_RATIO of the requests repeat one (primed)
    prompt, the rest are new prompts; the mock's request count gives the measured ratio.

Targets from the issue: frontier >= 5,000 requests/s, c=1 added p50 <= 400 µs (judged on misses, the
dearer case).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from typing import Any

from bench import machine
from bench.loadgen.driver import LoadResult, LoadSpec, _merge, _Worker, _worker_specs
from bench.loadgen.worker import WorkerSpec
from bench.mock_responses import MockSettings
from bench.mockproc import MockProcess
from bench.procmon import TreeMonitor
from bench.scenarios import frontier
from bench.scenarios.common import Context, diff, load_spec, log, mock, save, target
from bench.stats import summarize
from bench.targets import Running

NAME = "full"
HIT_RATIO = 0.5  # share of the frontier's requests that repeat one prompt (cache hits)
FRONTIER_GOAL_RPS = 5000
ADDED_P50_GOAL_US = 400.0
# From 1,000: on a busy machine the full stack has failed 2,000, and a ladder that fails its first step
# measures nothing (the bisection needs a passed step below the failed one).
LADDER = [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000]
ALL_OFF = {"governance": False, "cache": False, "guardrails": False, "logging": False}
# (row label, the one feature turned on, c=1 cells measured on that gateway: (cell label, unique prompts))
FEATURES: list[tuple[str, dict[str, bool], list[tuple[str, bool]]]] = [
    ("virtual key + budgets + rate limit", {"governance": True}, [("governance", False)]),
    ("exact cache", {"cache": True}, [("cache miss", True), ("cache hit", False)]),
    ("PII guardrail (input)", {"guardrails": True}, [("pii guardrail", False)]),
    ("request log", {"logging": True}, [("request log", False)]),
]


def _c1(ctx: Context, m: MockProcess, running: Running, label: str, *, unique: bool, duration: float) -> dict[str, Any]:
    """One c=1 closed-loop cell: an unrecorded warm-up (which also primes a repeated prompt), then the run."""
    spec = load_spec(ctx, running, mode="closed", concurrency=1, duration=duration, timeout=10.0, unique=unique)
    spec.processes = 1
    warm = dataclasses.replace(spec, duration=0.5 if ctx.smoke else 1.0)
    run_workers(warm, [_no_card(_worker_specs(warm))])
    out = _measured(ctx, m, running, spec, [_no_card(_worker_specs(spec))])
    out.update(cell=label, unique_prompts=unique)
    return out


def _no_card(wspecs: list[WorkerSpec]) -> list[WorkerSpec]:
    """New prompts count from a base starting with 9: the driver's random 16-digit counter sometimes starts
    with a card network's prefix, and then ~10 % of the prompts hold a Luhn-valid "card" that the PII
    guardrail redacts to one placeholder, which turns those misses into cache hits. No network starts with 9."""
    run = 9 * 10**15 + secrets.randbelow(10**3) * 10**12
    return [
        dataclasses.replace(w, unique_base=run + k * 10**11) if w.unique_base is not None else w
        for k, w in enumerate(wspecs)
    ]


def run_workers(spec: LoadSpec, groups: list[list[WorkerSpec]], monitor: TreeMonitor | None = None) -> LoadResult:
    """As driver.run_load, for worker specs built here: every worker starts on one instant; merged as ``spec``."""
    workers = [_Worker(ws) for group in groups for ws in group]
    try:
        for w in workers:
            w.recv(120)
        start = time.monotonic() + 0.05
        if monitor is not None:
            monitor.begin()
        for w in workers:
            w.chan.send(("start", start))
        parts = [w.recv(spec.duration + spec.timeout + 120)[1] for w in workers]  # type: ignore[index]
        wall = time.monotonic() - start
        if monitor is not None:
            monitor.end()
    finally:
        for w in workers:
            w.close()
    return _merge(spec, parts, wall)


def _measured(
    ctx: Context, m: MockProcess, running: Running, spec: LoadSpec, groups: list[list[WorkerSpec]]
) -> dict[str, Any]:
    """One recorded run (as common.measure): latency, the gateway tree's CPU and RSS, the mock's calls."""
    mon = TreeMonitor(running.pid, interval=0.25).start()
    before, psi0, load0 = int(m.stats()["total"]), machine.cpu_pressure_s(), machine.loadavg()
    try:
        res = run_workers(spec, groups, mon)
    finally:
        mon.stop()
    psi1 = machine.cpu_pressure_s()
    out = summarize(res)
    upstream = int(m.stats()["total"]) - before
    out.update(
        target=running.name,
        notes=list(running.notes),
        resources=mon.summary(out["ok"]),
        upstream_calls=upstream,
        cache_hit_ratio=round(1.0 - upstream / out["ok"], 3) if out["ok"] else None,
        loadavg_before=load0,
        cpu_pressure_pct=(
            round((psi1 - psi0) / res.wall_s * 100.0, 1)
            if psi0 is not None and psi1 is not None and res.wall_s
            else None
        ),
    )
    lat = out["latency_ms"]
    log(
        f"{running.name} {spec.mode} rate={spec.rate if spec.mode == 'open' else '-'} "
        f"ok={out['ok']}/{out['scheduled']} "
        f"thr={out['throughput_rps']}/s p50={lat['p50']} p99={lat['p99']} ms x-bf-overhead p50="
        f"{out['x_bf_overhead_us']['p50']} us cpu={out['resources']['cpu_ms_per_request']} ms/req "
        f"hit_ratio={out['cache_hit_ratio']} cpu_pressure={out['cpu_pressure_pct']}%"
    )
    return out


def _mixed_step(
    ctx: Context, m: MockProcess, running: Running, rate: float, duration: float, *, record: bool = True
) -> dict[str, Any]:
    """One frontier step at ``rate``: HIT_RATIO of the requests repeat one prompt (cache hits), the rest are
    new prompts, the repeated ones falling between the others; the frontier rule decides it."""
    hit_rate = rate * HIT_RATIO
    common = {"rate": 0.0, "duration": duration, "timeout": 10.0, "latency_hint_s": 0.025}
    miss = load_spec(ctx, running, unique=True, **common)  # type: ignore[arg-type]
    hit = load_spec(ctx, running, **common)  # type: ignore[arg-type]
    miss.rate, hit.rate = rate - hit_rate, hit_rate
    miss.processes = hit.processes = 1
    groups = [
        _no_card(_worker_specs(miss)),
        [dataclasses.replace(w, phase=w.phase + 1.0 / rate) for w in _worker_specs(hit)],
    ]
    whole = dataclasses.replace(miss, rate=rate, unique=False)
    if not record:
        run_workers(whole, groups)
        return {}
    # As frontier's steps: a failed step whose load generator fell behind its schedule (its CPU taken by
    # a neighbour) is measured again, up to frontier.RETRIES times, before it counts against the gateway.
    for attempt in range(frontier.RETRIES + 1):
        if attempt:
            groups = [
                _no_card(_worker_specs(miss)),
                [dataclasses.replace(w, phase=w.phase + 1.0 / rate) for w in _worker_specs(hit)],
            ]
        out = _measured(ctx, m, running, whole, groups)
        out.update(
            rate=rate, passed=frontier.passed(out), attempt=attempt, harness_starved=frontier.harness_starved(out)
        )
        if out["passed"] or not out["harness_starved"]:
            break
        log(f"full: load generator fell {out['send_lag_ms']['p99']} ms behind at {rate} RPS; measuring the step again")
    return out


def climb(ctx: Context, m: MockProcess, running: Running, ladder: list[float], duration: float) -> list[dict[str, Any]]:
    """As frontier.climb: up the ladder until a step fails, then one bisection step."""
    steps: list[dict[str, Any]] = []
    last_ok: float | None = None
    for rate in ladder:
        cell = _mixed_step(ctx, m, running, rate, duration)
        steps.append(cell)
        if not cell["passed"]:
            if last_ok is not None and not ctx.smoke:
                mid = round((last_ok + rate) / 2.0)
                if mid not in (last_ok, rate):
                    steps.append(_mixed_step(ctx, m, running, mid, duration))
            break
        last_ok = rate
    return steps


def _row(cell: dict[str, Any]) -> dict[str, Any]:
    return {
        "x_bf_overhead_p50_us": cell["x_bf_overhead_us"]["p50"],
        "p50_ms": cell["latency_ms"]["p50"],
        "cpu_ms_per_request": cell["resources"]["cpu_ms_per_request"],
        "upstream_calls": cell["upstream_calls"],
        "ok": cell["ok"],
    }


def feature_table(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each feature's cell against the bare gateway's: on, off and on - off."""
    off = next((c for c in cells if c.get("cell") == "off"), None)
    rows: list[dict[str, Any]] = []
    if off is None:
        return rows
    base = _row(off)
    for c in cells:
        if c.get("cell") in (None, "off", "direct", "frontier") or str(c["cell"]).startswith("full"):
            continue
        on = _row(c)
        rows.append(
            {
                "feature": c["cell"],
                "on": on,
                "off": base,
                "x_bf_overhead_added_us": diff(on["x_bf_overhead_p50_us"], base["x_bf_overhead_p50_us"], 1),
                "p50_added_us": _us(diff(on["p50_ms"], base["p50_ms"], 4)),
                "cpu_added_us_per_request": _us(diff(on["cpu_ms_per_request"], base["cpu_ms_per_request"], 4)),
            }
        )
    return rows


def run(ctx: Context) -> str:
    c1 = ctx.dur(2.5, 1.0)
    step = ctx.dur(3.0, 1.0)
    cells: list[dict[str, Any]] = []
    derived: dict[str, Any] = {}
    if not (ctx.want("bifrost") or ctx.want("bifrost-full")):
        return save(ctx, NAME, {}, cells, {"error": "bifrost not selected"})
    with mock(MockSettings(latency_ms=0.0)) as m:
        if ctx.want("direct"):
            with target(ctx, "direct", m) as running:
                if running is not None:
                    cells.append(_c1(ctx, m, running, "direct", unique=False, duration=c1))
        with target(ctx, "bifrost-full", m, profile="cost", label="bifrost-bare", **ALL_OFF) as running:
            if running is not None:
                cells.append(_c1(ctx, m, running, "off", unique=False, duration=c1))
        for _row_label, on, plan in FEATURES:
            opts = {**ALL_OFF, **on}
            with target(ctx, "bifrost-full", m, profile="cost", label="bifrost-" + next(iter(on)), **opts) as running:
                if running is None:
                    continue
                for label, unique in plan:
                    cells.append(_c1(ctx, m, running, label, unique=unique, duration=c1))
        with target(ctx, "bifrost-full", m, profile="cost") as running:
            if running is not None:
                cells.append(_c1(ctx, m, running, "full miss", unique=True, duration=c1))
                cells.append(_c1(ctx, m, running, "full hit", unique=False, duration=c1))
                # (c) the frontier, same gateway, 20 ms mock
                m.configure(latency_ms=20.0)
                ladder = list(frontier.SMOKE_LADDER) if ctx.smoke else LADDER
                _mixed_step(ctx, m, running, ladder[0], 1.0 if ctx.smoke else 2.0, record=False)  # warm, prime
                steps = climb(ctx, m, running, ladder, step)
                for s in steps:
                    s["cell"] = "frontier"
                cells += steps
                best = frontier._best(steps)
                ok = [s for s in steps if s["passed"]]
                best["cache_hit_ratio_at_max"] = max(ok, key=lambda s: s["rate"])["cache_hit_ratio"] if ok else None
                derived["frontier"] = best
    derived["features"] = feature_table(cells)
    direct = next((c for c in cells if c.get("cell") == "direct"), None)
    for label in ("full miss", "full hit"):
        c = next((x for x in cells if x.get("cell") == label), None)
        if c is None or direct is None:
            continue
        derived[label.replace(" ", "_")] = {
            "added_p50_us": _us(diff(c["latency_ms"]["p50"], direct["latency_ms"]["p50"], 4)),
            "added_p99_us": _us(diff(c["latency_ms"]["p99"], direct["latency_ms"]["p99"], 4)),
            "x_bf_overhead_us": c["x_bf_overhead_us"],
            "cpu_ms_per_request": c["resources"]["cpu_ms_per_request"],
            "upstream_calls": c["upstream_calls"],
        }
    goals: dict[str, Any] = {}
    if "frontier" in derived:
        rps = derived["frontier"]["max_sustained_rps"]
        goals["frontier_rps"] = {"goal": FRONTIER_GOAL_RPS, "measured": rps, "met": rps >= FRONTIER_GOAL_RPS}
    if "full_miss" in derived and derived["full_miss"]["added_p50_us"] is not None:
        p50 = derived["full_miss"]["added_p50_us"]
        goals["c1_added_p50_us"] = {"goal": ADDED_P50_GOAL_US, "measured": p50, "met": p50 <= ADDED_P50_GOAL_US}
    derived["goals"] = goals
    log(f"full: {goals}; features: {[(r['feature'], r['x_bf_overhead_added_us']) for r in derived['features']]}")
    return save(
        ctx,
        NAME,
        {
            "c1_duration_s": c1,
            "c1_mock_latency_ms": 0,
            "frontier_mock_latency_ms": 20,
            "frontier_step_duration_s": step,
            "frontier_hit_ratio": HIT_RATIO,
            "p99_limit_ms": frontier.P99_LIMIT_MS,
            "error_limit": frontier.ERROR_LIMIT,
            "profile": "cost",
        },
        cells,
        derived,
    )


def _us(ms: float | None) -> float | None:
    return None if ms is None else round(ms * 1000.0, 1)
