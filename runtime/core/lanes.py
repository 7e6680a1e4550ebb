"""Per-provider lanes: at most `concurrency` upstream requests in flight, at most `buffer_size` waiting.

A slot is taken synchronously when one is free (no await, no allocation: the common case), otherwise
the request waits in FIFO order. When the wait queue is full, `drop_excess` answers 429 at once;
without it the request still waits, bounded by its timeout, as the Go gateway's blocking queue does.
A released slot is handed straight to the first waiter so nobody can overtake the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from runtime.errors import QueueFull, QueueTimeout


class Lane:
    __slots__ = ("_waiters", "buffer_size", "concurrency", "drop_excess", "dropped", "in_flight", "name")

    def __init__(self, name: str, concurrency: int, buffer_size: int, drop_excess: bool) -> None:
        self.name = name
        self.concurrency = concurrency
        self.buffer_size = buffer_size
        self.drop_excess = drop_excess
        self.in_flight = 0
        self.dropped = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        if self.in_flight < self.concurrency and not self._waiters:
            self.in_flight += 1
            return True
        return False

    async def acquire(self, timeout: float) -> None:
        """Take a slot, waiting up to `timeout` seconds. Raises QueueFull or QueueTimeout."""
        if self.try_acquire():
            return
        if len(self._waiters) >= self.buffer_size and self.drop_excess:
            self.dropped += 1
            raise QueueFull(
                f"provider '{self.name}' is at capacity: {self.concurrency} requests in flight and "
                f"{len(self._waiters)} waiting (buffer_size); drop_excess_requests is on"
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed to us as we gave up: pass it on
            else:
                self._remove(waiter)
            if isinstance(exc, TimeoutError):
                raise QueueTimeout(f"waited {timeout:g}s for a free slot on provider '{self.name}'") from None
            raise

    def _remove(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter; in_flight is unchanged
                return
        self.in_flight -= 1
