"""Gemini-API-compatible ingress for the `google-genai` SDK (http_options.base_url = <gateway>/genai):

    POST /genai/v1beta/models/{provider/model}:generateContent | :streamGenerateContent?alt=sse
    POST /genai/v1beta/models/{provider/model}:embedContent | :batchEmbedContents | :countTokens
    GET  /genai/v1beta/models

The SDK puts the model in the path, slashes and all (`models/anthropic/claude-…:generateContent`), so
the route takes everything after `models/` and splits the method off at the last colon. The client's
`x-goog-api-key` is accepted and not checked: the gateway uses its own provider keys.
"""

from __future__ import annotations

from typing import Any

import ujson
from aiohttp import web

from runtime.core.context import RequestContext
from runtime.core.gateway import Gateway, encode_json
from runtime.core.groups import GroupPlan
from runtime.errors import GatewayError, InvalidRequest
from runtime.http.keys import GATEWAY
from runtime.http.relay import TranslatingIngress, gateway_headers, serve
from runtime.providers.base import CHAT, EMBEDDINGS, ParsedResponse
from runtime.providers.capabilities import COUNT_TOKENS
from runtime.wire import genai_ingress as wire
from runtime.wire.genai_stream import GenAIEncoder

PREFIXES = ("/genai/v1beta", "/genai/v1")


def error_response(err: GatewayError, headers: dict[str, str]) -> web.Response:
    hdrs = dict(headers)
    if err.retry_after_s is not None and err.status == 429:
        hdrs["Retry-After"] = str(max(1, round(err.retry_after_s)))
    return web.Response(
        status=err.status,
        body=ujson.dumps(wire.error_body(err)).encode(),
        content_type="application/json",
        headers=hdrs,
    )


class GenAIIngress(TranslatingIngress):
    name = "genai"

    def __init__(self, method: str) -> None:
        self.method = method

    def to_internal(self, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("model")
        if self.method in ("embedContent", "batchEmbedContents"):
            return wire.embed_to_internal(body, model, self.method == "batchEmbedContents")  # type: ignore[arg-type]
        if self.method == "countTokens":
            inner = wire.field(body, "generateContentRequest")
            request = inner if isinstance(inner, dict) else body
            internal = wire.to_internal({**request, "model": model})
            internal.pop("stream", None)
            return internal
        return wire.to_internal(body)

    def respond(self, result: ParsedResponse, ctx: RequestContext) -> bytes:
        if self.method in ("embedContent", "batchEmbedContents"):
            return encode_json(wire.embed_from_internal(result.data, self.method == "batchEmbedContents"))
        if self.method == "countTokens":
            return encode_json({"totalTokens": result.data.get("input_tokens", 0)})
        return encode_json(wire.from_internal(result.data, result.usage, ctx.model_requested))

    def encoder(self, ctx: RequestContext) -> GenAIEncoder:
        return GenAIEncoder(ctx.model_requested)

    def error_response(self, err: GatewayError, ctx: RequestContext, headers: dict[str, str]) -> web.Response:
        return error_response(err, headers)


_OPS = {
    "generateContent": CHAT,
    "streamGenerateContent": CHAT,
    "embedContent": EMBEDDINGS,
    "batchEmbedContents": EMBEDDINGS,
    "countTokens": COUNT_TOKENS,
}
_INGRESS = {method: GenAIIngress(method) for method in _OPS}


async def model_method(request: web.Request) -> web.StreamResponse:
    model, _, method = request.match_info["tail"].rpartition(":")
    op = _OPS.get(method)
    if op is None or not model:
        gw: Gateway = request.app[GATEWAY]
        err = InvalidRequest(f"unknown method {method!r}; expected one of {', '.join(_OPS)}", status=404)
        return error_response(err, gateway_headers(RequestContext(gw.new_id(), "genai", "genai")))
    stream = method == "streamGenerateContent"

    def put_model(body: dict[str, Any]) -> None:
        body["model"] = model
        if stream:
            body["stream"] = True
        else:
            body.pop("stream", None)

    return await serve(request, op, _INGRESS[method], put_model)


async def list_models(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    ctx = RequestContext(gw.new_id(), "models", "genai")
    models: list[dict[str, Any]] = []
    for name, handle in sorted(gw.router.handles.items()):
        ops = handle.adapter.operations
        methods = [m for m, op in _OPS.items() if op in ops]
        models.extend(
            {
                "name": f"models/{name}/{model}",
                "displayName": f"{model} ({name})",
                "supportedGenerationMethods": methods,
            }
            for model in handle.listed_models
        )
    for group, plan in sorted(gw.router.groups.items()):  # model groups (config.json `model_groups`)
        if isinstance(plan, GroupPlan):
            ops = plan.orders[0][0][0].adapter.operations  # what the group's first target supports
            methods = [m for m, op in _OPS.items() if op in ops]
            models.append(
                {
                    "name": f"models/{group}",
                    "displayName": f"{group} (model group)",
                    "supportedGenerationMethods": methods,
                }
            )
    return web.Response(
        body=encode_json({"models": models}), content_type="application/json", headers=gateway_headers(ctx)
    )


def add_routes(app: web.Application) -> None:
    for prefix in PREFIXES:
        app.router.add_get(f"{prefix}/models", list_models)
        app.router.add_post(prefix + "/models/{tail:.+}", model_method)
