"""What every scenario shares: the run context, starting targets, one measured load, saving JSON."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench import machine, targets
from bench.loadgen.driver import LoadResult, LoadSpec, run_load
from bench.loadgen.payloads import ENDPOINTS, request_body
from bench.mock_responses import MockSettings
from bench.mockproc import REPO_ROOT, MockProcess
from bench.pinning import Layout
from bench.procmon import TreeMonitor
from bench.stats import summarize
from bench.targets import Running, TargetUnavailable

RESULTS_DIR = os.path.join(REPO_ROOT, "bench", "results")


@dataclass
class Context:
    """Options common to all scenarios, from the command line."""

    layout: Layout
    out_dir: str = RESULTS_DIR
    smoke: bool = False
    targets: list[str] = field(default_factory=lambda: ["direct", "bifrost", "litellm"])
    explicit_targets: bool = False  # --targets was given (opt-in extras such as LiteLLM in xlarge)
    processes: int = 1
    auto_install: bool = True
    workers: int = 1
    duration: float | None = None  # overrides a scenario's per-cell duration
    skipped: dict[str, str] = field(default_factory=dict)

    def want(self, name: str) -> bool:
        return name in self.targets and name not in self.skipped

    def dur(self, full: float, smoke: float) -> float:
        if self.duration is not None:
            return self.duration
        return smoke if self.smoke else full


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def mock(settings: MockSettings) -> Iterator[MockProcess]:
    """A mock provider for the whole scenario (on the bench CPUs: this process is pinned there)."""
    proc = MockProcess(settings)
    try:
        yield proc
    finally:
        proc.stop()


@contextlib.contextmanager
def target(ctx: Context, name: str, mock_proc: MockProcess, **opts: Any) -> Iterator[Running | None]:
    """Start target ``name`` against the mock; yields None (and records why) if it cannot run."""
    t = targets.make(name, mock_pid=mock_proc.pid, workers=ctx.workers, auto_install=ctx.auto_install, **opts)
    try:
        running = t.start(mock_proc.origin, ctx.layout)
    except TargetUnavailable as exc:
        ctx.skipped[name] = str(exc).splitlines()[0]
        log(f"SKIP {name}: {exc}")
        yield None
        return
    running.notes.append(f"pinning: {ctx.layout.describe()}")
    try:
        yield running
    finally:
        code = t.stop()
        if code not in (None, 0, -15):
            log(f"{name} exited with code {code}; tail of its log:\n{t.log_tail()}")
        _LAST_STOPPED[name] = t


# The last stopped target per name, so a scenario can read e.g. Bifrost's request log after exit.
_LAST_STOPPED: dict[str, targets.Target] = {}


def last_stopped(name: str) -> targets.Target | None:
    return _LAST_STOPPED.get(name)


def load_spec(
    ctx: Context,
    running: Running,
    *,
    endpoint: str = "chat",
    mode: str = "open",
    rate: float = 0.0,
    concurrency: int = 1,
    duration: float = 10.0,
    timeout: float = 30.0,
    latency_hint_s: float = 0.005,
    big: bool = False,
    unique: bool = False,
) -> LoadSpec:
    ep = ENDPOINTS[endpoint]
    model = running.embedding_model if endpoint == "embeddings" else running.model
    return LoadSpec(
        port=running.port,
        body=request_body(ep, model, big=big, unique=unique),
        unique=unique,
        endpoint=endpoint,
        mode=mode,
        rate=rate,
        concurrency=concurrency,
        duration=duration,
        processes=ctx.processes,
        timeout=timeout,
        latency_hint_s=latency_hint_s,
        cpus=ctx.layout.bench,
        headers=dict(running.headers),
    )


def warm_up(ctx: Context, running: Running, spec: LoadSpec) -> None:
    """A short unrecorded run so connection pools, caches and JITs are warm before measuring."""
    secs = 0.5 if ctx.smoke else 3.0
    warm = LoadSpec(
        **{
            **{f: getattr(spec, f) for f in spec.__dataclass_fields__},
            "duration": secs,
            "timeout": min(spec.timeout, 10.0),
        }
    )
    if warm.mode == "open":
        warm.rate = min(spec.rate, 1000.0)
    run_load(warm)


def measure(
    ctx: Context,
    running: Running,
    spec: LoadSpec,
    *,
    warm: bool = True,
    timeline: bool = False,
    bucket_s: float = 1.0,
    rss_series: bool = False,
) -> tuple[dict[str, Any], LoadResult]:
    """Run one load against a started target; returns (summary incl. resources, raw result)."""
    if warm:
        warm_up(ctx, running, spec)
    mon = TreeMonitor(running.pid, interval=0.25 if spec.duration < 120 else 1.0).start()
    tcp0, load0, psi0 = machine.tcp_counters(), machine.loadavg(), machine.cpu_pressure_s()
    try:
        res = run_load(spec, monitor=mon)
    finally:
        mon.stop()
    tcp1, psi1 = machine.tcp_counters(), machine.cpu_pressure_s()
    out = summarize(res, with_timeline=timeline, bucket_s=bucket_s)
    out["resources"] = mon.summary(out["ok"])
    if rss_series:
        out["rss_series"] = mon.rss_series()
    out["target"] = running.name
    out["notes"] = list(running.notes)
    out["tcp_counters_delta"] = {k: tcp1[k] - tcp0.get(k, 0) for k in tcp1}
    out["loadavg_before"] = load0
    # Share of the cell's wall time in which some task on the machine waited for a CPU.
    out["cpu_pressure_pct"] = (
        round((psi1 - psi0) / res.wall_s * 100.0, 1) if psi0 is not None and psi1 is not None and res.wall_s else None
    )
    lat = out["latency_ms"]
    log(
        f"{running.name:8s} {spec.mode} rate={spec.rate if spec.mode == 'open' else '-'} "
        f"conc={spec.concurrency if spec.mode == 'closed' else '-'} ok={out['ok']}/{out['scheduled']} "
        f"thr={out['throughput_rps']}/s p50={lat['p50']} p99={lat['p99']} ms "
        f"rss={out['resources']['peak_rss_mb']} MB errors={out['errors']} load={load0} "
        f"cpu_pressure={out['cpu_pressure_pct']}% "
        f"syn_drops={out['tcp_counters_delta'].get('ListenOverflows')}"
    )
    return out, res


def save(
    ctx: Context, scenario: str, params: dict[str, Any], cells: list[dict[str, Any]], derived: dict[str, Any]
) -> str:
    """Write ``<out_dir>/<scenario>.json`` (the latest run of that scenario) and return its path."""
    os.makedirs(ctx.out_dir, exist_ok=True)
    doc = {
        "scenario": scenario,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "smoke": ctx.smoke,
        "machine": machine.describe(),
        "layout": ctx.layout.describe(),
        "loadgen_processes": ctx.processes,
        "gateway_workers": ctx.workers,
        "params": params,
        "skipped": dict(ctx.skipped),
        "cells": cells,
        "derived": derived,
    }
    path = os.path.join(ctx.out_dir, f"{scenario}.json")
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=1)
    log(f"wrote {os.path.relpath(path)}")
    return path


def by(cells: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    """The first cell whose fields equal ``match``."""
    for c in cells:
        if all(c.get(k) == v for k, v in match.items()):
            return c
    return None


def diff(a: float | None, b: float | None, nd: int = 3) -> float | None:
    return None if a is None or b is None else round(a - b, nd)


def ratio(a: float | None, b: float | None, nd: int = 2) -> float | None:
    return None if a is None or not b else round(a / b, nd)
