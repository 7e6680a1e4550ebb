"""Per-provider lanes: at most `concurrency` upstream requests in flight, at most `buffer_size` waiting.

A slot is taken synchronously when one is free (no await, no allocation: the common case), otherwise
the request waits in FIFO order. When the wait queue is full, `drop_excess` answers 429 at once;
without it the request still waits, bounded by its timeout, as the Go gateway's blocking queue does.
A released slot is handed straight to the first waiter so nobody can overtake the queue.
"""

from __future__ import annotations

from runtime.errors import QueueFull, QueueTimeout
from runtime.fifo import FifoSlots


class Lane(FifoSlots):
    __slots__ = ("buffer_size", "drop_excess", "dropped", "name")

    def __init__(self, name: str, concurrency: int, buffer_size: int, drop_excess: bool) -> None:
        super().__init__(concurrency)
        self.name = name
        self.buffer_size = buffer_size
        self.drop_excess = drop_excess
        self.dropped = 0

    @property
    def concurrency(self) -> int:
        return self.limit

    async def acquire(self, timeout: float) -> None:
        """Take a slot, waiting up to `timeout` seconds. Raises QueueFull or QueueTimeout."""
        if self.try_acquire():
            return
        if self.queued >= self.buffer_size and self.drop_excess:
            self.dropped += 1
            raise QueueFull(
                f"provider '{self.name}' is at capacity: {self.limit} requests in flight and "
                f"{self.queued} waiting (buffer_size); drop_excess_requests is on"
            )
        try:
            await self.wait(timeout)
        except TimeoutError:
            raise QueueTimeout(f"waited {timeout:g}s for a free slot on provider '{self.name}'") from None
