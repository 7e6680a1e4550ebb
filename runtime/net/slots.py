"""A FIFO cap on open sockets (total, or per origin) for the upstream client.

The same shape as the provider lanes (runtime/core/lanes.py) but the client's own: a slot is taken
without awaiting when one is free, otherwise the caller waits in FIFO order, and a released slot is
handed straight to the first waiter. A wait that runs out raises `PoolTimeout` — a wait for a socket
of our own pool, not a provider's queue (the lanes' QueueTimeout).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from runtime.net.errors import PoolTimeout


class Slots:
    __slots__ = ("_waiters", "in_flight", "limit", "name", "setting")

    def __init__(self, name: str, limit: int, setting: str) -> None:
        self.name = name  # "api.openai.com:443", or "upstream" for the total cap
        self.limit = limit
        self.setting = setting  # the config field that sets `limit`, for the error message
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return True
        return False

    async def acquire(self, timeout: float) -> None:
        """Take a slot, waiting up to `timeout` seconds. Raises PoolTimeout."""
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed to us as we gave up: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise PoolTimeout(
                    f"waited {timeout:g}s for a free connection to {self.name} "
                    f"(tuning profile {self.setting} = {self.limit}, all busy)",
                    timeout,
                ) from None
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves to the waiter; in_flight is unchanged
                return
        self.in_flight -= 1
