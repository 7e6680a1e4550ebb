"""``soak``: a fixed rate for 10 minutes; RSS and latency over time.  RSS growth is measured from
the end of the warm-up (the first 10 % of the run, at least 10 s) to the last 10 % of the run."""

from __future__ import annotations

from typing import Any

from bench.mock_responses import MockSettings
from bench.scenarios.common import Context, load_spec, measure, mock, save, target

NAME = "soak"


def run(ctx: Context, rate: float | None = None) -> str:
    rate = rate or (500.0 if not ctx.smoke else 20.0)
    duration = ctx.dur(600.0, 4.0)
    cells: list[dict[str, Any]] = []
    with mock(MockSettings(latency_ms=20.0)) as m:
        for name in ("bifrost", "litellm"):
            if not ctx.want(name) or (name == "litellm" and not ctx.explicit_targets):
                continue
            with target(ctx, name, m, profile="cost") as running:
                if running is None:
                    continue
                spec = load_spec(ctx, running, rate=rate, duration=duration, timeout=10.0, latency_hint_s=0.025)
                out, _ = measure(ctx, running, spec, timeline=True, bucket_s=max(duration / 60.0, 1.0), rss_series=True)
                out.update(rate=rate, rss_growth=rss_growth(out["rss_series"], duration))
                cells.append(out)
    derived = {
        c["target"]: {**c["rss_growth"], "success_rate": c["success_rate"], "p99_ms": c["latency_ms"]["p99"]}
        for c in cells
    }
    return save(
        ctx, NAME, {"rate": rate, "duration_s": duration, "mock_latency_ms": 20, "profile": "cost"}, cells, derived
    )


def rss_growth(series: dict[str, list[float]], duration: float) -> dict[str, float | None]:
    """Mean RSS just after warm-up vs. at the end, and the growth in percent."""
    t, rss = series["t"], series["rss_mb"]
    if not t:
        return {"rss_after_warmup_mb": None, "rss_end_mb": None, "growth_pct": None}
    warm = max(duration * 0.1, min(10.0, duration / 4))
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
