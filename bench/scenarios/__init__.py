"""Scenarios, by name: each is one command (``python -m bench <name>``) writing results/<name>.json."""

from __future__ import annotations

from collections.abc import Callable

from bench.scenarios import breakdown, cache, cluster, frontier, full, medium, overhead, reqlog, soak, streams, xlarge

# Order matters for `all`/`smoke`: breakdown reads frontier's result.
SCENARIOS: dict[str, Callable[..., str]] = {
    "overhead": overhead.run,
    "medium": medium.run,
    "frontier": frontier.run,
    "breakdown": breakdown.run,
    "streams": streams.run,
    "logging": reqlog.run,
    "xlarge": xlarge.run,
    "soak": soak.run,
    "cache": cache.run,  # response caching (issue 12): hits vs misses vs off, and the hit path's frontier
    "cluster": cluster.run,  # N instances behind nginx (issue 14): 1 vs 2, embedded vs PostgreSQL + Redis
    "full": full.run,  # every per-request feature on (issue 16): frontier, c=1 added latency, each feature's cost
}

# Scenarios whose run() takes a rate override.
TAKES_RATE = {"medium", "xlarge", "soak", "breakdown"}

__all__ = ["SCENARIOS", "TAKES_RATE"]
