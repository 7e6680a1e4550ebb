"""Idle spin: keep the event loop polling for a few microseconds after traffic instead of sleeping.

Why: at one request at a time most of a request's added latency is not our code but the gateway's
core going idle between the events of one request (the client's request, the provider's answer, the
client's next request, each tens of microseconds apart). An idle core halts; in a VM a halted vCPU
must be woken by the host, and its caches come back cold. Measured with `python -m bench overhead`
(docs/performance.md): the gateway's CPU per request at c=1 was ~2x its cost under load, for the same
work. Go's scheduler avoids this the same way: an idle thread spins a little before it parks.

How: while the spin is armed, a callback re-schedules itself with `call_soon`, so every loop
iteration polls the sockets without blocking (libuv and asyncio both poll with timeout 0 when a
callback is ready). It is armed when a request arrives and when its answer is handed over, for at
most `window` ns; a busy loop pays one cheap callback per iteration, an idle one sleeps as before.

The window adapts, like KVM's halt polling: a request that arrives within the longest window of the
last activity shows that spinning pays (the window grows back to the longest), one that arrives later
shows it does not (the window halves, down to zero: no spinning at all for sparse traffic). So a
gateway with traffic far apart burns nothing, and one at a steady trickle spins only while it helps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter_ns

GROW_START_NS = 20_000  # the window a shrunk spin grows back from, before doubling


class IdleSpin:
    """Arms a bounded busy-poll of the running loop around each request (see the module docstring)."""

    __slots__ = ("_call_soon", "_clock", "_last", "_longest", "_spinning", "_until", "window")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, longest_us: int, clock: Callable[[], int] = perf_counter_ns
    ) -> None:
        self._call_soon = loop.call_soon
        self._clock = clock
        self._longest = max(0, longest_us) * 1000
        self.window = self._longest  # ns; 0 = not spinning until traffic shows it pays
        self._until = 0
        self._last = 0
        self._spinning = False

    def arrived(self) -> None:
        """A request arrived: adapt the window to how long the loop waited for it, then spin."""
        now = self._clock()
        gap = now - self._last
        self._last = now
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
        self._arm(now)

    def _arm(self, now: int) -> None:
        if self.window:
            self._until = now + self.window
            if not self._spinning:
                self._spinning = True
                self._call_soon(self._tick)

    def _tick(self) -> None:
        if self._clock() < self._until:
            self._call_soon(self._tick)
        else:
            self._spinning = False


__all__ = ["GROW_START_NS", "IdleSpin"]
