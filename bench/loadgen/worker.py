"""One load-generator process: an open-loop schedule or closed-loop users over a connection pool.

Open loop: request i of this worker is due at ``start + phase + i / rate``, sent whether or not
earlier ones have answered, and its latency is measured from that due time — so a stalled server is
charged for every request it delayed (no coordinated omission).  Closed loop (``overhead``,
``logging``, ``streams``): each of ``concurrency`` users sends its next request when the previous one
ends; latency is measured from the send.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen.payloads import FaultMix, UniquePayloads
from bench.loadgen.protocol import Pool, Req

_now = time.monotonic
_SWEEP_S = 0.05


@dataclass(slots=True)
class WorkerSpec:
    """What one worker process does; rates and concurrency are this worker's share."""

    host: str
    port: int
    payload: bytes
    stream: bool
    expect: str
    mode: str  # "open" | "closed"
    duration: float
    rate: float = 0.0
    phase: float = 0.0
    concurrency: int = 1
    timeout: float = 30.0
    max_conns: int = 4096
    prewarm: int = 4
    cpus: list[int] | None = None
    unique_base: int | None = None  # a new prompt per request, counting from here (payloads.UniquePayloads)
    # The soak's mix (payloads.FaultMix): request bytes per (stream, fault), the stream share, the fault
    # rate and this worker's seed. None: every request is `payload`.
    mix: dict[tuple[bool, str], bytes] | None = None
    stream_share: float = 0.5
    fault_rate: float = 0.0
    seed: int = 0


@dataclass(slots=True)
class Recorder:
    """Per-request observations, as flat arrays that pickle cheaply back to the parent."""

    start: float
    kinds: list[str] = field(default_factory=lambda: ["ok"])
    sched: array = field(default_factory=lambda: array("d"))
    latency: array = field(default_factory=lambda: array("d"))
    kind: array = field(default_factory=lambda: array("h"))
    overhead_us: array = field(default_factory=lambda: array("q"))
    ttft: array = field(default_factory=lambda: array("d"))
    max_gap: array = field(default_factory=lambda: array("d"))
    gaps: array = field(default_factory=lambda: array("d"))
    lag: array = field(default_factory=lambda: array("d"))
    sent: int = 0
    pending: int = 0

    def record(self, req: Req, kind: str, at: float) -> None:
        self.pending -= 1
        if req.fault:  # an injected fault: "fault_<kind>:<what the client saw>", expected, apart from errors
            kind = f"fault_{req.fault}:{kind}"
        try:
            code = self.kinds.index(kind)
        except ValueError:
            self.kinds.append(kind)
            code = len(self.kinds) - 1
        self.sched.append(req.sched - self.start)
        self.latency.append(at - req.sched)
        self.kind.append(code)
        self.overhead_us.append(req.overhead_us)
        if req.t_sent:
            self.sent += 1
        self.lag.append(req.t_submit - req.sched)
        ev = req.event_times
        if ev:
            self.ttft.append(ev[0] - req.sched)
            worst = 0.0
            for a, b in itertools.pairwise(ev):
                gap = b - a
                self.gaps.append(gap)
                worst = max(worst, gap)
            self.max_gap.append(worst)
        else:
            self.ttft.append(-1.0)
            self.max_gap.append(-1.0)

    def export(self, conns_opened: int) -> dict[str, Any]:
        return {
            "kinds": self.kinds,
            "sent": self.sent,
            "conns_opened": conns_opened,
            **{
                name: getattr(self, name).tobytes()
                for name in ("sched", "latency", "kind", "overhead_us", "ttft", "max_gap", "gaps", "lag")
            },
        }


