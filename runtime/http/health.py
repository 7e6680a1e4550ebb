"""GET /health: liveness plus what a load balancer or a newcomer wants to see at a glance."""

from __future__ import annotations

import os

from aiohttp import web

from runtime.http.keys import GATEWAY, LOG_WRITER


async def health(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    writer = request.app.get(LOG_WRITER)
    body = {
        "status": "ok",
        "pid": os.getpid(),
        "providers": sorted(gw.router.handles),
        "profile": gw.config.tuning.profile,
        "request_log": None
        if writer is None
        # dropped: rows never written, any reason; failed: of those, rows the database refused.
        else {"written": writer.written, "pending": writer.pending, "dropped": writer.dropped, "failed": writer.failed},
    }
    return web.json_response(body, headers={"x-request-id": gw.new_id(), "x-bf-overhead-us": "0"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
