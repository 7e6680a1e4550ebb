"""``overhead``: one request at a time (closed loop, concurrency 1) against a 0 ms mock.

Added latency = target percentile - direct-to-mock percentile, plus Bifrost's own account of its
time from the ``x-bf-overhead-us`` response header.

``--runs N`` repeats direct and Bifrost N times in a row (the peers run in the first round only): the
c=1 tail target holds only if every round meets it, so each round is reported with the spread.
"""

from __future__ import annotations

from typing import Any

from bench.mock_responses import MockSettings
from bench.scenarios.common import Context, by, diff, load_spec, measure, mock, save, target

NAME = "overhead"


# bifrost-gov, bifrost-nospin (the idle spin off) and the framework floors (bench/floor_relay.py) only
# with --targets naming them
PEERS = ("bifrost-gov", "bifrost-nospin", "litellm", "portkey")
FLOORS = ("floor-aiohttp", "floor-raw")
TARGET_P50_US, TARGET_P99_US = 250.0, 1000.0  # issue 16: added latency at c=1, in every round


def run(ctx: Context, runs: int = 1) -> str:
    duration = ctx.dur(30.0, 2.0)
    cells: list[dict[str, Any]] = []
    with mock(MockSettings(latency_ms=0.0)) as m:
        for round_no in range(1, runs + 1):
            names = ("direct", "bifrost", *FLOORS, *(PEERS if round_no == 1 else ()))
            for name in names:
                if not ctx.want(name):
                    continue
                with target(ctx, name, m, profile="cost") as running:
                    if running is None:
                        continue
                    spec = load_spec(ctx, running, mode="closed", concurrency=1, duration=duration, timeout=10.0)
                    spec.processes = 1
                    out, _ = measure(ctx, running, spec)
                    out["round"] = round_no
                    cells.append(out)
    derived: dict[str, Any] = {}
    for name in ("bifrost", *FLOORS, *PEERS):
        added = _added(cells, name, 1)
        if added is not None:
            derived[name] = added
    if runs > 1:
        rounds = [r for r in (_added(cells, "bifrost", i) for i in range(1, runs + 1)) if r is not None]
        derived["rounds"] = _spread(rounds)
    return save(
        ctx, NAME, {"duration_s": duration, "concurrency": 1, "mock_latency_ms": 0, "runs": runs}, cells, derived
    )


def _added(cells: list[dict[str, Any]], name: str, round_no: int) -> dict[str, Any] | None:
    """Target ``name``'s added latency over direct-to-mock of the same round."""
    c, base = by(cells, target=name, round=round_no), by(cells, target="direct", round=round_no)
    if c is None or base is None:
        return None
    return {
        "added_p50_us": _us(diff(c["latency_ms"]["p50"], base["latency_ms"]["p50"], 4)),
        "added_p90_us": _us(diff(c["latency_ms"]["p90"], base["latency_ms"]["p90"], 4)),
        "added_p99_us": _us(diff(c["latency_ms"]["p99"], base["latency_ms"]["p99"], 4)),
        "x_bf_overhead_us": c["x_bf_overhead_us"],
        "requests": c["ok"],
    }


def _spread(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each round's Bifrost figures, their min-max, and whether every round met the c=1 targets."""

    def span(key: str) -> list[float | None]:
        values = [r[key] for r in rounds if r[key] is not None]
        return [min(values), max(values)] if values else [None, None]

    within = bool(rounds) and all(
        r["added_p50_us"] is not None
        and r["added_p99_us"] is not None
        and r["added_p50_us"] <= TARGET_P50_US
        and r["added_p99_us"] <= TARGET_P99_US
        for r in rounds
    )
    return {
        "each": [{k: r[k] for k in ("added_p50_us", "added_p90_us", "added_p99_us")} for r in rounds],
        "added_p50_us_range": span("added_p50_us"),
        "added_p99_us_range": span("added_p99_us"),
        "targets_us": {"p50": TARGET_P50_US, "p99": TARGET_P99_US},
        "all_within_targets": within,
    }


def _us(ms: float | None) -> float | None:
    return None if ms is None else round(ms * 1000.0, 1)
