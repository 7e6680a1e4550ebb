"""Idle spin: keep the event loop polling for a few microseconds after traffic instead of sleeping.

Why: at one request at a time most of a request's added latency is not our code but the gateway's
core going idle between the events of one request (the client's request, the provider's answer, the
client's next request, each tens of microseconds apart). An idle core halts; in a VM a halted vCPU
must be woken by the host, and its caches come back cold. Measured with `python -m bench overhead`
(bench/README.md, "the c=1 tail"). Go's scheduler avoids this the same way: an idle thread spins a
little before it parks.

How: while the spin is armed, a callback re-schedules itself with `call_soon`, so every loop
iteration polls the sockets without blocking (libuv and asyncio both poll with timeout 0 when a
callback is ready). It is armed when a request arrives and when its answer is handed over, for at
most `window` ns; a busy loop pays one cheap callback per iteration, an idle one sleeps as before.

The window adapts, like KVM's halt polling: a request that arrives within the longest window of the
last activity shows that spinning pays (the window grows back to the longest), one that arrives later
shows it does not (the window halves, down to zero: no spinning at all for sparse traffic). So a
gateway with traffic far apart burns nothing, and one at a steady trickle spins only while it helps.

A shared core: spinning only pays when the core is ours. If a spin got less than half of the core
while it ran (its thread's CPU time against the wall clock), another process wanted the core, and the
spin would only take it from them (and the scheduler would then hold our own wake-ups back as the
heavier user). The spin then stops for the next COOL_OFF requests before it tries again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter_ns, thread_time_ns

GROW_START_NS = 20_000  # the window a shrunk spin grows back from, before doubling
COOL_OFF = 256  # requests without spinning after a spin found the core contended


class IdleSpin:
    """Arms a bounded busy-poll of the running loop around each request (see the module docstring)."""

    __slots__ = (
        "_call_soon",
        "_clock",
        "_cool",
        "_cpu_clock",
        "_last",
        "_longest",
        "_spinning",
        "_started",
        "_started_cpu",
        "_until",
        "window",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        longest_us: int,
        clock: Callable[[], int] = perf_counter_ns,
        cpu_clock: Callable[[], int] = thread_time_ns,
    ) -> None:
        self._call_soon = loop.call_soon
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._longest = max(0, longest_us) * 1000
        self.window = self._longest  # ns; 0 = not spinning until traffic shows it pays
        self._until = 0
        self._last = 0
        self._spinning = False
        self._started = self._started_cpu = 0  # when the running spin began: wall and thread CPU clocks
        self._cool = 0  # requests left before a contended spin may try again

    def arrived(self) -> None:
        """A request arrived: adapt the window to how long the loop waited for it, then spin."""
        now = self._clock()
        gap = now - self._last
        self._last = now
        if self._cool:
            self._cool -= 1
            return
        if gap <= self._longest:  # spinning (longer) catches traffic like this: grow back to the longest
            if self.window < self._longest:
                self.window = min(self._longest, max(GROW_START_NS, self.window * 2))
        else:  # the loop waited longer than any window: spinning would have been wasted
            self.window = self.window // 2 if self.window >= 2 * GROW_START_NS else 0
        self._arm(now)

    def answered(self) -> None:
        """A request's answer is being handed over: the next request may follow at once."""
        now = self._clock()
        self._last = now
        if not self._cool:
            self._arm(now)

    def _arm(self, now: int) -> None:
        if self.window:
            self._until = now + self.window
            if not self._spinning:
                self._spinning = True
                self._started, self._started_cpu = now, self._cpu_clock()
                self._call_soon(self._tick)

    def _tick(self) -> None:
        now = self._clock()
        if now < self._until:
            self._call_soon(self._tick)
            return
        self._spinning = False
        wall = now - self._started
        if wall > 0 and (self._cpu_clock() - self._started_cpu) * 2 < wall:  # preempted: the core is shared
            self._cool = COOL_OFF


__all__ = ["COOL_OFF", "GROW_START_NS", "IdleSpin"]