async def _sweeper(pool: Pool, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await asyncio.sleep(_SWEEP_S)
        pool.sweep(_now())


async def _open_loop(pool: Pool, spec: WorkerSpec, rec: Recorder, start: float) -> None:
    period = 1.0 / spec.rate
    end = start + spec.duration
    i = 0
    due = start + spec.phase
    while due < end:
        now = _now()
        if due > now:
            await asyncio.sleep(due - now)
            now = _now()
        # Fire everything that is due: after a late wake-up the backlog goes out at once.
        while due <= now and due < end:
            rec.pending += 1
            pool.submit(Req(due, due + spec.timeout, _now()))
            i += 1
            due = start + spec.phase + i * period


async def _closed_loop(pool: Pool, spec: WorkerSpec, rec: Recorder, start: float) -> None:
    end = start + spec.duration
    delay = max(start - _now(), 0.0)
    await asyncio.sleep(delay)
    for _ in range(spec.concurrency):
        now = _now()
        rec.pending += 1
        pool.submit(Req(now, now + spec.timeout))
    await asyncio.sleep(max(end - _now(), 0.0))


class Channel:
    """Length-prefixed pickles over two file descriptors (the worker's stdin/stdout).

    A subprocess rather than multiprocessing: spawn re-imports the caller's ``__main__``.  Raw
    ``os.write`` loops rather than ``pickle.dump`` on a file: under ``PYTHONUNBUFFERED`` stdout is a
    raw FileIO whose large writes to a pipe may be partial.
    """

    def __init__(self, rx_fd: int, tx_fd: int) -> None:
        self.rx_fd, self.tx_fd = rx_fd, tx_fd

    def send(self, obj: object) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(len(data).to_bytes(8, "little") + data)
        while view:
            n = os.write(self.tx_fd, view)
            view = view[n:]

    def _read_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = os.read(self.rx_fd, min(n - len(out), 1 << 20))
            if not chunk:
                raise EOFError("channel closed")
            out += chunk
        return bytes(out)

    def recv(self) -> Any:
        size = int.from_bytes(self._read_exact(8), "little")
        return pickle.loads(self._read_exact(size))


async def _run(ctrl: Channel, spec: WorkerSpec) -> dict[str, Any]:
    rec = Recorder(start=0.0)
    end_holder = [0.0]

    def on_done(req: Req, kind: str, at: float) -> None:
        rec.record(req, kind, at)
        if spec.mode == "closed" and at < end_holder[0]:
            rec.pending += 1
            pool.submit(Req(at, at + spec.timeout))

    pool = Pool(
        spec.host,
        spec.port,
        spec.payload,
        stream=spec.stream,
        expect=spec.expect,
        max_conns=spec.max_conns,
        on_done=on_done,
        unique=None if spec.unique_base is None else UniquePayloads(spec.payload, spec.unique_base),
        mix=None if spec.mix is None else FaultMix(spec.mix, spec.stream_share, spec.fault_rate, spec.seed),
    )
    warmed = await pool.prewarm(spec.prewarm)
    ctrl.send(("ready", warmed))
    msg = ctrl.recv()  # blocks the loop on purpose: nothing else runs before the start signal
    start = float(msg[1])
    rec.start = start
    end_holder[0] = start + spec.duration
    stop = asyncio.Event()
    sweeper = asyncio.get_running_loop().create_task(_sweeper(pool, stop))
    if spec.mode == "open":
        await _open_loop(pool, spec, rec, start)
    else:
        await _closed_loop(pool, spec, rec, start)
    # Drain: every request gets its full timeout to answer before we give up on it.
    drain_until = start + spec.duration + spec.timeout + 1.0
    while rec.pending > 0 and _now() < drain_until:
        await asyncio.sleep(_SWEEP_S)
    stop.set()
    await sweeper
    pool.sweep(float("inf"))
    pool.close()
    return rec.export(pool.opened)


def worker_main() -> None:
    """Process entry point: ``python -m bench.loadgen.worker`` started by the driver."""
    ctrl = Channel(sys.stdin.fileno(), sys.stdout.fileno())
    spec: WorkerSpec = ctrl.recv()
    if spec.cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, set(spec.cpus))
    from bench.mock_provider import raise_fd_limit

    raise_fd_limit()
    try:
        import uvloop

        result = uvloop.run(_run(ctrl, spec))
    except ImportError:  # pragma: no cover
        result = asyncio.run(_run(ctrl, spec))
    ctrl.send(("done", result))


if __name__ == "__main__":
    worker_main()
