"""``cache``: response caching (issue 12) — what a hit costs next to a miss and next to no cache at all.

One 0 ms mock (no delay before the answer or between stream chunks), so the gateway's own path is all
that is measured. Two gateways, both up, loaded one at a time: `bifrost` (caching off) and `bifrost-cache` (the
`semantic_cache` plugin in direct mode: `dimension` 1, no embedding, no `default_cache_key`, so only
requests carrying `x-bf-cache-key` consult the cache, as in Go Bifrost).

The c=1 cells run in ROUNDS rounds, alternating their order, and each row averages its rounds: on a
shared machine, cells measured minutes apart differ by more than the few µs some of them compare.

(a) c=1 closed loop, non-streaming: caching off; on but no cache key (the feature's cost for traffic
    that does not use it: must be ~0); misses (a new prompt every request: payloads.UniquePayloads);
    direct hits (one prompt, primed by the warm-up).
(b) the frontier machinery (scenarios/frontier.py: highest offered rate with p99 <= 1 s and errors <=
    0.1 %) for the hit path vs the gateway without caching, same mock.
(c) c=1 streams: misses vs hits, TTFT and total.

Every cell records how many requests reached the mock during it (`upstream_calls`), so a "hit" cell
that was not served from the cache shows it (and the checks refuse to judge it).

The issue's checks: hit p50 <= miss p50 (a); hit frontier >= no-cache frontier (b).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.loadgen.driver import run_load
from bench.mock_responses import MockSettings
from bench.mockproc import MockProcess
from bench.scenarios import frontier
from bench.scenarios.common import Context, diff, load_spec, log, measure, mock, save, target
from bench.targets import Running

NAME = "cache"
STREAM = "chat_stream"
CACHE_KEY = "bench"  # the x-bf-cache-key the cached cells send
# Direct mode only: no embedding call, so the mock's embeddings never enter the measurement.
CACHE_CONFIG: dict[str, object] = {"dimension": 1, "ttl": "1h"}
# The hit path may go past the gateway's own ladder: extend it (the load generator's ceiling, see
# `calibrate`, is the real limit up there).
HIT_LADDER = [*frontier.LADDERS["bifrost"], 12000, 15000]


def _upstream(m: MockProcess) -> int:
    return int(m.stats()["total"])  # requests served (not the "_connections"/"_streams_completed" tallies)


def _cell(
    ctx: Context,
    m: MockProcess,
    running: Running,
    label: str,
    *,
    endpoint: str = "chat",
    unique: bool = False,
    key: bool = True,
    duration: float,
) -> dict[str, Any]:
    """One c=1 closed-loop cell: warm-up (which also primes a repeated prompt), then the measured run."""
    headers = dict(running.headers)
    if key:
        headers["x-bf-cache-key"] = CACHE_KEY
    run = dataclasses.replace(running, headers=headers)
    spec = load_spec(
        ctx, run, endpoint=endpoint, mode="closed", concurrency=1, duration=duration, timeout=10.0, unique=unique
    )
    spec.processes = 1
    # Apart from measure(), so the mock's count covers the measured run alone; never longer than the cell.
    run_load(dataclasses.replace(spec, duration=min(duration, 0.5 if ctx.smoke else 3.0)))
    before = _upstream(m)
    out, _ = measure(ctx, run, spec, warm=False)
    out.update(
        cell=label, endpoint=endpoint, cache_key=key, unique_prompts=unique, upstream_calls=_upstream(m) - before
    )
    return out


def _frontier(ctx: Context, m: MockProcess, running: Running, ladder: list[float], duration: float) -> dict[str, Any]:
    before = _upstream(m)
    # One unrecorded run at the bottom of the ladder: warms the gateway and, with a cache key, primes the entry.
    warm = 1.0 if ctx.smoke else min(5.0, duration)
    measure(ctx, running, load_spec(ctx, running, rate=ladder[0], duration=warm), warm=False)
    primed = _upstream(m)
    steps = frontier.climb(ctx, running, ladder, duration)
    best = frontier._best(steps)
    best.update(upstream_calls=_upstream(m) - primed, warm_up_upstream_calls=primed - before, steps=steps)
    return best


def hook_cost_us(n: int = 50_000) -> dict[str, float]:
    """The plugin's own per-request cost for a request without a cache key, measured in this process (no
    HTTP, no neighbours' noise): the pipeline's hook stages with the plugin vs with no plugin, per request."""
    import asyncio
    import time

    from multidict import CIMultiDict, CIMultiDictProxy

    from runtime.cache.memory_store import MemoryCacheStore
    from runtime.cache.plugin import SemanticCachePlugin
    from runtime.cache.settings import parse_settings
    from runtime.core.context import RequestContext
    from runtime.core.hooks import Hooks

    plugin = SemanticCachePlugin(parse_settings(CACHE_CONFIG), MemoryCacheStore(max_entries=10, max_bytes=1 << 20))
    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json", "Authorization": "Bearer x"}))
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 150}

    async def per_request(hooks: Hooks) -> float:
        started = time.perf_counter()
        for _ in range(n):
            c = RequestContext("bench", "chat")
            c.headers, c.body = headers, body
            if hooks.pre:  # what runtime/core/flow.py does
                await hooks.run_pre(c)
            if hooks.post:
                await hooks.run_post(c, None)
            hooks.on_finish(c)
        return (time.perf_counter() - started) / n * 1e6

    async def both() -> dict[str, float]:
        off, on = await per_request(Hooks([])), await per_request(Hooks([plugin]))
        return {"off_us": round(off, 3), "on_no_key_us": round(on, 3), "added_us": round(on - off, 3)}

    return asyncio.run(both())


ROUNDS = 3  # the c=1 cells run in this many rounds, alternating order (smoke: one)


def _ladder(ctx: Context, full: list[float]) -> list[float]:
    return list(frontier.SMOKE_LADDER) if ctx.smoke else full


def _rounds(ctx: Context, m: MockProcess, off: Running, on: Running, c1: float) -> list[dict[str, Any]]:
    """The c=1 cells, each measured in ROUNDS parts of c1 / ROUNDS seconds, order reversed every round."""
    plan: list[tuple[str, Running, dict[str, Any]]] = [
        ("off", off, {"key": False}),
        ("on, no key", on, {"key": False}),
        ("miss", on, {"unique": True}),
        ("hit", on, {}),
        ("off stream", off, {"endpoint": STREAM, "key": False}),
        ("miss stream", on, {"endpoint": STREAM, "unique": True}),
        ("hit stream", on, {"endpoint": STREAM}),
    ]
    rounds = 1 if ctx.smoke else ROUNDS
    cells = []
    for r in range(rounds):
        for label, running, kw in plan if r % 2 == 0 else plan[::-1]:
            cell = _cell(ctx, m, running, label, duration=c1 / rounds, **kw)
            cell["round"] = r
            cells.append(cell)
    return cells


def run(ctx: Context) -> str:
    c1 = ctx.dur(30.0, 2.0)
    step = ctx.dur(20.0, 2.0)
    cells: list[dict[str, Any]] = []
    frontiers: dict[str, dict[str, Any]] = {}
    settings = MockSettings(latency_ms=0.0, chunk_interval_ms=0.0)
    with mock(settings) as m:
        if ctx.want("direct"):
            with target(ctx, "direct", m) as running:
                if running is not None:
                    cells.append(_cell(ctx, m, running, "direct", key=False, duration=c1))
                    cells.append(_cell(ctx, m, running, "direct stream", endpoint=STREAM, key=False, duration=c1))
        if ctx.want("bifrost"):
            # Both gateways up at once (pinned to the same core, only one loaded at a time), so the c=1 cells
            # can alternate between them in rounds: a shared machine's drift then hits both alike.
            with (
                target(ctx, "bifrost", m, profile="cost") as off,
                target(ctx, "bifrost", m, profile="cost", label="bifrost-cache", cache=CACHE_CONFIG) as on,
            ):
                if off is not None and on is not None:
                    cells += _rounds(ctx, m, off, on, c1)
                    frontiers["off"] = _frontier(ctx, m, off, _ladder(ctx, frontier.LADDERS["bifrost"]), step)
                    keyed = dataclasses.replace(on, headers={**on.headers, "x-bf-cache-key": CACHE_KEY})
                    frontiers["hit"] = _frontier(ctx, m, keyed, _ladder(ctx, HIT_LADDER), step)
    for name, f in frontiers.items():
        for s in f.pop("steps"):
            s.update(target="bifrost" if name == "off" else "bifrost-cache", cell=f"frontier {name}")
            cells.append(s)
    derived = derive(cells, frontiers)
    derived["no_key_hook_in_process"] = hook_cost_us(5_000 if ctx.smoke else 50_000)
    for line in checks(derived):
        log(f"cache: {line}")
    return save(
        ctx,
        NAME,
        {
            "mock_latency_ms": 0,
            "mock_chunk_interval_ms": 0,
            "c1_duration_s": c1,
            "frontier_step_s": step,
            "plugin_config": CACHE_CONFIG,
            "cache_key_header": CACHE_KEY,
            "profile": "cost",
        },
        cells,
        derived,
    )


def _mean(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def _lat(cs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of the table from a label's cells (one per round): percentiles averaged over the rounds."""
    if not cs:
        return {}
    row = {
        "p50_ms": _mean([c["latency_ms"]["p50"] for c in cs]),
        "p99_ms": _mean([c["latency_ms"]["p99"] for c in cs]),
        "ok": sum(c["ok"] for c in cs),
        "errors": sum(sum(c["errors"].values()) for c in cs),
        "upstream_calls": sum(c.get("upstream_calls") or 0 for c in cs),
        "x_bf_overhead_us_p50": _mean([(c.get("x_bf_overhead_us") or {}).get("p50") for c in cs]),
        "rounds": len(cs),
    }
    if cs[0].get("endpoint") == STREAM:
        row.update(
            ttft_p50_ms=_mean([(c.get("ttft_ms") or {}).get("p50") for c in cs]),
            ttft_p99_ms=_mean([(c.get("ttft_ms") or {}).get("p99") for c in cs]),
        )
    return row


