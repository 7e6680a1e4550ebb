"""Concurrent identical misses share one upstream call (one event loop per worker: no locks).

The first miss for an exact hash is the leader: it goes upstream and, if it streams, its chunk dicts
are kept in its Flight as they pass (a small broadcast buffer). Identical requests arriving meanwhile
are followers:

- a non-streaming follower waits for the leader's outcome and answers with the whole answer;
- a streaming follower waits for the leader's first chunk (or its whole answer), then receives the
  chunks already sent and the rest live;
- if the leader fails or is cut before a follower started answering, the follower goes upstream
  itself (the pre-hook returns None); a streaming follower already answering when the leader is cut
  ends with an error event, as the leader's own stream did.

Every wait is bounded (`wait_s`: the longest request timeout the gateway allows its providers).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from runtime.cache.replay import chunks as replay_chunks
from runtime.cache.replay import clone
from runtime.errors import GatewayError

# A streaming leader's chunks kept for late followers; beyond this a flight stops accepting followers
# (they go upstream themselves) rather than holding an unbounded answer twice in memory.
MAX_BUFFERED_CHUNKS = 20_000


class LeaderFailed(GatewayError):
    status = 502
    type = "upstream_error"


class Flight:
    """One upstream call that identical requests wait on."""

    __slots__ = ("_changed", "answer", "buffered", "done", "followers", "leader_id", "model", "open", "provider")

    def __init__(self, leader_id: str = "", provider: str = "", model: str = "") -> None:
        self.leader_id = leader_id  # the leader's request id: the entry's id once its answer is stored
        self.provider = provider  # who answers: the request's provider/model, then the leader's routed ones
        self.model = model
        self.buffered: list[dict[str, Any]] = []  # the leader's chunks so far (streaming leader)
        self.answer: dict[str, Any] | None = None  # the leader's whole answer, once it succeeded
        self.done = False
        self.open = True  # followers may still join (False once the buffer is full)
        self.followers = 0
        self._changed = asyncio.Event()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def add_chunk(self, chunk: dict[str, Any]) -> None:
        if len(self.buffered) >= MAX_BUFFERED_CHUNKS:
            self.open = False
            return
        self.buffered.append(clone(chunk))  # the leader's encoder may adjust its own dict
        self._wake()

    def finish(self, answer: dict[str, Any] | None) -> None:
        """The leader is over: `answer` when it succeeded completely, None when it failed or was cut."""
        self.answer = answer
        self.done = True
        self.open = False
        self._wake()

    async def changed(self, timeout_s: float) -> bool:
        """Wait for a new chunk or the end; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._changed.wait()
        except TimeoutError:
            return False
        return True


class Coalescer:
    """The flights in progress, by exact hash."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self.flights: dict[str, Flight] = {}

    def lead(self, request_hash: str, leader_id: str = "", provider: str = "", model: str = "") -> Flight:
        flight = self.flights[request_hash] = Flight(leader_id, provider, model)
        return flight

    def end(self, request_hash: str, flight: Flight, answer: dict[str, Any] | None) -> None:
        if self.flights.get(request_hash) is flight:
            del self.flights[request_hash]
        flight.finish(answer)

    async def whole(self, flight: Flight) -> dict[str, Any] | None:
        """A non-streaming follower: the leader's answer, or None (failed, cut, or the wait ran out)."""
        flight.followers += 1
        while not flight.done:
            if not await flight.changed(self.wait_s):
                return None
        return flight.answer

    async def follow_stream(self, flight: Flight) -> AsyncIterator[dict[str, Any]] | None:
        """A streaming follower: an iterator over the leader's chunks (or its whole answer replayed), or
        None when the leader failed before sending anything (then go upstream)."""
        flight.followers += 1
        while not flight.buffered and not flight.done:
            if not await flight.changed(self.wait_s):
                return None
        if flight.done and flight.answer is None:
            return None
        if not flight.buffered and flight.answer is not None:
            return _list_iter(replay_chunks(clone(flight.answer)))
        return self._live(flight)

    async def _live(self, flight: Flight) -> AsyncIterator[dict[str, Any]]:
        sent = 0
        while True:
            while sent < len(flight.buffered):
                yield clone(flight.buffered[sent])
                sent += 1
            if flight.done:
                if flight.answer is None:
                    raise LeaderFailed("the identical request this one shared ended before its answer was complete")
                return
            if not await flight.changed(self.wait_s):
                raise LeaderFailed("the identical request this one shared stopped sending")


async def _list_iter(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item
