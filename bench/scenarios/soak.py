"""``soak``: a fixed rate for a long time (10 minutes by default); RSS, open descriptors, live asyncio
tasks and latency over time, and a leak check after the load.

``--faults F`` (issue 16 item 5) mixes streamed and plain chat requests (about half each) and gives a
share F of them an injected fault, the kind drawn evenly from four (bench/loadgen/payloads.FaultMix):
upstream timeout (the mock holds the answer past the gateway's request timeout, set to 2 s here),
connection reset (the mock sends an RST before answering), cut stream (a few chunks, then EOF without
[DONE]) and client disconnect (the generator leaves after sending, or after the first events of a
stream). Faulted requests are counted by kind and expected; errors on the others are "unexpected".

Every ~10 s (1 s in smoke) the gateway's process tree is sampled: RSS, open descriptors (psutil
num_fds) and live asyncio tasks (its ``bifrost_event_loop_tasks`` gauge). An idle baseline is taken
after the warm-up, before the load, and again a few seconds after the load ends: descriptors and
tasks must come back to it. RSS growth is measured from the end of the warm-up (the first 10 % of the
run, at least 10 s) to the last 10 % of the run.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

from bench import control
from bench.loadgen.driver import LoadResult
from bench.loadgen.payloads import FAULT_KINDS
from bench.mock_responses import MockSettings
from bench.procmon import LeakSampler
from bench.scenarios.common import Context, load_spec, log, measure, mock, save, target, warm_up

NAME = "soak"
GATEWAY_TIMEOUT_S = 2  # the provider's request timeout while faults are on: a timeout costs 2 s, not 30
# The verdict's thresholds.
RSS_GROWTH_MAX_PCT = 5.0
FDS_SLACK = 10  # after the load, idle: open descriptors <= the idle baseline before it + this
TASKS_SLACK = 5  # ... and live asyncio tasks <= baseline + this
UNEXPECTED_MAX_SHARE = 0.001  # errors on requests without a fault: at most 0.1 % of them


def run(ctx: Context, rate: float | None = None, faults: float | None = None) -> str:
    rate = rate or (500.0 if not ctx.smoke else 20.0)
    duration = ctx.dur(600.0, 6.0)
    if faults is None and ctx.smoke:
        faults = 0.10  # smoke covers the fault paths (a few of each kind) at its tiny rate
    mixed = faults is not None
    faults = faults or 0.0
    interval = 10.0 if duration >= 120 else max(duration / 10.0, 0.5)
    idle_s = 2.0 if ctx.smoke else 5.0
    cells: list[dict[str, Any]] = []
    # Held past the gateway's timeout (x2), so the gateway, not the mock, ends a "timeout" request.
    settings = MockSettings(latency_ms=20.0, fault_hold_ms=GATEWAY_TIMEOUT_S * 2000.0)
    with mock(settings) as m:
        m.configure(fault_hold_ms=settings.fault_hold_ms)  # the mock's command line does not carry it
        for name in ("bifrost", "litellm"):
            if not ctx.want(name) or (name == "litellm" and not ctx.explicit_targets):
                continue
            with target(ctx, name, m, profile="cost") as running:
                if running is None:
                    continue
                notes = []
                if mixed and name == "bifrost":
                    notes.append(_short_timeout(running.port, m.origin))
                spec = load_spec(ctx, running, rate=rate, duration=duration, timeout=10.0, latency_hint_s=0.025)
                if mixed:
                    spec.stream_share, spec.faults = 0.5, faults
                warm_up(ctx, running, spec)
                metrics_port = running.port if name == "bifrost" else None
                sampler = LeakSampler(running.pid, metrics_port, interval=interval)
                time.sleep(idle_s)
                before = sampler.sample()
                sampler.start()
                try:
                    out, res = measure(
                        ctx,
                        running,
                        spec,
                        warm=False,
                        timeline=True,
                        bucket_s=max(duration / 60.0, 1.0),
                        rss_series=True,
                    )
                finally:
                    sampler.stop()
                time.sleep(idle_s)
                after = sampler.sample()
                out["notes"] += notes
                out.update(
                    rate=rate,
                    faults=faults,
                    mixed=mixed,
                    rss_growth=rss_growth(out["rss_series"], duration),
                    samples=sampler.points,
                    idle_before=before,
                    idle_after=after,
                    **fault_counts(out["errors"], out["scheduled"]),
                )
                out["minutes"] = per_minute(res, sampler.points, 60.0 if duration >= 300 else max(duration / 6, 1.0))
                out["growth"] = series_growth(sampler.points, duration)
                out["rss_steps"] = rss_steps(sampler.points, warm_up_s(duration))
                out["verdict"] = verdict(out)
                log(f"soak {name}: {out['verdict']['summary']}")
                cells.append(out)
    derived = {
        c["target"]: {
            **c["rss_growth"],
            "success_rate": c["success_rate"],
            "p99_ms": c["latency_ms"]["p99"],
            "faulted": c["faulted"],
            "unexpected_errors": c["unexpected_errors"],
            "flat": c["verdict"]["flat"],
        }
        for c in cells
    }
    params = {
        "rate": rate,
        "duration_s": duration,
        "mock_latency_ms": 20,
        "profile": "cost",
        "faults": faults,
        "stream_share": 0.5 if mixed else 0.0,
        "gateway_timeout_s": GATEWAY_TIMEOUT_S if mixed else 30,
        "sample_interval_s": interval,
        "idle_s": idle_s,
        "thresholds": {
            "rss_growth_max_pct": RSS_GROWTH_MAX_PCT,
            "fds_slack": FDS_SLACK,
            "tasks_slack": TASKS_SLACK,
            "unexpected_max_share": UNEXPECTED_MAX_SHARE,
        },
    }
    return save(ctx, NAME, params, cells, derived)


def _short_timeout(port: int, mock_origin: str) -> str:
    """Set the gateway's provider request timeout to GATEWAY_TIMEOUT_S through its admin API (the same
    provider entry the bench target writes, with a short timeout)."""
    entry = {
        "keys": [{"name": "bench", "value": "sk-bench-fake", "models": [], "weight": 1.0}],
        "network_config": {
            "base_url": mock_origin,
            "default_request_timeout_in_seconds": GATEWAY_TIMEOUT_S,
            "max_retries": 0,
        },
    }
    status, body = control.request("PUT", port, "/api/providers/openai", entry)
    if status != 200:
        raise RuntimeError(f"soak: cannot set the provider timeout ({status}): {str(body)[:300]}")
    got = body.get("network_config", {}).get("default_request_timeout_in_seconds") if isinstance(body, dict) else None
    if got != GATEWAY_TIMEOUT_S:
        raise RuntimeError(f"soak: provider timeout is {got!r} after the update, not {GATEWAY_TIMEOUT_S}")
    return f"provider request timeout {GATEWAY_TIMEOUT_S} s (PUT /api/providers/openai)"


def fault_counts(errors: dict[str, int], scheduled: int) -> dict[str, Any]:
    """Split error kinds into injected faults (``fault_<kind>:<outcome>``) and unexpected errors."""
    by_kind = {k: 0 for k in FAULT_KINDS}
    outcomes: dict[str, int] = {}
    unexpected: dict[str, int] = {}
    for k, n in errors.items():
        if k.startswith("fault_"):
            kind = k.split(":", 1)[0][len("fault_") :]
            by_kind[kind] = by_kind.get(kind, 0) + n
            outcomes[k] = n
        else:
            unexpected[k] = n
    faulted = sum(by_kind.values())
    clean = scheduled - faulted
    return {
        "faulted": faulted,
        "faults_by_kind": by_kind,
        "fault_outcomes": outcomes,
        "unexpected_errors": sum(unexpected.values()),
        "unexpected_by_kind": unexpected,
        "unexpected_share": round(sum(unexpected.values()) / clean, 6) if clean else None,
    }


def per_minute(res: LoadResult, points: list[dict[str, Any]], bucket_s: float) -> list[dict[str, Any]]:
    """One row per bucket (a minute in long runs): the last sample in it (RSS, fds, tasks), requests
    scheduled in it that succeeded, faults by kind and unexpected errors."""
    rows: list[dict[str, Any]] = []
    duration = res.spec.duration
    names = res.kinds
    fault_codes = {kind: [i for i, n in enumerate(names) if n.startswith(f"fault_{kind}:")] for kind in FAULT_KINDS}
    other_codes = [i for i, n in enumerate(names) if i != 0 and not n.startswith("fault_")]
    n_buckets = max(1, int(np.ceil(duration / bucket_s - 1e-9)))
    for b in range(n_buckets):
        lo, hi = b * bucket_s, min((b + 1) * bucket_s, duration)
        mask = (res.sched >= lo) & (res.sched < hi)
        kinds = res.kind[mask]
        inside = [p for p in points if p["t"] <= hi]
        last = inside[-1] if inside else (points[0] if points else {})
        rows.append(
            {
                "t_s": round(lo, 1),
                "minute": round(hi / 60.0, 2),
                "rss_mb": last.get("rss_mb"),
                "fds": last.get("fds"),
                "tasks": last.get("tasks"),
                "ok": int(np.count_nonzero(kinds == 0)),
                "faults": {k: int(np.isin(kinds, codes).sum()) for k, codes in fault_codes.items()},
                "unexpected": int(np.isin(kinds, other_codes).sum()),
            }
        )
    return rows


def series_growth(points: list[dict[str, Any]], duration: float) -> dict[str, dict[str, float | None]]:
    """For each sampled series: its mean just after warm-up, its mean over the last 10 % of the run,
    and the change (absolute and percent)."""
    warm = warm_up_s(duration)
    out: dict[str, dict[str, float | None]] = {}
    for key in ("rss_mb", "fds", "tasks"):
        pts = [(p["t"], p[key]) for p in points if p.get(key) is not None]
        if not pts:
            out[key] = {"after_warmup": None, "end": None, "change": None, "change_pct": None}
            continue
        early = [v for t, v in pts if warm <= t <= warm + max(duration * 0.1, 1.0)] or [pts[0][1]]
        late = [v for t, v in pts if t >= duration * 0.9] or [pts[-1][1]]
        a, b = sum(early) / len(early), sum(late) / len(late)
        out[key] = {
            "after_warmup": round(a, 2),
            "end": round(b, 2),
            "change": round(b - a, 2),
            "change_pct": round((b - a) / a * 100.0, 2) if a else None,
        }
    return out


RSS_STEP_MB = 1.0  # a rise between two samples worth naming in the report
PEAK_FACTOR = 2.0  # in-flight work at a sample this many times the run's median is a concurrency peak


def warm_up_s(duration: float) -> float:
    """The warm-up the growth figures start after: the first 10 % of the run, at least 10 s."""
    return max(duration * 0.1, min(10.0, duration / 4))


def rss_steps(points: list[dict[str, Any]], after_s: float = 0.0) -> list[dict[str, Any]]:
    """Each rise of RSS by RSS_STEP_MB or more between two samples after `after_s` (the warm-up, when the
    worker is still filling its caches and pools), with the live tasks and descriptors
    at that sample against the run's medians. A worker's RSS keeps its in-flight high-water (CPython's
    allocator keeps the arenas a burst took; docs/architecture.md "Memory after a burst"), so a step
    taken at a concurrency peak (`at_peak`) is that, where a step at steady load would point to a leak.
    The verdict does not use this: it only tells the report's reader which of the two a step was."""
    tasks = [p["tasks"] for p in points if p.get("tasks") is not None]
    fds = [p["fds"] for p in points if p.get("fds") is not None]
    median_tasks = float(np.median(tasks)) if tasks else None
    median_fds = float(np.median(fds)) if fds else None
    steps = []
    for prev, cur in itertools.pairwise(points):
        if cur["t"] < after_s or prev.get("rss_mb") is None or cur.get("rss_mb") is None:
            continue
        if cur["rss_mb"] - prev["rss_mb"] < RSS_STEP_MB:
            continue
        peak_tasks = median_tasks is not None and (cur.get("tasks") or 0) >= PEAK_FACTOR * max(median_tasks, 1.0)
        peak_fds = median_fds is not None and (cur.get("fds") or 0) >= PEAK_FACTOR * max(median_fds, 1.0)
        steps.append(
            {
                "t": cur["t"],
                "from_mb": prev["rss_mb"],
                "to_mb": cur["rss_mb"],
                "tasks": cur.get("tasks"),
                "fds": cur.get("fds"),
                "median_tasks": median_tasks,
                "median_fds": median_fds,
                "at_peak": bool(peak_tasks or peak_fds),
            }
        )
    return steps