def derive(cells: list[dict[str, Any]], frontiers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The table's rows and the issue's two checks from the measured cells."""
    rows = {
        label: _lat([c for c in cells if c.get("cell") == label])
        for label in (
            "direct",
            "off",
            "on, no key",
            "miss",
            "hit",
            "direct stream",
            "off stream",
            "miss stream",
            "hit stream",
        )
    }
    rows = {k: v for k, v in rows.items() if v}
    d: dict[str, Any] = {"c1": rows, "frontier": frontiers}
    off, nokey, miss, hit = (rows.get(k) for k in ("off", "on, no key", "miss", "hit"))
    if off and nokey:
        # The feature's cost for requests without a cache key: on-without-key minus off.
        d["no_key_added_p50_us"] = _us(diff(nokey["p50_ms"], off["p50_ms"], 4))
        d["no_key_added_p99_us"] = _us(diff(nokey["p99_ms"], off["p99_ms"], 4))
    if hit:
        # A hit cell only counts if the mock saw nothing during it (else the cache did not answer).
        d["hits_verified"] = hit["upstream_calls"] == 0 and hit["ok"] > 0
    if hit and miss:
        d["hit_vs_miss_p50_ms"] = diff(hit["p50_ms"], miss["p50_ms"], 4)
    f_off, f_hit = frontiers.get("off"), frontiers.get("hit")
    if f_off and f_hit:
        d["hit_frontier_rps"] = f_hit["max_sustained_rps"]
        d["off_frontier_rps"] = f_off["max_sustained_rps"]
        d["hit_frontier_verified"] = f_hit["upstream_calls"] == 0
    return d


def _us(ms: float | None) -> float | None:
    return None if ms is None else round(ms * 1000.0, 1)


def verdicts(d: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(check, status, measured, detail) for the issue's two checks: PASS, FAIL, or n/a when not measurable."""
    out = []
    c1 = d.get("c1", {})
    hit, miss = c1.get("hit"), c1.get("miss")
    name = "cache: direct hit p50 <= miss p50 (c=1, 0 ms mock)"
    if not hit or not miss:
        out.append((name, "n/a", "-", "needs the hit and miss cells"))
    elif not d.get("hits_verified"):
        out.append((name, "n/a", "-", f"the hit cell reached the mock {hit['upstream_calls']} times: not cache hits"))
    else:
        ok = hit["p50_ms"] <= miss["p50_ms"]
        measured = f"{hit['p50_ms']:.3f} vs {miss['p50_ms']:.3f} ms"
        out.append((name, "PASS" if ok else "FAIL", measured, f"p99 {hit['p99_ms']:.3f} vs {miss['p99_ms']:.3f} ms"))
    name = "cache: hit frontier >= no-cache frontier"
    if "hit_frontier_rps" not in d:
        out.append((name, "n/a", "-", "needs both frontiers"))
    elif not d.get("hit_frontier_verified"):
        calls = d["frontier"]["hit"]["upstream_calls"]
        out.append((name, "n/a", "-", f"the hit frontier reached the mock {calls} times: not cache hits"))
    else:
        ok = d["hit_frontier_rps"] >= d["off_frontier_rps"]
        measured = f"{d['hit_frontier_rps']:.0f} vs {d['off_frontier_rps']:.0f} RPS"
        out.append((name, "PASS" if ok else "FAIL", measured, "highest offered rate sustained, 0 ms mock"))
    return out


def checks(d: dict[str, Any]) -> list[str]:
    lines = [f"{status}: {name} — {measured}; {detail}" for name, status, measured, detail in verdicts(d)]
    if d.get("no_key_added_p50_us") is not None:
        lines.append(
            f"cost when on but the request has no cache key: p50 {d['no_key_added_p50_us']:+} µs, "
            f"p99 {d['no_key_added_p99_us']:+} µs (vs caching off, end to end)"
        )
    if d.get("no_key_hook_in_process"):
        h = d["no_key_hook_in_process"]
        lines.append(f"the plugin's own cost for a request without a cache key, in process: {h['added_us']:+} µs")
    return lines
