"""Resource sampling of a process tree with psutil: RSS over time, peak RSS and CPU seconds.

A gateway may fork workers (or LiteLLM's uvicorn may), so every figure covers the root process and
all its descendants, sampled every ``interval`` seconds on a background thread.
"""

from __future__ import annotations

import contextlib
import threading
import time

import psutil


def tree_usage(root: psutil.Process) -> tuple[float, float]:
    """(RSS in MB, user+system CPU seconds) summed over ``root`` and its live descendants."""
    procs = [root]
    with contextlib.suppress(psutil.Error):
        procs += root.children(recursive=True)
    rss = 0
    cpu = 0.0
    for p in procs:
        try:
            with p.oneshot():
                rss += p.memory_info().rss
                t = p.cpu_times()
                cpu += t.user + t.system
        except psutil.Error:
            continue
    return rss / (1024 * 1024), cpu


class TreeMonitor:
    """Samples a process tree until stopped; ``begin``/``end`` bracket the measured window."""

    def __init__(self, pid: int | None, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float, float]] = []  # (monotonic, rss_mb, cpu_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = psutil.Process(pid) if pid else None
        self._t0 = 0.0
        self._t1 = 0.0
        self._cpu0 = 0.0
        self._cpu1 = 0.0

    def start(self) -> TreeMonitor:
        if self._proc is not None:
            self._thread = threading.Thread(target=self._loop, name="tree-monitor", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        assert self._proc is not None
        while not self._stop.is_set():
            rss, cpu = tree_usage(self._proc)
            self.samples.append((time.monotonic(), rss, cpu))
            self._stop.wait(self.interval)

    def begin(self) -> None:
        self._t0 = time.monotonic()
        if self._proc is not None:
            self._cpu0 = tree_usage(self._proc)[1]

    def end(self) -> None:
        self._t1 = time.monotonic()
        if self._proc is not None:
            self._cpu1 = tree_usage(self._proc)[1]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def window(self) -> list[tuple[float, float, float]]:
        t1 = self._t1 or time.monotonic()
        return [s for s in self.samples if self._t0 <= s[0] <= t1]

    def summary(self, ok_requests: int) -> dict[str, float | None]:
        """Peak/mean RSS in the window, CPU seconds used in it, and CPU per successful request."""
        if self._proc is None:
            return {"peak_rss_mb": None, "mean_rss_mb": None, "cpu_s": None, "cpu_ms_per_request": None}
        win = self.window() or self.samples[-1:]
        rss = [s[1] for s in win]
        cpu = max(self._cpu1 - self._cpu0, 0.0)
        return {
            "peak_rss_mb": round(max(rss), 2) if rss else None,
            "mean_rss_mb": round(sum(rss) / len(rss), 2) if rss else None,
            "cpu_s": round(cpu, 3),
            "cpu_ms_per_request": round(cpu * 1000 / ok_requests, 4) if ok_requests else None,
        }

    def rss_series(self) -> dict[str, list[float]]:
        """RSS over the measured window, seconds from its start (for the RSS-over-time chart)."""
        win = self.window()
        return {"t": [round(s[0] - self._t0, 2) for s in win], "rss_mb": [round(s[1], 2) for s in win]}


def tree_fds(root: psutil.Process) -> int:
    """Open file descriptors summed over ``root`` and its live descendants (sockets, files, pipes)."""
    procs = [root]
    with contextlib.suppress(psutil.Error):
        procs += root.children(recursive=True)
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.num_fds()
    return total


def scrape_gauge(port: int, name: str, timeout: float = 5.0) -> float | None:
    """The sum of a gauge's samples on ``http://127.0.0.1:port/metrics`` (e.g. every worker's
    ``bifrost_event_loop_tasks``), or None when the gateway does not expose it."""
    from bench import control

    try:
        status, text = control.request("GET", port, "/metrics", timeout=timeout)
    except OSError:
        return None
    if status != 200 or not isinstance(text, str):
        return None
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


class LeakSampler:
    """The soak's slow series: every ``interval`` s the gateway tree's RSS and open descriptors, and the
    live asyncio tasks it reports on /metrics (``bifrost_event_loop_tasks``, summed over workers).

    ``sample()`` takes one point on demand (the idle baseline before the load and the check after it);
    ``start()``/``stop()`` take them on a thread during the load. Times are seconds from ``t0``."""

    TASKS_GAUGE = "bifrost_event_loop_tasks"

    def __init__(self, pid: int, metrics_port: int | None, interval: float = 10.0) -> None:
        self.proc = psutil.Process(pid)
        self.metrics_port = metrics_port
        self.interval = interval
        self.t0 = time.monotonic()
        self.points: list[dict[str, float | None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> dict[str, float | None]:
        rss, _cpu = tree_usage(self.proc)
        tasks = scrape_gauge(self.metrics_port, self.TASKS_GAUGE) if self.metrics_port else None
        return {
            "t": round(time.monotonic() - self.t0, 2),
            "rss_mb": round(rss, 2),
            "fds": tree_fds(self.proc),
            "tasks": tasks,
        }

    def start(self) -> LeakSampler:
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="leak-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.points.append(self.sample())
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