def verdict(cell: dict[str, Any]) -> dict[str, Any]:
    """Flat or not: RSS growth after warm-up <= 5 %, descriptors and tasks back to the idle baseline (+
    slack) after the load, and (almost) no errors on requests without a fault."""
    before, after = cell["idle_before"], cell["idle_after"]
    growth = cell["rss_growth"]["growth_pct"]
    rss_ok = growth is not None and growth <= RSS_GROWTH_MAX_PCT
    fds_ok = after["fds"] <= before["fds"] + FDS_SLACK
    if before.get("tasks") is None or after.get("tasks") is None:
        tasks_ok: bool | None = None  # the target does not expose its tasks
    else:
        tasks_ok = after["tasks"] <= before["tasks"] + TASKS_SLACK
    share = cell["unexpected_share"]
    errors_ok = share is not None and share <= UNEXPECTED_MAX_SHARE
    flat = rss_ok and fds_ok and tasks_ok is not False and errors_ok
    summary = (
        f"{'FLAT' if flat else 'NOT FLAT'}: RSS {growth}% after warm-up (<= {RSS_GROWTH_MAX_PCT}%), "
        f"fds {before['fds']} -> {after['fds']} idle (<= +{FDS_SLACK}), "
        f"tasks {before.get('tasks')} -> {after.get('tasks')} idle (<= +{TASKS_SLACK}), "
        f"faults {cell['faulted']} {cell['faults_by_kind']}, unexpected errors {cell['unexpected_errors']}"
    )
    return {
        "flat": flat,
        "rss_ok": rss_ok,
        "fds_ok": fds_ok,
        "tasks_ok": tasks_ok,
        "errors_ok": errors_ok,
        "summary": summary,
    }


def rss_growth(series: dict[str, list[float]], duration: float) -> dict[str, float | None]:
    """Mean RSS just after warm-up vs. at the end, and the growth in percent."""
    t, rss = series["t"], series["rss_mb"]
    if not t:
        return {"rss_after_warmup_mb": None, "rss_end_mb": None, "growth_pct": None}
    warm = warm_up_s(duration)
    tail = duration * 0.9
    early = [r for x, r in zip(t, rss, strict=True) if warm <= x <= warm + max(duration * 0.05, 1.0)]
    late = [r for x, r in zip(t, rss, strict=True) if x >= tail]
    a = sum(early) / len(early) if early else rss[0]
    b = sum(late) / len(late) if late else rss[-1]
    return {
        "rss_after_warmup_mb": round(a, 2),
        "rss_end_mb": round(b, 2),
        "growth_pct": round((b - a) / a * 100.0, 2) if a else None,
    }
