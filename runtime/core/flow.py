"""The one request pipeline: the order of one request's steps, the same for every ingress.

    body -> ingress.to_internal -> pre-hooks -> targets -> ingress.routed
         -> complete | open_stream (or a pre-hook's answer)  -> the client's answer or stream
         -> price -> post-hooks -> the answer sent -> on_finish (exactly once)

With no post-hooks, pricing waits until the answer is sent too: only post-hooks (budgets) and on_finish
read the cost, and work done before the send is latency the client waits for.

What is HTTP stays in runtime/http/: reading the body, writing an answer, relaying a stream, rendering an
error in the client's format. The relay hands those over as an `Exchange` (runtime/http/relay.py), and
an ingress (OpenAI, Anthropic, GenAI, Responses) supplies the translation. Everything in between is
here: when hooks run and what they may change, routing, the attempt loop (runtime/core/pipeline.py),
the outcome recorded on the context, and the error rules (docs/architecture.md has the diagram):
- A GatewayError anywhere before the first byte is the ingress's error answer with its status.
- A bug (an unexpected exception, ours or a hook's) is a JSON 500 `internal_error`, logged with its
  traceback under the request id. on_finish still runs.
- The client leaving (cancellation, a broken connection) is a 499 row; the gateway's own stop after
  the shutdown grace is a 503 row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from runtime.core.context import RequestContext
from runtime.core.cost import price
from runtime.core.gateway import Gateway
from runtime.core.hooks import AnswerStream
from runtime.errors import GatewayError, InternalError
from runtime.providers.base import EMBEDDINGS, ParsedResponse

log = logging.getLogger("bifrost")


class Translator(Protocol):
    """What the pipeline needs of an ingress: the client's body in, the internal (OpenAI-shaped) body out."""

    name: str

    def to_internal(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def routed(self, body: dict[str, Any], targets: list) -> None: ...


class Exchange(Protocol):
    """The HTTP side of one request. Each method that answers returns the framework's response object,
    which `handle` returns untouched."""

    async def read_body(self) -> tuple[bytes, dict[str, Any]]:
        """The raw body and its JSON object. Raises GatewayError for a body the gateway refuses."""
        ...

    def answer(self, result: ParsedResponse) -> Any:
        """Send `result` whole in the client's format (sets ctx.output and ctx.status)."""
        ...

    async def stream(self, stream: Any) -> Any:
        """Relay an opened stream (ChunkStream, RawStream or a hook's AnswerStream) to the client, recording
        its outcome on the context (a failure after the first byte ends it with an error event)."""
        ...

    def error(self, err: GatewayError) -> Any:
        """The client format's error answer for `err`."""
        ...

    async def deliver(self, response: Any) -> None:
        """Send a whole answer (an `answer` or `error` response) to the client now, so that on_finish (the
        log row, metrics) runs after the client has its bytes rather than before. May do nothing (then the
        framework sends it after `handle` returns); never raises for a client that has gone."""
        ...

    def sent(self, response: Any) -> bool:
        """Whether bytes of `response` already reached the client (then it can no longer become an error)."""
        ...

    def cancelled(self) -> None:
        """The request's task is being cancelled: record who ended it (client or shutdown)."""
        ...

    def framework_status(self, exc: Exception) -> int | None:
        """The status of an answer the HTTP framework renders itself (re-raised), else None."""
        ...


def fail(ctx: RequestContext, err: GatewayError) -> None:
    ctx.status = err.status
    ctx.error = err.message
    ctx.error_type = err.type


def client_gone(ctx: RequestContext) -> None:
    ctx.status = 499
    ctx.error = "client disconnected before the response was complete"
    ctx.error_type = "client_closed_request"


def internal_error(ctx: RequestContext) -> InternalError:
    """Call from an `except Exception` block: logs the traceback under the request id."""
    log.exception("internal error in request %s (%s %s)", ctx.id, ctx.ingress, ctx.endpoint)
    return InternalError(ctx.id)


async def _guarded(ctx: RequestContext, result: ParsedResponse) -> ParsedResponse:
    """The answer as the request's output guard lets it out (changed, or refused with a GatewayError). Its
    usage is recorded first: a refused answer was still generated, and billed."""
    ctx.usage = result.usage
    checked: ParsedResponse = await ctx.guard.check_response(ctx, result)
    return checked


async def handle(
    gw: Gateway,
    ctx: RequestContext,
    ingress: Translator,
    exchange: Exchange,
    body_hook: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    """Answer one request. `body_hook` adjusts the client's body before translation (e.g. the model and
    stream flag that GenAI puts in the URL). on_finish runs exactly once, whatever happens."""
    hooks = gw.hooks
    result: ParsedResponse | None = None
    try:
        try:
            raw, body = await exchange.read_body()
            ctx.input_raw = raw
            if body_hook is not None:
                body_hook(body)
            internal = ctx.body = ingress.to_internal(body)
            if internal.get("stream") is True and ctx.endpoint != EMBEDDINGS:
                ctx.stream = True
                options = internal.get("stream_options")  # read by the OpenAI encoder (usage chunk or not)
                ctx.client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
            answer = None
            if hooks.pre:
                model = internal.get("model")
                ctx.model_requested = model if isinstance(model, str) else ""
                answer = await hooks.run_pre(ctx)
                internal = ctx.body  # a hook may have replaced it (or changed the model and fallbacks in it)
            if answer is None:
                targets = gw.targets(ctx, internal)
                ingress.routed(internal, targets)
                if ctx.stream:
                    # The fast path (bytes forwarded as the provider sent them) needs the client to speak
                    # OpenAI SSE and no hook to observe chunks. A failure opening the stream is still a
                    # plain error answer: nothing was sent yet, so fallbacks were still allowed.
                    passthrough = (
                        ingress.name == "openai" and not hooks.chunk and ctx.observers is None and ctx.guard is None
                    )
                    response = await exchange.stream(await gw.open_stream(ctx, targets, passthrough))
                else:
                    result = await gw.complete(ctx, targets)
                    if ctx.guard is not None:
                        result = await _guarded(ctx, result)
                    response = exchange.answer(result)
            else:
                ingress.routed(internal, [])  # the checks an ingress makes once routed (none: a hook answered)
                if isinstance(answer, ParsedResponse):
                    result = answer if ctx.guard is None else await _guarded(ctx, answer)
                    response = exchange.answer(result)
                else:
                    response = await exchange.stream(await AnswerStream(answer).start())
        except GatewayError as err:
            fail(ctx, err)
            response = exchange.error(err)
        except asyncio.CancelledError:
            exchange.cancelled()
            raise
        except ConnectionError:  # the client went away while we read its request
            client_gone(ctx)
            raise
        except Exception as exc:  # a bug of ours (or a hook's): the ingress's JSON shape, a 500 row
            status = exchange.framework_status(exc)
            if status is not None:  # an answer the framework renders itself (none of ours today)
                ctx.status = status
                raise
            bug = internal_error(ctx)
            fail(ctx, bug)
            response = exchange.error(bug)
        if hooks.post:
            _price(ctx, gw)  # budget hooks charge the cost
            try:
                await hooks.run_post(ctx, result if ctx.status == 200 else None)
            except Exception as exc:  # an answer not yet sent becomes the error; a sent stream is only recorded
                refusal = exc if isinstance(exc, GatewayError) else internal_error(ctx)
                fail(ctx, refusal)
                if not exchange.sent(response):
                    response = exchange.error(refusal)
        try:
            if not exchange.sent(response):
                await exchange.deliver(response)
        finally:
            if not hooks.post:
                _price(ctx, gw)  # for the log and metrics only: after the client has its answer
        return response
    finally:
        gw.finish(ctx)


def _price(ctx: RequestContext, gw: Gateway) -> None:
    """The cost of every answer with usage (a refused answer was still generated, and is billed)."""
    if ctx.usage is not None:
        price(ctx, gw.config.providers)
