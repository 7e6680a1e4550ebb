"""Facts about the machine and the code under test, recorded with every result."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any

from bench.mockproc import REPO_ROOT


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


_TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPSynRetrans", "TCPTimeouts")


def tcp_counters() -> dict[str, int]:
    """Kernel TCP counters that explain 1 s / 3 s latency spikes (a full accept queue drops SYNs,
    the client retransmits after 1 s).  Machine-wide, so other processes' traffic counts too."""
    try:
        with open("/proc/net/netstat") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return {}
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            table = dict(zip(head.split()[1:], (int(v) for v in vals.split()[1:]), strict=False))
            return {k: table[k] for k in _TCP_COUNTERS if k in table}
    return {}


def cpu_pressure_s() -> float | None:
    """Total seconds any task waited for a CPU (PSI ``some``): its growth during a cell says how
    much neighbours competed with us.  None where the kernel has no PSI."""
    try:
        with open("/proc/pressure/cpu") as fh:
            for line in fh:
                if line.startswith("some"):
                    return int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return None


def loadavg() -> list[float] | None:
    """1/5/15-minute load averages: this machine is shared, so busy neighbours show up here."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def describe() -> dict[str, Any]:
    """CPU, cores, memory, kernel, Python and the commit measured."""
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": _mem_gb(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--", "runtime", "bifrost_cli")),
        "loadavg_at_save": loadavg(),
    }
