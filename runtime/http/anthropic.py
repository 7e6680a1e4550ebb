"""Anthropic-compatible ingress for the `anthropic` SDK: POST /anthropic/v1/messages (JSON and SSE),
POST /anthropic/v1/messages/count_tokens, GET /anthropic/v1/models.

The model is still `provider/model` (e.g. `openai/gpt-4o-mini`), so any configured provider answers in
Anthropic's format. The client's key (`x-api-key` or `Authorization: Bearer`) is accepted and not
checked: the gateway uses its own configured provider keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ujson
from aiohttp import web

from runtime.core.context import RequestContext
from runtime.core.gateway import Gateway, encode_json
from runtime.errors import GatewayError
from runtime.http.keys import GATEWAY
from runtime.http.relay import TranslatingIngress, gateway_headers, serve
from runtime.providers.base import CHAT, ParsedResponse
from runtime.providers.capabilities import COUNT_TOKENS
from runtime.wire import anthropic_ingress as wire
from runtime.wire.anthropic_stream import AnthropicEncoder


def _extra(ctx: RequestContext) -> dict[str, Any]:
    return {
        "is_bifrost_error": None,
        "extra_fields": {
            "provider": ctx.provider or None,
            "model_requested": ctx.model_requested or None,
            "attempts": ctx.attempts,
        },
    }


class AnthropicIngress(TranslatingIngress):
    name = "anthropic"

    def __init__(self, counting: bool = False) -> None:
        self.counting = counting

    def to_internal(self, body: dict[str, Any]) -> dict[str, Any]:
        return wire.to_internal(body, counting=self.counting)

    def respond(self, result: ParsedResponse, ctx: RequestContext) -> bytes:
        if self.counting:
            return encode_json({"input_tokens": result.data.get("input_tokens", 0)})
        return encode_json(wire.from_internal(result.data, result.usage, ctx.model_requested))

    def encoder(self, ctx: RequestContext) -> AnthropicEncoder:
        return AnthropicEncoder(ctx.model_requested)

    def error_response(self, err: GatewayError, ctx: RequestContext, headers: dict[str, str]) -> web.Response:
        extra = _extra(ctx)
        extra["is_bifrost_error"] = err.is_bifrost_error
        status, body = wire.error_status_and_body(err, extra)
        hdrs = dict(headers)
        if err.retry_after_s is not None and err.status == 429:
            hdrs["retry-after"] = str(max(1, round(err.retry_after_s)))
        return web.Response(
            status=status, body=ujson.dumps(body).encode(), content_type="application/json", headers=hdrs
        )


_MESSAGES = AnthropicIngress()
_COUNT = AnthropicIngress(counting=True)


def _beta_hook(request: web.Request) -> Callable[[dict[str, Any]], None] | None:
    """Carry the client's `anthropic-beta` header to an Anthropic upstream (other formats drop it)."""
    beta = request.headers.get("anthropic-beta")
    if not beta:
        return None
    return lambda body: body.__setitem__("anthropic_beta", beta)


async def messages(request: web.Request) -> web.StreamResponse:
    return await serve(request, CHAT, _MESSAGES, _beta_hook(request))


async def count_tokens(request: web.Request) -> web.StreamResponse:
    return await serve(request, COUNT_TOKENS, _COUNT, _beta_hook(request))


async def list_models(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    ctx = RequestContext(gw.new_id(), "models", "anthropic")
    data = [
        {
            "type": "model",
            "id": f"{name}/{model}",
            "display_name": f"{model} ({name})",
            "created_at": "1970-01-01T00:00:00Z",
        }
        for name, handle in sorted(gw.router.handles.items())
        for model in handle.listed_models
    ]
    data += [
        {"type": "model", "id": group, "display_name": f"{group} (model group)", "created_at": "1970-01-01T00:00:00Z"}
        for group in sorted(gw.config.model_groups)
    ]
    body = {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
    return web.Response(body=encode_json(body), content_type="application/json", headers=gateway_headers(ctx))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/anthropic/v1/messages", messages)
    app.router.add_post("/anthropic/v1/messages/count_tokens", count_tokens)
    app.router.add_get("/anthropic/v1/models", list_models)
