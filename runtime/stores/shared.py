"""The shared-state store: what must agree between worker processes (and, later, instances).

Three primitives, all async, all atomic with respect to every other process using the same store:

- Counters over fixed time windows. A window of `window_s` seconds is aligned to the epoch
  (`floor(now / window_s)`), so every process agrees which window "now" is without talking.
  `incr` adds and returns the new total in the current window; `reserve` adds only if the total
  stays within `limit` (check and add are one atomic step: never more than `limit` granted, however
  many processes race). `window_s=None` means one window forever. Amounts may be int or float.
- Key/value text with an optional TTL (`set(key, value, ttl_s)`); an expired key reads as absent.
- Change notifications: `publish(channel, message)` reaches every current subscriber of `channel`
  in every process; `subscribe(channel)` returns a `Subscription` (an async iterator of messages)
  that is registered when the await returns, so nothing published after that is missed.
  Delivery is at-most-once and best effort (a slow subscriber's backlog is bounded): use it to say
  "something changed, re-read", not as a queue.

Engines: `shared_sqlite.SQLiteSharedState` (one host, any number of workers; the default) and
`shared_redis.RedisSharedState` (any number of instances on one Redis server; INCRBY/INCRBYFLOAT +
PEXPIREAT per window, a Lua script for reserve, SET PX, PUBLISH/SUBSCRIBE), chosen by config.json's
`shared_state` block (runtime/config/shared_state.py, runtime/stores/engines.py). A store that cannot
do an operation (its server is down, slow past its timeout, refuses the password) raises
`SharedStateError`, whatever the engine; its message never holds a credential. Nothing on the
request path calls this store yet; budget and rate-limit work will lease slices of a limit
(DESIGN.md principle 8) rather than make a round trip per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

Number = int | float


class SharedStateError(Exception):
    """The shared-state store could not do an operation (unreachable, timed out, refused): the caller
    decides what that means (governance: fail open or closed). The message names the server, no secret."""


@runtime_checkable
class Subscription(Protocol):
    """Messages of one channel, in publish order per publisher, until `close()`."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def __anext__(self) -> str: ...

    async def close(self) -> None: ...


@runtime_checkable
class SharedState(Protocol):
    async def open(self) -> None:
        """Connect / create what the engine needs. Optional: the first operation opens the store (a
        worker that never uses shared state pays nothing); call it to surface errors early."""

    async def close(self) -> None:
        """Stop background work, end every subscription, release connections. Idempotent; the
        store cannot be used afterwards (RuntimeError)."""

    # -- counters over windows -----------------------------------------------------------------------
    async def incr(self, key: str, amount: Number = 1, window_s: float | None = None) -> Number:
        """Add `amount` to `key`'s current window; the new total of that window."""

    async def reserve(self, key: str, amount: Number, limit: Number, window_s: float | None = None) -> bool:
        """Add `amount` only if the window's total stays <= `limit`; whether it was added."""

    async def total(self, key: str, window_s: float | None = None) -> Number:
        """The current window's total (0 when nothing was added in it)."""

    # -- key/value with TTL --------------------------------------------------------------------------
    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        """Store `value`; with `ttl_s`, it reads as absent once that many seconds have passed."""

    async def delete(self, key: str) -> bool:
        """Remove `key`; whether it existed (and had not expired)."""

    # -- notifications -------------------------------------------------------------------------------
    async def publish(self, channel: str, message: str) -> None: ...

    async def subscribe(self, channel: str) -> Subscription: ...


class QueuedSubscription:
    """The engines' common Subscription: one subscriber's bounded queue, filled by the engine's reader.
    A full queue drops (and counts) new messages rather than block the reader: delivery is best effort,
    as the protocol says. Engines subclass it with their own `close()`."""

    _END: Any = object()

    def __init__(self, channel: str, size: int) -> None:
        self.channel = channel
        self.queue: asyncio.Queue[Any] = asyncio.Queue(size)
        self.dropped = 0
        self.closed = False

    def __aiter__(self) -> QueuedSubscription:
        return self

    async def __anext__(self) -> str:
        if self.closed and self.queue.empty():
            raise StopAsyncIteration
        item = await self.queue.get()
        if item is self._END:
            raise StopAsyncIteration
        return item  # type: ignore[no-any-return]

    def offer(self, message: str) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1

    def end(self) -> None:
        if self.closed:
            return
        self.closed = True
        while True:  # make room for the end marker: a closed subscription has no reader to wait for
            try:
                self.queue.put_nowait(self._END)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> QueuedSubscription:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()
