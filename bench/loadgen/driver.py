"""Run a load across several worker processes and merge what they observed.

Workers are ``python -m bench.loadgen.worker`` subprocesses talking pickles over stdin/stdout (not
multiprocessing: spawn re-imports the caller's ``__main__``, fork copies sampler threads); each opens its connections,
reports ready, and all start on one ``time.monotonic`` instant — CLOCK_MONOTONIC is system-wide on
Linux, so the schedules of all workers interleave exactly.
"""

from __future__ import annotations

import math
import os
import secrets
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bench.loadgen.payloads import ENDPOINTS, FaultMix, http_request
from bench.loadgen.worker import Channel, WorkerSpec


class Monitor(Protocol):
    def begin(self) -> None: ...
    def end(self) -> None: ...


@dataclass(slots=True)
class LoadSpec:
    """A whole load: total rate (open) or total concurrency (closed), split over ``processes``."""

    port: int
    body: bytes
    endpoint: str = "chat"
    mode: str = "open"
    rate: float = 100.0
    concurrency: int = 1
    duration: float = 10.0
    processes: int = 1
    timeout: float = 30.0
    max_conns: int = 8192
    latency_hint_s: float = 0.005
    cpus: list[int] | None = None
    host: str = "127.0.0.1"
    path: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Every request a new prompt (the body must be built with request_body(..., unique=True)): the
    # `cache` scenario's misses. Each run draws a random base, so a warm-up never primes its own run.
    unique: bool = False
    # The soak's mix (endpoint "chat" only): a share of streamed requests and a share with an injected
    # fault (payloads.FaultMix); None keeps every request the same.
    stream_share: float | None = None
    faults: float = 0.0
    seed: int = 1


@dataclass(slots=True)
class LoadResult:
    """Merged observations; times in seconds, ``sched`` relative to the common start."""

    spec: LoadSpec
    kinds: list[str]
    sched: np.ndarray
    latency: np.ndarray
    kind: np.ndarray
    overhead_us: np.ndarray
    ttft: np.ndarray
    max_gap: np.ndarray
    gaps: np.ndarray
    lag: np.ndarray  # hand-over time - scheduled time, per request (the generator's own lateness)
    sent: int
    conns_opened: int
    wall_s: float


def _shares(total: float, n: int) -> list[float]:
    return [total / n] * n


def _worker_specs(spec: LoadSpec) -> list[WorkerSpec]:
    ep = ENDPOINTS[spec.endpoint]
    payload = http_request(spec.host, spec.port, spec.path or ep.path, spec.body, spec.headers)
    n = max(1, spec.processes)
    if spec.mode == "closed":
        n = min(n, max(1, spec.concurrency))
    out = []
    # Workers count from bases 10**12 apart; runs from a random one (collisions: ~1e-4 odds in 10**4 runs).
    run_base = secrets.randbelow(10**4) * 10**12 if spec.unique else 0
    mix = None
    if spec.stream_share is not None:
        mix = FaultMix.payloads(spec.host, spec.port, spec.path or ep.path, spec.body, spec.headers)
    for k in range(n):
        if spec.mode == "open":
            rate = spec.rate / n
            # Expected concurrency (Little's law) plus slack, so the first second needs no connects.
            prewarm = min(1024, math.ceil(rate * (spec.latency_hint_s + 0.002) * 1.3) + 2)
            phase = k / spec.rate  # worker k fires between worker k-1's requests
            conc = 1
        else:
            rate, phase = 0.0, 0.0
            conc = spec.concurrency // n + (1 if k < spec.concurrency % n else 0)
            prewarm = conc
        out.append(
            WorkerSpec(
                host=spec.host,
                port=spec.port,
                payload=payload,
                stream=ep.stream,
                expect=ep.expect,
                mode=spec.mode,
                duration=spec.duration,
                rate=rate,
                phase=phase,
                concurrency=conc,
                timeout=spec.timeout,
                max_conns=max(1, spec.max_conns // n),
                prewarm=prewarm,
                cpus=spec.cpus,
                unique_base=run_base + k * 10**11 if spec.unique else None,
                mix=mix,
                stream_share=spec.stream_share or 0.0,
                fault_rate=spec.faults,
                seed=spec.seed * 1000 + k,
            )
        )
    return out


class _Worker:
    def __init__(self, spec: WorkerSpec) -> None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen.worker"],
            cwd=root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.chan = Channel(self.proc.stdout.fileno(), self.proc.stdin.fileno())
        self.chan.send(spec)

    def recv(self, timeout: float) -> object:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"load generator worker silent for {timeout:.0f} s")
        try:
            return self.chan.recv()
        except EOFError:
            raise RuntimeError(f"load generator worker died (exit {self.proc.wait()})") from None

    def close(self) -> None:
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def run_load(spec: LoadSpec, monitor: Monitor | None = None) -> LoadResult:
    """Run ``spec`` to completion (duration + drain) and return the merged result."""
    workers = [_Worker(ws) for ws in _worker_specs(spec)]
    try:
        for w in workers:
            w.recv(120)  # ("ready", connections opened)
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


def _merge(spec: LoadSpec, parts: list[dict], wall: float) -> LoadResult:
    kinds: list[str] = ["ok"]
    names = ("sched", "latency", "kind", "overhead_us", "ttft", "max_gap", "gaps", "lag")
    arrays: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for part in parts:
        remap = []
        for name in part["kinds"]:
            if name not in kinds:
                kinds.append(name)
            remap.append(kinds.index(name))
        codes = np.frombuffer(part["kind"], dtype=np.int16)
        arrays["kind"].append(np.asarray(remap, dtype=np.int16)[codes] if len(codes) else codes)
        for name in ("sched", "latency", "ttft", "max_gap", "gaps", "lag"):
            arrays[name].append(np.frombuffer(part[name], dtype=np.float64))
        arrays["overhead_us"].append(np.frombuffer(part["overhead_us"], dtype=np.int64))
    cat = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in arrays.items()}
    order = np.argsort(cat["sched"], kind="stable")
    return LoadResult(
        spec=spec,
        kinds=kinds,
        sched=cat["sched"][order],
        latency=cat["latency"][order],
        kind=cat["kind"][order],
        overhead_us=cat["overhead_us"][order],
        ttft=cat["ttft"][order],
        max_gap=cat["max_gap"][order],
        gaps=cat["gaps"],
        lag=cat["lag"],
        sent=sum(p["sent"] for p in parts),
        conns_opened=sum(p["conns_opened"] for p in parts),
        wall_s=wall,
    )
