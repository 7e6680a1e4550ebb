"""GET /ws: every new request-log record, pushed as JSON as soon as the writer commits it.

    {"type": "hello", "mode": "push" | "poll", "pid": ...}
    {"type": "logs", "items": [record, ...]}      one message per committed batch
    {"type": "lagged", "skipped": n}              this client was too slow; n batches were dropped

One worker: the hub is a LogWriter listener, so a record reaches the browser within the writer's
flush interval, and encoding happens once per batch however many clients listen (and not at all
when none do). Several workers: each worker's writer only sees its own requests, so the hub instead
tails logs.db by rowid (every POLL_INTERVAL_S, only while someone listens) and every client sees
every worker's traffic. Input/output are trimmed; GET /api/logs/{id} has the full record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web

from runtime.http.admin_common import ADMIN
from runtime.requestlog.record import row_summary
from runtime.stores.logs import LogReader

log = logging.getLogger("bifrost.admin")

POLL_INTERVAL_S = 0.3
CLIENT_QUEUE = 256  # batches a slow client may fall behind before batches are dropped for it


class _Client:
    __slots__ = ("queue", "skipped")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(CLIENT_QUEUE)
        self.skipped = 0


class LiveHub:
    def __init__(self, queries: LogReader | None, poll: bool) -> None:
        self.queries = queries
        self.poll = poll
        self.clients: set[_Client] = set()
        self._tailer: asyncio.Task[None] | None = None
        self._last_rowid: int | None = None  # None: not yet read (start from the newest row)

    # Writer listener: runs inside the writer's flush, so it only encodes and enqueues.
    def on_batch(self, rows: list[tuple[Any, ...]]) -> None:
        if not self.clients or self.poll:
            return
        self.broadcast([row_summary(r) for r in rows])

    def broadcast(self, items: list[dict[str, Any]]) -> None:
        message = json.dumps({"type": "logs", "items": items}, ensure_ascii=False, default=str)
        for client in self.clients:
            try:
                client.queue.put_nowait(message)
            except asyncio.QueueFull:
                client.skipped += 1

    async def _tail(self) -> None:
        assert self.queries is not None
        while self.clients:
            try:
                if self.queries.available():
                    if self._last_rowid is None:
                        self._last_rowid = await self.queries.last_rowid()
                    rows = await self.queries.tail(self._last_rowid)
                    if rows:
                        self._last_rowid = rows[-1][0]
                        self.broadcast([row_summary(r) for _, r in rows])
                        if len(rows) >= 500:
                            continue  # catching up: no pause
            except Exception:
                log.exception("live log tail failed")
            await asyncio.sleep(POLL_INTERVAL_S)

    def join(self) -> _Client:
        client = _Client()
        self.clients.add(client)
        if self.poll and self.queries is not None and (self._tailer is None or self._tailer.done()):
            self._last_rowid = None
            self._tailer = asyncio.create_task(self._tail(), name="bifrost-live-tail")
        return client

    async def close(self) -> None:
        self.clients.clear()
        if self._tailer is not None:
            self._tailer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tailer


async def websocket(request: web.Request) -> web.WebSocketResponse:
    hub = request.app[ADMIN].hub
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    client = hub.join()
    await ws.send_json({"type": "hello", "mode": "poll" if hub.poll else "push", "pid": os.getpid()})

    async def reader() -> None:
        async for msg in ws:  # we expect nothing; this notices the close
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break

    reading = asyncio.create_task(reader())
    try:
        while not ws.closed:
            getter = asyncio.ensure_future(client.queue.get())
            done, _ = await asyncio.wait({getter, reading}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            if client.skipped:
                await ws.send_json({"type": "lagged", "skipped": client.skipped})
                client.skipped = 0
            await ws.send_str(getter.result())
    except (ConnectionError, RuntimeError):
        pass  # the browser went away mid-send
    finally:
        hub.clients.discard(client)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        await ws.close()
    return ws


async def hub_lifespan(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[ADMIN].hub.close()


def add_routes(app: web.Application, wrap: Any) -> None:
    app.router.add_get("/ws", wrap(websocket))
