"""aiohttp's connection handler with a deadline on the request head (Slowloris protection).

aiohttp bounds an idle connection (`keepalive_timeout`) but has no timeout of its own for reading a
request line and headers once they start arriving. `HeadTimeoutHandler` adds one: when the first bytes of
a request head arrive, a timer of `header_read_timeout` starts; if the head is still incomplete when it
fires, the connection is closed, however many bytes keep trickling in. The cost is one check per
`data_received` call and one timer per request head that does not arrive in a single read.

It relies on one aiohttp detail, stable since 3.x: `RequestHandler.start()` awaits `self._waiter` while
it waits for the next complete request head, and that waiter is None while a request is being handled.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


class HeadTimeoutHandler(RequestHandler):  # type: ignore[type-arg]
    __slots__ = ("_head_timeout", "_head_timer")

    def __init__(self, manager: web.Server, *, header_read_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = header_read_timeout
        self._head_timer: asyncio.TimerHandle | None = None

    def _waiting_for_head(self) -> bool:
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        waiter = self._waiter  # inlined _waiting_for_head(): this runs for every read of every connection
        if waiter is not None and not waiter.done():
            # Part of a head arrived (a complete one would have resolved the waiter): start the clock once.
            if self._head_timer is None and data and self._head_timeout:
                self._head_timer = self._loop.call_later(self._head_timeout, self._head_deadline)
        elif self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline(self) -> None:
        self._head_timer = None
        if self._waiting_for_head():
            self.log_debug("closing a connection whose request head took longer than %ss", self._head_timeout)
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)


class HeadTimeoutServer(web.Server):
    """aiohttp's Server, making HeadTimeoutHandler connections (it passes its kwargs to each handler)."""

    def __call__(self) -> RequestHandler:  # type: ignore[type-arg]
        return HeadTimeoutHandler(self, loop=self._loop, **self._kwargs)


class HardenedAppRunner(web.AppRunner):
    """An AppRunner whose connections have a request-head deadline (kwarg `header_read_timeout`)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app builds a plain Server (web.Application._make_handler); the subclass only changes which
        # protocol class it instantiates, so re-classing it keeps every other behaviour identical.
        server.__class__ = HeadTimeoutServer
        return server
