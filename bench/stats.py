"""Summaries of a load result: counts, success, throughput, latency percentiles, timelines.

Latency percentiles are over successful requests (with the success rate beside them); the
``latency_all_ms`` block also includes failures at their time-to-failure, for the sceptical reader.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.loadgen.driver import LoadResult

PCTS = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}
# Quantile levels kept in results JSON for distribution charts (log-spaced towards the tail).
CURVE_LEVELS = [0, 10, 25, 50, 75, 90, 95, 98, 99, 99.5, 99.9, 99.95, 99.99, 100]


def latency_block(values_s: np.ndarray) -> dict[str, float | None]:
    """p50/p90/p99/p99.9/max/mean in milliseconds (None when there is nothing to measure)."""
    if values_s.size == 0:
        return {k: None for k in (*PCTS, "max", "mean")}
    ms = values_s * 1000.0
    out: dict[str, float | None] = {k: round(float(np.percentile(ms, q)), 4) for k, q in PCTS.items()}
    out["max"] = round(float(ms.max()), 4)
    out["mean"] = round(float(ms.mean()), 4)
    return out


def us_block(values_us: np.ndarray) -> dict[str, float | None]:
    """Percentiles of a microsecond series (e.g. x-bf-overhead-us), in microseconds."""
    if values_us.size == 0:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    v = values_us.astype(np.float64)
    return {
        "n": int(v.size),
        "p50": float(np.percentile(v, 50)),
        "p90": float(np.percentile(v, 90)),
        "p99": float(np.percentile(v, 99)),
        "max": float(v.max()),
        "mean": round(float(v.mean()), 1),
    }


def timeline(res: LoadResult, bucket_s: float = 1.0) -> dict[str, list[float | None]]:
    """Per-bucket (by scheduled time) ok count, error count, p50 and p99 latency in ms."""
    if res.sched.size == 0:
        return {"t": [], "ok": [], "errors": [], "p50_ms": [], "p99_ms": []}
    idx = np.floor(res.sched / bucket_s).astype(np.int64)
    n = int(idx.max()) + 1
    out: dict[str, list[float | None]] = {"t": [], "ok": [], "errors": [], "p50_ms": [], "p99_ms": []}
    ok = res.kind == 0
    for b in range(n):
        sel = idx == b
        good = res.latency[sel & ok]
        out["t"].append(b * bucket_s)
        out["ok"].append(int(good.size))
        out["errors"].append(int(np.count_nonzero(sel & ~ok)))
        out["p50_ms"].append(round(float(np.percentile(good, 50)) * 1000, 3) if good.size else None)
        out["p99_ms"].append(round(float(np.percentile(good, 99)) * 1000, 3) if good.size else None)
    return out


def summarize(res: LoadResult, *, with_timeline: bool = False, bucket_s: float = 1.0) -> dict[str, Any]:
    """The JSON-ready summary of one load run."""
    ok_mask = res.kind == 0
    ok = int(np.count_nonzero(ok_mask))
    total = int(res.kind.size)
    errors: dict[str, int] = {}
    for code, name in enumerate(res.kinds):
        if code == 0:
            continue
        n = int(np.count_nonzero(res.kind == code))
        if n:
            errors[name] = n
    lat_ok = res.latency[ok_mask]
    span = max(res.spec.duration, 1e-9)
    out: dict[str, Any] = {
        "mode": res.spec.mode,
        "endpoint": res.spec.endpoint,
        "rate": res.spec.rate if res.spec.mode == "open" else None,
        "concurrency": res.spec.concurrency if res.spec.mode == "closed" else None,
        "duration_s": res.spec.duration,
        "processes": res.spec.processes,
        "scheduled": total,
        "sent": res.sent,
        "ok": ok,
        "errors": errors,
        "error_total": total - ok,
        "success_rate": round(ok / total, 6) if total else None,
        # Completions per second of the load window (late completions count: they were served).
        "throughput_rps": round(ok / span, 2),
        "latency_ms": latency_block(lat_ok),
        "latency_all_ms": latency_block(res.latency),
        "latency_curve_ms": (
            [round(float(np.percentile(lat_ok, q)) * 1000, 4) for q in CURVE_LEVELS] if lat_ok.size else []
        ),
        # How late the generator itself handed requests over (not counting waits for a connection).
        "send_lag_ms": latency_block(res.lag),
        "conns_opened": res.conns_opened,
        "wall_s": round(res.wall_s, 3),
    }
    ovh = res.overhead_us[ok_mask]
    ovh = ovh[ovh >= 0]
    out["x_bf_overhead_us"] = us_block(ovh)
    if res.spec.endpoint == "chat_stream":
        ttft = res.ttft[ok_mask]
        ttft = ttft[ttft >= 0]
        out["ttft_ms"] = latency_block(ttft)
        out["chunk_gap_ms"] = latency_block(res.gaps)
        gaps = res.max_gap[ok_mask]
        out["max_gap_ms"] = round(float(gaps.max()) * 1000, 3) if gaps.size else None
    if with_timeline:
        out["timeline"] = timeline(res, bucket_s)
    return out


def stalled_streams(res: LoadResult, stall_s: float) -> int:
    """Successful streams with a silence longer than ``stall_s`` between two chunks."""
    ok = res.kind == 0
    return int(np.count_nonzero(ok & (res.max_gap > stall_s)))
