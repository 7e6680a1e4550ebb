"""OpenAI Responses API ingress: POST /v1/responses and /openai/v1/responses, JSON or typed SSE events,
translated onto whichever provider serves the model (OpenAI, Anthropic, Gemini, Bedrock, ...).

Errors keep the gateway's OpenAI-compatible shape, which is what the openai SDK expects here too.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from runtime.core.context import RequestContext
from runtime.core.gateway import encode_json
from runtime.errors import GatewayError
from runtime.http.errors import error_response
from runtime.http.relay import TranslatingIngress, serve
from runtime.providers.base import CHAT, ParsedResponse
from runtime.wire import responses as wire
from runtime.wire.responses_stream import ResponsesEncoder


class ResponsesIngress(TranslatingIngress):
    name = "responses"

    def to_internal(self, body: dict[str, Any]) -> dict[str, Any]:
        return wire.to_internal(body)

    def respond(self, result: ParsedResponse, ctx: RequestContext) -> bytes:
        return encode_json(
            wire.from_internal(result.data, result.usage, ctx.model_requested, ctx.ts_ms // 1000, ctx.body)
        )

    def encoder(self, ctx: RequestContext) -> ResponsesEncoder:
        return ResponsesEncoder(ctx.model_requested, ctx.ts_ms // 1000, ctx.body)

    def error_response(self, err: GatewayError, ctx: RequestContext, headers: dict[str, str]) -> web.Response:
        return error_response(err, ctx, headers)


_INGRESS = ResponsesIngress()


async def create(request: web.Request) -> web.StreamResponse:
    return await serve(request, CHAT, _INGRESS)


def add_routes(app: web.Application) -> None:
    for prefix in ("/v1", "/openai/v1"):
        app.router.add_post(f"{prefix}/responses", create)
