"""FIFO slots: a counting semaphore that hands a released slot straight to the longest waiter.

The provider lanes (runtime/core/lanes.py) and the upstream client's socket caps (runtime/net/slots.py)
both need exactly this, with their own errors on top, so it lives below both. A slot is taken without
awaiting or allocating when one is free (the common case); otherwise the caller waits in FIFO order, so
nobody can overtake the queue, and the wait is bounded by the caller's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class FifoSlots:
    __slots__ = ("_waiters", "in_flight", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return True
        return False

    async def wait(self, timeout: float) -> None:
        """Wait in line for a slot for up to `timeout` seconds; raises TimeoutError when it runs out.
        Call only after try_acquire() failed."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed to us as we gave up: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter; in_flight is unchanged
                return
        self.in_flight -= 1
