"""The request flow every translating ingress (Anthropic, GenAI, Responses) shares.

    read body -> ingress.to_internal -> gateway targets -> complete | open_stream -> ingress.respond / encoder

An ingress supplies the translation and its own error shape; this module owns the order of things, the
request context, the log fields and the stream relay (events forwarded as they arrive, a failure after
the first byte ends the stream with the ingress's error event, never with a success marker).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from runtime.core.accumulate import StreamAccumulator
from runtime.core.context import RequestContext
from runtime.core.gateway import Gateway
from runtime.errors import GatewayError
from runtime.http.body import read_json_object
from runtime.http.keys import GATEWAY
from runtime.providers.base import ParsedResponse, Usage

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class StreamEncoder(Protocol):
    def encode(self, chunk: dict[str, Any]) -> bytes: ...

    def end(self, usage: Usage | None, rid: str = "") -> bytes: ...

    def error(self, err: GatewayError, ctx: RequestContext) -> bytes: ...


class Ingress(Protocol):
    """One client-facing format. `to_internal` may raise InvalidRequest (400 in the ingress's shape)."""

    name: str

    def to_internal(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def respond(self, result: ParsedResponse, ctx: RequestContext) -> bytes: ...

    def encoder(self, ctx: RequestContext) -> StreamEncoder: ...

    def error_response(self, err: GatewayError, ctx: RequestContext, headers: dict[str, str]) -> web.Response: ...


# Formats whose adapters forward the internal body as is: they must not see fields that only native
# adapters understand (OpenAI rejects unknown parameters). The body is shared by all targets of a request,
# so with such a target anywhere in the fallback chain the extensions are dropped for all of them.
PASS_THROUGH_KINDS = frozenset(("openai", "azure"))
_TOP_LEVEL_EXTENSIONS = (
    "thinking",
    "thinking_config",
    "top_k",
    "safety_settings",
    "task_type",
    "input_type",
    "anthropic_beta",
)
_MESSAGE_EXTENSIONS = ("cache_control", "is_error")


def strip_extensions(body: dict[str, Any]) -> None:
    """Remove the fields ingress translation adds for native providers (cache_control, thinking, ...)."""
    for name in _TOP_LEVEL_EXTENSIONS:
        body.pop(name, None)
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            tool.pop("cache_control", None)
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        for name in _MESSAGE_EXTENSIONS:
            message.pop(name, None)
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    part.pop("cache_control", None)


def gateway_headers(ctx: RequestContext) -> dict[str, str]:
    return {"x-request-id": ctx.id, "x-bf-overhead-us": str(ctx.overhead_us())}


def fail(ctx: RequestContext, err: GatewayError) -> None:
    ctx.status = err.status
    ctx.error = err.message
    ctx.error_type = err.type


def fail_after_first_byte(ctx: RequestContext, err: GatewayError) -> None:
    """A stream broke after bytes reached the client: too late to fall back; record it as an attempt."""
    fail(ctx, err)
    entry = err.describe()
    entry.update(
        provider=ctx.provider,
        model=ctx.model,
        key=ctx.key_name,
        fallback_index=ctx.fallback_index,
        after_first_byte=True,
    )
    ctx.attempts.append(entry)


def client_gone(ctx: RequestContext) -> None:
    ctx.status = 499
    ctx.error = "client disconnected before the response was complete"
    ctx.error_type = "client_closed_request"


async def serve(
    request: web.Request, op: str, ingress: Ingress, body_hook: Callable[[dict[str, Any]], None] | None = None
) -> web.StreamResponse:
    """Answer one request of operation `op` in `ingress`'s format. `body_hook` adjusts the client's body
    before translation (e.g. the model and stream flag that GenAI puts in the URL)."""
    gw: Gateway = request.app[GATEWAY]
    ctx = RequestContext(gw.new_id(), op, ingress.name)
    try:
        raw, body = await read_json_object(request, gw.body_limit)
        ctx.input_raw = raw
        if body_hook is not None:
            body_hook(body)
        internal = ingress.to_internal(body)
        ctx.body = internal
        targets = gw.targets(ctx, internal)
        if any(handle.adapter.kind in PASS_THROUGH_KINDS for handle, _model in targets):
            strip_extensions(internal)
        if internal.get("stream") is True:
            ctx.stream = True
            return await _stream(request, gw, ctx, targets, ingress)
        result = await gw.complete(ctx, targets)
        ctx.usage = result.usage
        payload = ingress.respond(result, ctx)
        ctx.output = payload
        ctx.status = 200
        return web.Response(body=payload, content_type="application/json", headers=gateway_headers(ctx))
    except GatewayError as err:
        fail(ctx, err)
        return ingress.error_response(err, ctx, gateway_headers(ctx))
    except asyncio.CancelledError:
        client_gone(ctx)
        raise
    finally:
        gw.finish(ctx)


async def _stream(
    request: web.Request, gw: Gateway, ctx: RequestContext, targets: list, ingress: Ingress
) -> web.StreamResponse:
    stream = await gw.open_stream(ctx, targets)  # a failure here is still a plain JSON error
    accumulate = None if gw.config.client.disable_content_logging else StreamAccumulator(gw.log_content_limit)
    encoder = ingress.encoder(ctx)
    response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **gateway_headers(ctx)})
    rid = ""
    try:
        await response.prepare(request)
        chunks: list[dict[str, Any]] | None = stream.first
        while chunks is not None:
            out = []
            for chunk in chunks:
                rid = rid or str(chunk.get("id") or "")
                if accumulate is not None:
                    accumulate.add(chunk)
                out.append(encoder.encode(chunk))
            data = b"".join(out)
            if data:
                await response.write(data)
            chunks = await stream.next()
        await response.write(encoder.end(stream.usage, rid))
        ctx.status = 200
    except GatewayError as err:
        fail_after_first_byte(ctx, err)
        with contextlib.suppress(ConnectionError):
            await response.write(encoder.error(err, ctx))
    except ConnectionError:
        client_gone(ctx)
    except asyncio.CancelledError:
        client_gone(ctx)
        raise
    finally:
        stream.close()
        ctx.usage = stream.usage
        if accumulate is not None:
            ctx.output = accumulate.result()
    return response
