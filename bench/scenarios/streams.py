"""``streams``: up to 512 concurrent SSE streams (closed loop: each user opens the next stream when
its last one ends), then an open loop of 1,000 new streams a second, each about 1 s long (so about
1,000 in flight). The mock waits ``latency`` before the first chunk and ``interval`` between chunks;
we report the time to first token and the gaps between chunks added by each gateway, and any stalled
(a silence over 1 s) or cut (no ``[DONE]``, connection lost, error event) stream. The peers (LiteLLM,
Portkey) run the closed loop only, like-for-like: LiteLLM tops out near 40 streams/s, so 1,000/s would
only measure its backlog.
"""

from __future__ import annotations

from typing import Any

from bench.mock_responses import MockSettings
from bench.scenarios.common import Context, by, diff, load_spec, measure, mock, save, target
from bench.stats import stalled_streams

NAME = "streams"
STALL_S = 1.0
CUT_KINDS = ("stream_cut", "conn_closed", "stream_error", "bad_sse", "sse_after_done")
OPEN_RATE = 1000.0  # new streams per second in the open-loop cell


def _added(cells: list[dict[str, Any]], name: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """What target `name` added over direct-to-mock in the cell matching `key` (None: not measured)."""
    c, d = by(cells, target=name, **key), by(cells, target="direct", **key)
    if c is None:
        return None
    return {
        **key,
        "ok": c["ok"],
        "errors": c["error_total"],
        "stalled": c["stalled"],
        "cut": c["cut"],
        "added_ttft_p50_ms": diff(c["ttft_ms"]["p50"], d and d["ttft_ms"]["p50"]),
        "added_ttft_p99_ms": diff(c["ttft_ms"]["p99"], d and d["ttft_ms"]["p99"]),
        "added_gap_p99_ms": diff(c["chunk_gap_ms"]["p99"], d and d["chunk_gap_ms"]["p99"]),
        "peak_rss_mb": c["resources"]["peak_rss_mb"],
    }


def run(ctx: Context) -> str:
    levels = [64, 256, 512] if not ctx.smoke else [4, 8]
    duration = ctx.dur(20.0, 2.0)
    settings = MockSettings(latency_ms=50.0, stream_chunks=20, chunk_interval_ms=20.0)
    cells: list[dict[str, Any]] = []
    with mock(settings) as m:
        for name in ("direct", "bifrost", "litellm", "portkey"):
            if not ctx.want(name):
                continue
            with target(ctx, name, m, profile="cost") as running:
                if running is None:
                    continue
                for conc in levels:
                    spec = load_spec(
                        ctx,
                        running,
                        endpoint="chat_stream",
                        mode="closed",
                        concurrency=conc,
                        duration=duration,
                        timeout=30.0,
                    )
                    out, res = measure(ctx, running, spec, warm=conc == levels[0])
                    out.update(
                        concurrency=conc,
                        stalled=stalled_streams(res, STALL_S),
                        cut=sum(out["errors"].get(k, 0) for k in CUT_KINDS),
                    )
                    cells.append(out)
    rate = OPEN_RATE if not ctx.smoke else 20.0
    long_streams = MockSettings(latency_ms=50.0, stream_chunks=20, chunk_interval_ms=47.5)  # ~1 s each
    with mock(long_streams) as m:
        for name in ("direct", "bifrost"):
            if not ctx.want(name):
                continue
            with target(ctx, name, m, profile="cost") as running:
                if running is None:
                    continue
                spec = load_spec(
                    ctx, running, endpoint="chat_stream", mode="open", rate=rate, duration=duration, timeout=30.0
                )
                out, res = measure(ctx, running, spec, warm=True)
                out.update(
                    concurrency=None,
                    open_rate=rate,
                    stalled=stalled_streams(res, STALL_S),
                    cut=sum(out["errors"].get(k, 0) for k in CUT_KINDS),
                )
                cells.append(out)
    derived: dict[str, Any] = {}
    for name in ("bifrost", "litellm", "portkey"):
        keys: list[dict[str, Any]] = [{"concurrency": conc} for conc in levels] + [{"open_rate": rate}]
        rows = [row for key in keys if (row := _added(cells, name, key)) is not None]
        if rows:
            derived[name] = rows
    return save(
        ctx,
        NAME,
        {
            "levels": levels,
            "duration_s": duration,
            "ttft_ms": settings.latency_ms,
            "chunks": settings.stream_chunks,
            "chunk_interval_ms": settings.chunk_interval_ms,
            "open_rate": rate,
            "open_chunk_interval_ms": long_streams.chunk_interval_ms,
            "stall_s": STALL_S,
            "profile": "cost",
        },
        cells,
        derived,
    )
