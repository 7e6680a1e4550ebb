"""A FIFO cap on open sockets (total, or per origin) for the upstream client.

FIFO slots (runtime/fifo.py, shared with the provider lanes) with the client's own error: a wait that
runs out raises `PoolTimeout`, a wait for a socket of our own pool, not a provider's queue (the lanes'
QueueTimeout).
"""

from __future__ import annotations

from runtime.fifo import FifoSlots
from runtime.net.errors import PoolTimeout


class Slots(FifoSlots):
    __slots__ = ("name", "setting")

    def __init__(self, name: str, limit: int, setting: str) -> None:
        super().__init__(limit)
        self.name = name  # "api.openai.com:443", or "upstream" for the total cap
        self.setting = setting  # the config field that sets `limit`, for the error message

    async def acquire(self, timeout: float) -> None:
        """Take a slot, waiting up to `timeout` seconds. Raises PoolTimeout."""
        if self.try_acquire():
            return
        try:
            await self.wait(timeout)
        except TimeoutError:
            raise PoolTimeout(
                f"waited {timeout:g}s for a free connection to {self.name} "
                f"(tuning profile {self.setting} = {self.limit}, all busy)",
                timeout,
            ) from None
