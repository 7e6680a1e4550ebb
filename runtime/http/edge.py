"""The one middleware every request passes through: who may call (origin.py), then the handler under
the last-resort catch (internal.py).

One middleware rather than one per concern: aiohttp wraps the handler once per middleware on every
request, and at a few thousand requests a second each layer is measurable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from runtime.config.model import GatewayConfig
from runtime.http import origin
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

    return edge


def install(app: web.Application, config: GatewayConfig) -> None:
    app.middlewares.append(middleware(config))
    origin.install_cors(app, config)
