"""OpenAI-compatible ingress: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models.

Parse the body once, check only the fields routing and the endpoint need, hand everything else to the
provider untouched. Answers pass through byte for byte when the provider speaks OpenAI's format.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from runtime.codecs.sse import DONE
from runtime.core.accumulate import StreamAccumulator
from runtime.core.context import RequestContext
from runtime.core.gateway import Gateway, encode_json
from runtime.errors import GatewayError, InvalidRequest
from runtime.http.body import check_type, read_json_object, require
from runtime.http.drain import DRAIN, Drain
from runtime.http.errors import error_payload, error_response
from runtime.http.internal import internal_error
from runtime.http.keys import GATEWAY
from runtime.http.relay import (
    SSE_HEADERS,
    ClientWriter,
    cancelled,
    client_gone,
    end_stream_with_error,
    fail,
    gateway_headers,
)
from runtime.providers.base import CHAT, COMPLETIONS, EMBEDDINGS
from runtime.providers.common import content_parts, message_tool_calls
from runtime.wire import fields


def _validate(op: str, body: dict[str, Any]) -> None:
    """Check the types of the fields the gateway or a translating adapter reads, so a wrong type is a 400
    naming the field (never an exception inside a provider's request building). Unknown fields and
    content-part types pass through: the provider judges those."""
    if op == CHAT:
        messages = require(body, "messages", list)
        if not messages:
            raise_invalid("'messages' must contain at least one message", "messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise_invalid(f"'messages[{i}]' must be an object with a string 'role'", f"messages[{i}]")
            content_parts(m.get("content"), f"messages[{i}].content")
            for j, (_id, _name, arguments) in enumerate(message_tool_calls(m, f"messages[{i}]")):
                if arguments is not None and not isinstance(arguments, (str, dict)):
                    where = f"messages[{i}].tool_calls[{j}].function.arguments"
                    raise fields.invalid(where, "a JSON string", arguments)
            fields.maybe_str(m, "tool_call_id", f"messages[{i}]")
        fields.opt_objects(body, "tools")
        check_type(body, "tool_choice", (str, dict))
        check_type(body, "stop", (str, list))
        if isinstance(body.get("stop"), list):
            fields.strings(body["stop"], "stop")
        check_type(body, "response_format", dict)
    elif op == COMPLETIONS:
        _tokens_or_texts(require(body, "prompt", (str, list)), "prompt")
    elif op == EMBEDDINGS:
        _tokens_or_texts(require(body, "input", (str, list)), "input")
        fields.opt_int(body, "dimensions", minimum=1, maximum=fields.MAX_DIMENSIONS)
        fields.maybe_str(body, "encoding_format")
    fields.check_sampling(body)
    check_type(body, "stream", bool)
    check_type(body, "stream_options", dict)
    check_type(body, "user", str)


def _tokens_or_texts(value: Any, name: str) -> None:
    """A prompt or embeddings input: a string, or a list of strings, of token ids, or of token-id lists."""
    if isinstance(value, str):
        return
    for i, item in enumerate(value):
        if isinstance(item, str) or (isinstance(item, int) and not isinstance(item, bool)):
            continue
        if isinstance(item, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            continue
        raise fields.invalid(f"{name}[{i}]", "a string, a token id or a list of token ids", item)


def raise_invalid(message: str, param: str) -> None:
    raise InvalidRequest(message, param=param)


async def handle(request: web.Request, op: str) -> web.StreamResponse:
    gw: Gateway = request.app[GATEWAY]
    drain = request.app[DRAIN]
    ctx = RequestContext(gw.new_id(), op)
    drain.enter()
    try:
        raw, body = await read_json_object(request, gw.body_limit)
        ctx.input_raw = raw
        ctx.body = body
        targets = gw.targets(ctx, body)
        _validate(op, body)
        if body.get("stream") is True and op != EMBEDDINGS:
            ctx.stream = True
            options = body.get("stream_options")
            ctx.client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
            return await _stream(request, gw, drain, ctx, targets)
        result = await gw.complete(ctx, targets)
        ctx.usage = result.usage
        payload = result.raw if result.raw is not None else encode_json(result.data)
        ctx.output = payload
        ctx.status = 200
        return web.Response(body=payload, content_type="application/json", headers=gateway_headers(ctx))
    except GatewayError as err:
        fail(ctx, err)
        return error_response(err, ctx, gateway_headers(ctx))
    except asyncio.CancelledError:
        cancelled(ctx, drain)
        raise
    except web.HTTPException as exc:  # an answer aiohttp renders itself (none of ours today): not a bug
        ctx.status = exc.status
        raise
    except ConnectionError:  # the client went away while we read its request
        client_gone(ctx)
        raise
    except Exception:  # a bug of ours: still JSON, a 500 row, a /metrics count (runtime/http/internal.py)
        bug = internal_error(ctx)
        fail(ctx, bug)
        return error_response(bug, ctx, gateway_headers(ctx))
    finally:
        drain.leave()
        gw.finish(ctx)


async def _stream(
    request: web.Request, gw: Gateway, drain: Drain, ctx: RequestContext, targets: list
) -> web.StreamResponse:
    stream = await gw.open_stream(ctx, targets)  # a failure here is still a plain JSON error
    accumulate = None if gw.config.client.disable_content_logging else StreamAccumulator(gw.log_content_limit)
    wants_usage = ctx.client_wants_usage
    try:
        mark = ctx.begin_stream_body()  # the overhead header reports the time up to here
        response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **gateway_headers(ctx)})
        writer = ClientWriter(request, response, gw.config.client.stream_write_timeout_in_seconds)
    except BaseException:
        stream.close()
        raise
    drain.add_stream(stream)  # once per stream: a stop after the grace can end it with an error event
    try:
        await response.prepare(request)
        chunks: list[dict[str, Any]] | None = stream.first
        while chunks is not None:
            out = []
            for chunk in chunks:
                if accumulate is not None:
                    accumulate.add(chunk)
                # We asked upstream for usage so the log always has it; the client did not.
                if not wants_usage and chunk.pop("usage", None) is not None and not chunk.get("choices"):
                    continue
                out.append(b"data: " + encode_json(chunk) + b"\n\n")
            # Gateway overhead: this batch's work from its arrival to its write, minus any wait on the client.
            ctx.add_stream_work(mark, await writer.write(b"".join(out)) if out else 0)
            chunks = await stream.next()
            mark = stream.arrived_ns
        ctx.add_stream_work(mark, await writer.write(DONE))
        ctx.status = 200
    except GatewayError as err:
        # Bytes already reached the client: end the stream with an error event, never with [DONE].
        await end_stream_with_error(ctx, err, writer, _error_event(err, ctx))
    except ConnectionError:
        client_gone(ctx)
    except asyncio.CancelledError:
        cancelled(ctx, drain)
        raise
    except Exception:  # a bug of ours after the first byte: an error event, never a silent success
        if not response.prepared:
            raise  # nothing sent yet: the handler answers a plain JSON 500
        bug = internal_error(ctx)
        await end_stream_with_error(ctx, bug, writer, _error_event(bug, ctx))
    finally:
        drain.discard_stream(stream)
        stream.close()
        ctx.usage = stream.usage
        if accumulate is not None:
            ctx.output = accumulate.result()
    return response


def _error_event(err: GatewayError, ctx: RequestContext) -> bytes:
    return b"data: " + encode_json(error_payload(err, ctx)) + b"\n\n"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await handle(request, CHAT)


async def completions(request: web.Request) -> web.StreamResponse:
    return await handle(request, COMPLETIONS)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await handle(request, EMBEDDINGS)


async def list_models(request: web.Request) -> web.Response:
    gw: Gateway = request.app[GATEWAY]
    ctx = RequestContext(gw.new_id(), "models")
    data = []
    for name, handle_ in sorted(gw.router.handles.items()):
        owner = "bifrost-mock" if handle_.adapter.local else name
        for model in handle_.listed_models:
            data.append({"id": f"{name}/{model}", "object": "model", "created": 0, "owned_by": owner})
    return web.Response(
        body=encode_json({"object": "list", "data": data}),
        content_type="application/json",
        headers=gateway_headers(ctx),
    )


def add_routes(app: web.Application) -> None:
    for prefix in ("/v1", "/openai/v1"):
        app.router.add_post(f"{prefix}/chat/completions", chat_completions)
        app.router.add_post(f"{prefix}/completions", completions)
        app.router.add_post(f"{prefix}/embeddings", embeddings)
        app.router.add_get(f"{prefix}/models", list_models)
