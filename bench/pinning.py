"""CPU layout: the gateway on its own core, the mock and the load generator on the others.

On this 2-core machine that is gateway -> core 0, mock + load generator -> core 1.  With one CPU
(or no affinity support) nothing is pinned and the report says so.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Layout:
    """Which CPUs each side may use; ``None`` means unpinned."""

    gateway: list[int] | None
    bench: list[int] | None

    def describe(self) -> str:
        if self.gateway is None:
            return "unpinned (fewer than 2 usable CPUs or no affinity support)"
        return f"gateway on CPU {self.gateway}, mock + load generator on CPU {self.bench}"

    def gateway_prefix(self) -> list[str]:
        """Command prefix that pins a child process (taskset when present)."""
        if self.gateway is None:
            return []
        cpus = ",".join(str(c) for c in self.gateway)
        return ["taskset", "-c", cpus] if shutil.which("taskset") else []


def detect(pin: bool = True) -> Layout:
    """The layout for this machine; ``pin=False`` forces unpinned."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return Layout(None, None)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return Layout(None, None)
    return Layout(gateway=[cpus[0]], bench=cpus[1:])


def pin_self(layout: Layout) -> None:
    """Move this process (and so the mock and workers it starts) onto the bench CPUs."""
    if layout.bench is not None:
        os.sched_setaffinity(0, set(layout.bench))


def gateway_preexec(layout: Layout):  # type: ignore[no-untyped-def]
    """A ``preexec_fn`` that pins the child when taskset is unavailable (else None)."""
    if layout.gateway is None or shutil.which("taskset"):
        return None
    cpus = set(layout.gateway)
    return lambda: os.sched_setaffinity(0, cpus)
