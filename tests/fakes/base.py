"""What every fake provider shares: recording, scripting, the reply pipeline, start/stop.

A subclass supplies its routes (`routes()`), its auth check (`auth_error()`), and the normal
answers; this class wraps every handler so that each request is recorded, authenticated, and then
answered by the next scripted `Reply` (or by the normal answer when nothing is scripted).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from .recorder import RecordedRequest, Recorder, wait_until
from .reply import Reply
from .server import ThreadedServer

Handler = Callable[[web.Request, RecordedRequest, Reply], Awaitable[web.StreamResponse]]
Responder = Callable[[RecordedRequest], "Reply | None"]

NOT_JSON = object()  # marker: the body was present but did not parse


class _Dropped(Exception):
    """Raised after a scripted `drop` aborted the connection."""


class FakeProvider:
    name = "fake"

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.default_reply = Reply()
        self.responder: Responder | None = None
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        self._server = ThreadedServer(self._make_app)

    # ---- lifecycle ----

    def start(self) -> FakeProvider:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Origin to use as the provider's base_url, e.g. http://127.0.0.1:41234."""
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    # ---- scripting ----

    def enqueue(self, *replies: Reply) -> None:
        """Queue replies; each request consumes the first one whose path_contains matches."""
        with self._lock:
            self._queue.extend(replies)

    def always(self, reply: Reply) -> None:
        """Answer every request that has no queued reply with `reply`."""
        self.default_reply = reply

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
        self.default_reply = Reply()
        self.responder = None
        self.recorder.reset()

    def _next_reply(self, rec: RecordedRequest) -> Reply:
        with self._lock:
            for i, reply in enumerate(self._queue):
                if reply.path_contains is None or reply.path_contains in rec.path:
                    return self._queue.pop(i)
        if self.responder is not None:
            chosen = self.responder(rec)
            if chosen is not None:
                return chosen
        return self.default_reply

    # ---- what tests read ----

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.recorder.requests

    def requests_to(self, path_part: str) -> list[RecordedRequest]:
        return [r for r in self.recorder.requests if path_part in r.path]

    @property
    def counts(self) -> dict[str, int]:
        return self.recorder.counts

    def wait_for(self, event: str, n: int = 1, timeout: float = 10.0) -> bool:
        """Wait until counter `event` (e.g. "disconnects") reaches n."""
        return wait_until(lambda: self.recorder.counts.get(event, 0) >= n, timeout)

    # ---- subclass interface ----

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        raise NotImplementedError

    def auth_error(self, request: web.Request) -> web.Response | None:
        return None

    def response_headers(self) -> dict[str, str]:
        return {}

    # ---- the pipeline every request goes through ----

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        for method, path, handler in self.routes():
            app.router.add_route(method, path, self._wrap(handler))
        return app

    def _wrap(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            rec = RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=_parse(raw),
                raw=raw,
            )
            self.recorder.add(rec)
            try:
                return await self._answer(request, rec, handler)
            except _Dropped:
                # The connection is aborted; aiohttp cancels this handler as soon as it notices.
                # (A CancelledError raised here is not caught by the clauses below.)
                await asyncio.sleep(60)
                raise
            except (asyncio.CancelledError, ConnectionResetError):
                self.recorder.count("disconnects")
                raise
            finally:
                self.recorder.finished()

        return wrapped

    async def _answer(self, request: web.Request, rec: RecordedRequest, handler: Handler) -> web.StreamResponse:
        denied = self.auth_error(request)
        if denied is not None:
            self.recorder.status(denied.status)
            return denied
        reply = self._next_reply(rec)
        if reply.delay > 0:
            await asyncio.sleep(reply.delay)
        if reply.drop:
            self.recorder.count("dropped")
            if request.transport is not None:
                request.transport.abort()
            raise _Dropped
        if reply.overrides_body:
            self.recorder.status(reply.status)
            self.recorder.count("served")
            return _scripted(reply, self.response_headers())
        response = await handler(request, rec, reply)
        if not isinstance(response, web.Response):
            return response  # streams count themselves
        self.recorder.status(response.status)
        if reply.chunk_delay > 0 and response.body:
            response = await _trickle(request, response, reply.chunk_delay)
        self.recorder.count("served")
        return response


async def _trickle(request: web.Request, response: web.Response, delay: float) -> web.StreamResponse:
    """Send a JSON answer's headers at once and its body in three parts, `delay` apart."""
    body = bytes(response.body)  # type: ignore[arg-type]
    out = web.StreamResponse(status=response.status, headers=response.headers)
    await out.prepare(request)
    third = max(1, len(body) // 3)
    for start in range(0, len(body), third):
        if start:
            await asyncio.sleep(delay)
        await out.write(body[start : start + third])
    await out.write_eof()
    return out


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return NOT_JSON


def _scripted(reply: Reply, headers: dict[str, str]) -> web.Response:
    all_headers = {**headers, **reply.headers}
    if reply.raw is not None:
        return web.Response(status=reply.status, body=reply.raw, content_type=reply.content_type, headers=all_headers)
    body = json.dumps(reply.json if reply.json is not None else {})
    return web.Response(status=reply.status, text=body, content_type="application/json", headers=all_headers)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=headers)
