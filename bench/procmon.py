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
