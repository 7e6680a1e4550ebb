"""Graceful stop: the live requests and streams of one worker, and the order in which they are ended.

    stop signal -> not ready: GET /ready answers 503 (runtime/http/health.py) on any connection still open
                -> stop accepting (sites closed, idle keep-alive connections closed)
                -> wait for in-flight inference requests and streams, up to the shutdown grace
                -> cut every stream still running: its upstream read raises GatewayShutdown, so the relay's
                   normal tail writes the client's error event and logs the row (503 gateway_shutdown)
                -> short bounded wait (CUT_S) for those handlers and anything else still open, then
                   cancel what is left (logged as gateway_shutdown too, never as 499)
                -> runner.cleanup(): app.on_shutdown signals (none registered today: they would run
                   after the drain, not before it as in aiohttp's own order), then cleanup_ctx in
                   reverse: upstream client closed, request log drained last

Why not aiohttp's `runner.cleanup()` with `shutdown_timeout=grace` alone: every connection's
`RequestHandler.shutdown(timeout)` waits `timeout` for the handler to finish and then, after cancelling
it, up to `timeout` again, so a stream that never ends held the worker for twice the grace and was then
cancelled (logged as "client disconnected", no error event). Here the grace is spent once, by us, and
aiohttp only gets the short bound.

Cost on the request path: an integer increment and decrement per inference request, and one set add /
discard per stream (not per chunk). Nothing else until a stop signal arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from runtime.errors import GatewayShutdown

log = logging.getLogger("bifrost")

# After the grace: how long cut streams get to write their error event, and what aiohttp gets (twice,
# see above) for handlers that are still running.
CUT_S = 1.0


class Drain:
    """In-flight inference requests and live streams of this worker."""

    __slots__ = ("_idle", "cutting", "grace_s", "in_flight", "stopping", "streams")

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.in_flight = 0
        self.streams: set[Any] = set()  # ChunkStream objects with an `interrupt(err)` method
        self.cutting = False  # the grace is over: a cancelled handler was stopped by us, not by its client
        self.stopping = False  # a stop signal arrived: /ready says 503 from now on
        self._idle: asyncio.Event | None = None  # only exists while stopping

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self._idle is not None and self.in_flight <= 0:
            self._idle.set()

    def add_stream(self, stream: Any) -> None:
        if self.cutting:  # opened while we were cutting: it does not get a new grace
            stream.interrupt(self.shutdown_error())
        self.streams.add(stream)

    def discard_stream(self, stream: Any) -> None:
        self.streams.discard(stream)

    def shutdown_error(self) -> GatewayShutdown:
        return GatewayShutdown(
            f"the gateway is shutting down: the request was still running after the {self.grace_s:g}s shutdown grace"
        )

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no inference request is in flight, at most `timeout` seconds; True if idle."""
        if self.in_flight <= 0:
            return True
        self._idle = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)):
                await self._idle.wait()
        return self.in_flight <= 0

    def cut_streams(self) -> int:
        """End every live stream with GatewayShutdown; returns how many there were."""
        self.cutting = True
        streams = list(self.streams)
        for stream in streams:
            stream.interrupt(self.shutdown_error())
        return len(streams)


DRAIN: web.AppKey[Drain] = web.AppKey("drain")


async def stop(runner: web.AppRunner, drain: Drain) -> None:
    """Stop the server of `runner` within `drain.grace_s` (+ CUT_S for the cut), then clean the app up.

    The runner must have been created with `shutdown_timeout=CUT_S`: its own `cleanup()` runs last."""
    drain.stopping = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + drain.grace_s
    for site in list(runner.sites):
        await site.stop()  # no new connections
    server = runner.server
    if server is not None:
        await asyncio.sleep(0)  # let connections accepted just before start their request (as aiohttp does)
        server.pre_shutdown()  # idle keep-alive connections close now, busy ones after their request
    if not await drain.wait_idle(deadline - loop.time()):
        cut = drain.cut_streams()
        log.warning(
            "shutdown grace (%gs) over: %d request(s) still running, %d stream(s) ended with an error event",
            drain.grace_s,
            drain.in_flight,
            cut,
        )
    else:
        drain.cutting = True
    if server is not None:
        # Cut streams finish in milliseconds; a handler still running after CUT_S is cancelled, and
        # aiohttp waits up to CUT_S for it once more. Bound it all the same.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3 * CUT_S):
                await server.shutdown(CUT_S)
        for conn in server.connections:
            conn.force_close()
    await runner.cleanup()
