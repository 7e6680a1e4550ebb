"""GET /v1/capabilities: which configured provider supports which endpoint and feature (the table in
runtime/providers/capabilities.py), so clients and operators can check before they call."""

from __future__ import annotations

from aiohttp import web

from runtime.core.context import RequestContext
from runtime.core.gateway import Gateway, encode_json
from runtime.http.keys import GATEWAY
from runtime.http.relay import gateway_headers
from runtime.providers.capabilities import describe


async def capabilities(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    ctx = RequestContext(gw.new_id(), "capabilities")
    data = []
    for name, handle in sorted(gw.router.handles.items()):
        entry = {
            "provider": name,
            "format": handle.config.kind,
            **describe(handle.config.kind),
            "models": list(handle.listed_models),
        }
        entry["operations"] = sorted(handle.adapter.operations)  # what the engine will actually accept
        data.append(entry)
    return web.Response(
        body=encode_json({"object": "list", "data": data}),
        content_type="application/json",
        headers=gateway_headers(ctx),
    )


def add_routes(app: web.Application) -> None:
    for prefix in ("/v1", "/openai/v1"):
        app.router.add_get(f"{prefix}/capabilities", capabilities)
