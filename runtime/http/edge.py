"""The one middleware every request passes through: who may call (origin.py), then the handler under
the last-resort catch (internal.py).

One middleware rather than one per concern: aiohttp wraps the handler once per middleware on every
request, and at a few thousand requests a second each layer is measurable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from runtime.config.model import GatewayConfig
from runtime.http import origin
from runtime.http.idlespin import IdleSpin
from runtime.http.internal import last_resort_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def middleware(config: GatewayConfig) -> Middleware:
    check = origin.checker(config)

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            refused = check(request)
            if refused is not None:
                return refused
            return await handler(request)
        except web.HTTPException:  # aiohttp's own answers (404, 405, 413, ...): not bugs
            raise
        except Exception:  # a bug of ours outside the inference handlers (which catch their own)
            return last_resort_response(request)

    spin_us = config.tuning.idle_spin_us
    return _spinning(edge, spin_us) if spin_us > 0 else edge


def _spinning(plain: Middleware, spin_us: int) -> Middleware:
    # `plain` with the idle spin armed around each request (runtime/http/idlespin.py); a wrapper so
    # that with the spin off (idle_spin_us 0) a request pays nothing for it.
    spins: list[IdleSpin] = []  # the loop's spin, made on the first request (the loop runs by then)

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not spins:
            spins.append(IdleSpin(asyncio.get_running_loop(), spin_us))
        spin = spins[0]
        spin.arrived()
        try:
            return await plain(request, handler)
        finally:
            spin.answered()

    return edge


def install(app: web.Application, config: GatewayConfig) -> None:
    app.middlewares.append(middleware(config))
    origin.install_cors(app, config)
