"""Run an aiohttp app on 127.0.0.1, port 0, in a background thread with its own event loop.

Tests that use the synchronous `openai` SDK block their own thread; the fake keeps answering
because it lives in another thread. `handler_cancellation=True` makes aiohttp cancel a handler
when its client goes away, which is how a fake notices that the gateway dropped an upstream call.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable

from aiohttp import web

STOP_TIMEOUT = 10.0


class ThreadedServer:
    """Start with `start()` (returns once the port is listening), stop with `stop()`."""

    def __init__(self, app_factory: Callable[[], web.Application], host: str = "127.0.0.1") -> None:
        self._app_factory = app_factory
        self._host = host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Origin of the server, e.g. http://127.0.0.1:41234 (no trailing slash)."""
        return f"http://{self._host}:{self.port}"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, 0))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._serve(sock))
            except BaseException as exc:  # reported to start(), never raised in the thread
                failure.append(exc)
                sock.close()
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

        self._thread = threading.Thread(target=run, name=f"fake-server-{self.port}", daemon=True)
        self._thread.start()
        ready.wait(STOP_TIMEOUT)
        if failure:
            raise RuntimeError(f"fake server failed to start: {failure[0]!r}")

    async def _serve(self, sock: socket.socket) -> None:
        self._runner = web.AppRunner(
            self._app_factory(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None and not loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
            with contextlib.suppress(Exception):  # a stuck handler must not fail teardown
                future.result(STOP_TIMEOUT)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT)
        self._loop = self._thread = self._runner = None
