"""The HTTP side of the one request pipeline, shared by every ingress (OpenAI, Anthropic, GenAI, Responses).

The order of steps (translation, hooks, routing, the attempt loop, pricing, on_finish) is the core's:
runtime/core/flow.py. `serve` runs it with an `AiohttpExchange`, which reads the body, sends a whole
answer, renders errors in the ingress's shape, and relays streams. There is one stream relay: chunk dicts
encoded in the client's format (observed by hooks, folded for the log), or, on the fast path, the
provider's own bytes (RawStream). Events are forwarded as they arrive; a failure after the first byte
ends the stream with the ingress's error event, never with a success marker.

An ingress supplies the translation (OpenAI's is the identity plus validation) and its own error shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any, Protocol

from aiohttp import web

from runtime.core import flow
from runtime.core.accumulate import RawAccumulator, StreamAccumulator
from runtime.core.context import RequestContext
from runtime.core.flow import client_gone, fail, internal_error
from runtime.core.gateway import Gateway
from runtime.core.rawstream import RawStream
from runtime.core.resume import Resume, bill_break, broken_attempt
from runtime.errors import ClientStalled, GatewayError, GatewayShutdown, InternalError
from runtime.http.body import read_json_object
from runtime.http.drain import DRAIN, Drain
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
    """One client-facing format. `to_internal` may raise InvalidRequest (400 in the ingress's shape);
    `routed` runs once the targets are known (checks that must come after the model's, body fix-ups that
    depend on the targets)."""

    name: str

    def to_internal(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def routed(self, body: dict[str, Any], targets: list) -> None: ...

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


class TranslatingIngress:
    """The base of ingresses that translate into the internal (OpenAI-shaped) body: once the targets are
    known, drop the native-only extensions if an OpenAI-format target is among them."""

    def routed(self, body: dict[str, Any], targets: list) -> None:
        if any(handle.adapter.kind in PASS_THROUGH_KINDS for handle, _model in targets):
            strip_extensions(body)


def gateway_headers(ctx: RequestContext) -> dict[str, str]:
    headers = {"x-request-id": ctx.id, "x-bf-overhead-us": str(ctx.overhead_us())}
    if ctx.response_headers:  # set by a hook (runtime/core/hooks.py); the gateway's own names win
        return {**ctx.response_headers, **headers}
    return headers


def fail_after_first_byte(ctx: RequestContext, err: GatewayError) -> None:
    """A stream broke after bytes reached the client: too late to fall back; record it as an attempt."""
    fail(ctx, err)
    ctx.attempts.append(broken_attempt(ctx, err))


def cancelled(ctx: RequestContext, drain: Drain) -> None:
    """The handler was cancelled: by aiohttp because the client went away, or by our own stop after the
    shutdown grace (then it is the gateway that ended the request, not the client)."""
    if drain.cutting:
        fail(ctx, drain.shutdown_error())
    else:
        client_gone(ctx)


class ClientWriter:
    """Writes a stream's bytes; a client that stops reading is ended after `timeout_s` (ClientStalled).

    aiohttp's `write` only ever waits when the socket's send buffer is over its high-water mark (the
    protocol is then paused until the client reads). So the deadline is armed only when this write could
    make it wait (already paused, or this write would cross the mark); the normal path adds no timer, just
    two cheap reads of the transport's state. `write` returns the nanoseconds spent waiting on the client,
    which the stream's gateway overhead leaves out.
    """

    __slots__ = ("_high", "_protocol", "_response", "_timeout_s", "_transport")

    def __init__(self, request: web.Request, response: web.StreamResponse, timeout_s: float) -> None:
        self._response = response
        self._protocol = request.protocol
        self._transport = request.transport
        self._timeout_s = timeout_s
        self._high = self._transport.get_write_buffer_limits()[1] if self._transport is not None else 0

    async def write(self, data: bytes) -> int:
        transport = self._transport
        if (
            transport is None
            or transport.is_closing()
            or (not self._protocol.writing_paused and transport.get_write_buffer_size() + len(data) <= self._high)
        ):
            await self._response.write(data)  # cannot wait on the client (or raises: it is gone)
            return 0
        start = perf_counter_ns()
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._response.write(data)
        except TimeoutError:
            raise self._stalled() from None
        return perf_counter_ns() - start

    def _stalled(self) -> ClientStalled:
        return ClientStalled(
            f"the client stopped reading the stream for {self._timeout_s:g}s (client.stream_write_timeout_in_seconds)"
        )

    def direct(self) -> Callable[[bytes], bool] | None:
        """A synchronous write for the streaming fast path (called from the upstream socket's callback),
        framing body bytes exactly as aiohttp's own writer does (HTTP/1.1 chunked or not); it returns
        whether the client's buffer is full (then wait for `drained`). None when the
        writer is not in the plain state this relies on: head not yet sent, compression, a declared
        length, or write callbacks (then the caller writes through aiohttp instead)."""
        pw: Any = getattr(self._response, "_payload_writer", None)
        transport = self._transport
        if (
            pw is None
            or transport is None
            or getattr(pw, "_compress", True) is not None
            or getattr(pw, "length", True) is not None
            or getattr(pw, "_headers_buf", True)
            or getattr(pw, "_on_chunk_sent", True) is not None
            or getattr(pw, "on_body_write", None) is not None
        ):
            return None
        protocol = self._protocol
        chunked = pw.chunked

        def write(data: bytes) -> bool:
            if transport.is_closing():
                raise ConnectionResetError("the client closed the connection")
            transport.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
            # Whether the client's buffer is now over its high-water mark (aiohttp paused writing). The
            # transport sends at once when it can, so the common case is one C call returning 0.
            return transport.get_write_buffer_size() > 0 and bool(protocol.writing_paused)

        return write

    async def drained(self) -> None:
        """Wait until the client reads its socket buffer down again, at most `timeout_s` (ClientStalled)."""
        if not self._protocol.writing_paused:
            return
        pw: Any = getattr(self._response, "_payload_writer", None)
        try:
            async with asyncio.timeout(self._timeout_s):
                await pw.drain()
        except TimeoutError:
            raise self._stalled() from None

    def abort(self) -> None:
        """Drop the connection without flushing (a stalled client would hold a graceful close forever)."""
        if self._transport is not None:
            self._transport.abort()


async def end_stream_with_error(
    ctx: RequestContext, err: GatewayError, writer: ClientWriter, event: bytes, recorded: bool = False
) -> None:
    """A stream failed after its first byte: record it (unless `recorded`: mid-stream recovery already listed
    the attempt), then end it with the client format's error event."""
    if isinstance(err, ClientStalled):
        fail(ctx, err)
        writer.abort()
        return
    if recorded or isinstance(err, (GatewayShutdown, InternalError)):
        fail(ctx, err)  # not an upstream attempt
    else:
        fail_after_first_byte(ctx, err)
    try:
        await writer.write(event)
    except ClientStalled:
        writer.abort()
    except ConnectionError:
        pass


class AiohttpExchange:
    """The HTTP side of one request for the core pipeline (runtime/core/flow.py `Exchange`)."""

    __slots__ = ("_drain", "_gw", "_ingress", "_request", "ctx")

    def __init__(self, request: web.Request, gw: Gateway, drain: Drain, ctx: RequestContext, ingress: Ingress) -> None:
        self._request = request
        self._gw = gw
        self._drain = drain
        self._ingress = ingress
        self.ctx = ctx

    async def read_body(self) -> tuple[bytes, dict[str, Any]]:
        return await read_json_object(self._request, self._gw.body_limit)

    def answer(self, result: ParsedResponse) -> web.Response:
        ctx = self.ctx
        ctx.usage = result.usage
        payload = self._ingress.respond(result, ctx)
        ctx.output = payload
        ctx.status = 200
        return web.Response(body=payload, content_type="application/json", headers=gateway_headers(ctx))

    async def stream(self, stream: Any) -> web.StreamResponse:
        return await _stream(self._request, self._gw, self._drain, self.ctx, stream, self._ingress)

    async def deliver(self, response: web.StreamResponse) -> None:
        if self._gw.before_reply is not None:
            return  # the durable log: serve() puts the row on disk first, then aiohttp sends the answer
        try:
            # What aiohttp does with a returned response, done here so that it happens before on_finish;
            # aiohttp's own prepare and write_eof then find the response sent and do nothing.
            await response.prepare(self._request)
            await response.write_eof()
        except ConnectionError:
            pass  # the client left: aiohttp's write_eof meets the same error and closes the connection

    def error(self, err: GatewayError) -> web.Response:
        return self._ingress.error_response(err, self.ctx, gateway_headers(self.ctx))

    def sent(self, response: web.StreamResponse) -> bool:
        return response.prepared

    def cancelled(self) -> None:
        cancelled(self.ctx, self._drain)

    def framework_status(self, exc: Exception) -> int | None:
        return exc.status if isinstance(exc, web.HTTPException) else None


async def serve(
    request: web.Request, op: str, ingress: Ingress, body_hook: Callable[[dict[str, Any]], None] | None = None
) -> web.StreamResponse:
    """Answer one request of operation `op` in `ingress`'s format, through the core pipeline
    (runtime/core/flow.py). `body_hook` adjusts the client's body before translation (e.g. the model and
    stream flag that GenAI puts in the URL)."""
    gw: Gateway = request.app[GATEWAY]
    drain = request.app[DRAIN]
    ctx = RequestContext(gw.new_id(), op, ingress.name)
    ctx.headers = request.headers
    drain.enter()
    try:
        response: web.StreamResponse = await flow.handle(
            gw, ctx, ingress, AiohttpExchange(request, gw, drain, ctx, ingress), body_hook
        )
        if gw.before_reply is not None:  # the row is on disk before the answer leaves (a kill loses neither)
            gw.before_reply()
        return response
    finally:
        drain.leave()


async def _stream(
    request: web.Request, gw: Gateway, drain: Drain, ctx: RequestContext, stream: Any, ingress: Ingress
) -> web.StreamResponse:
    """Relay an opened stream to the client: the provider's ChunkStream or a hook's AnswerStream (chunk
    dicts, encoded in the ingress's format), or a RawStream (the fast path: the provider's own bytes)."""
    raw = isinstance(stream, RawStream)
    accumulate: Any = None
    if not gw.config.client.disable_content_logging:
        accumulate = (RawAccumulator if raw else StreamAccumulator)(gw.log_content_limit)
    try:
        encoder = ingress.encoder(ctx)
        mark = ctx.begin_stream_body()  # the overhead header reports the time up to here
        response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **gateway_headers(ctx)})
        writer = ClientWriter(request, response, gw.config.client.stream_write_timeout_in_seconds)
    except BaseException:
        stream.close()
        raise
    drain.add_stream(stream)  # once per stream: a stop after the grace can end it with an error event
    resume: Resume | None = ctx.resume  # mid-stream recovery (runtime/core/resume.py); None: off
    broken: dict[str, Any] | None = None  # the attempt entry of a stream that broke and was not continued
    try:
        await response.prepare(request)
        # An output guard's filter (runtime/guardrails/) sees each batch before anyone else: what it holds
        # back or masks is what the observers, the log and the client get. One per stream, continuations
        # included.
        guard = None if ctx.guard is None else ctx.guard.stream_filter(ctx)
        observers = gw.hooks.chunk if ctx.observers is None else (*gw.hooks.chunk, *ctx.observers)
        if resume is not None:
            observers = (*observers, resume.observe)  # what the client got, should the stream break
        while True:
            try:
                if raw:
                    keep = accumulate.add if accumulate is not None else None
                    if resume is not None:
                        keep = _both(keep, resume.keep_raw(stream.first))
                    await _relay_bytes(ctx, stream, writer, mark, keep)
                else:
                    await _relay_chunks(ctx, stream, writer, mark, encoder, accumulate, observers, guard)
                break
            except GatewayError as err:
                continued = None if resume is None else await resume.recover(ctx, stream, err)
                if continued is None:
                    raise
                # The rest of the answer comes from the next target, as chunks through the same encoder. It
                # goes on from what the client received: an output guard drops what it held back unsent.
                if guard is not None:
                    guard.restart()
                drain.discard_stream(stream)
                stream.close()
                stream = continued
                drain.add_stream(stream)
                if raw:
                    raw = False
                    if accumulate is not None:
                        accumulate = accumulate.as_chunks()
                mark = perf_counter_ns()
        ctx.status = 200
    except GatewayError as err:
        recorded = resume is not None and resume.recorded is err  # the break is already an attempt
        await end_stream_with_error(ctx, err, writer, encoder.error(err, ctx), recorded)
        if not recorded and ctx.attempts and ctx.attempts[-1].get("after_first_byte"):
            broken = ctx.attempts[-1]  # billed below, once the stream's last usage is known
    except ConnectionError:
        client_gone(ctx)
    except asyncio.CancelledError:
        cancelled(ctx, drain)
        raise
    except Exception:  # a bug of ours after the first byte: an error event, never a silent success
        if not response.prepared:
            raise  # nothing sent yet: the handler answers a plain JSON 500
        bug = internal_error(ctx)
        await end_stream_with_error(ctx, bug, writer, encoder.error(bug, ctx))
    finally:
        drain.discard_stream(stream)
        stream.close()
        ctx.usage = stream.usage
        if resume is not None and resume.billed:  # usage and cost: the sums over every billed attempt
            resume.settle(ctx, stream, "responses" if ctx.ingress == "responses" else ctx.endpoint)
        elif broken is not None:  # what a broken stream billed: its usage, else an estimate from its text
            bill_break(ctx, broken, stream.usage, accumulate.result() if accumulate is not None else None)
        ctx.skipped_events = getattr(stream, "skipped", 0)  # a hook's AnswerStream has none
        if accumulate is not None:
            ctx.output = accumulate.result()
    return response


def _both(first: Callable[[bytes], None] | None, second: Callable[[bytes], None]) -> Callable[[bytes], None]:
    if first is None:
        return second

    def keep(data: bytes) -> None:
        first(data)
        second(data)

    return keep


async def _relay_chunks(
    ctx: RequestContext,
    stream: Any,
    writer: ClientWriter,
    mark: int,
    encoder: StreamEncoder,
    accumulate: StreamAccumulator | None,
    observers: tuple[Callable[[RequestContext, dict[str, Any]], None], ...],
    guard: Any = None,
) -> None:
    """Chunk dicts: filtered by the output guard (if any), observed by the hooks, folded for the log, encoded
    in the client's format. What one upstream read brings is written at once; what the guard held back goes
    out when the stream ends (its `finish`)."""
    rid = ""
    chunks: list[dict[str, Any]] | None = stream.first
    while True:
        if guard is not None:
            if chunks is None:
                chunks = await guard.finish()
                guard = None
            else:
                chunks = await guard.feed(chunks)
        if chunks is None:
            break
        out = []
        for chunk in chunks:
            rid = rid or str(chunk.get("id") or "")
            if observers:  # an empty stage costs one truth test per chunk
                for observe in observers:
                    observe(ctx, chunk)
            if accumulate is not None:
                accumulate.add(chunk)
            out.append(encoder.encode(chunk))
        data = b"".join(out)
        ctx.add_stream_work(mark, await writer.write(data) if data else 0)
        chunks = await stream.next()
        mark = stream.arrived_ns
    ctx.add_stream_work(mark, await writer.write(encoder.end(stream.usage, rid)))


async def _relay_bytes(
    ctx: RequestContext, stream: RawStream, writer: ClientWriter, mark: int, keep: Callable[[bytes], None] | None
) -> None:
    """The fast path: the provider's bytes, forwarded from the upstream socket's callback (RawStream.pump);
    `keep` receives them as the provider sent them (the request log's fold, mid-stream recovery's).
    The first write goes through aiohttp (it carries the buffered response head); the rest are direct."""
    if keep is not None and stream.first:
        keep(stream.source)
    ctx.add_stream_work(mark, await writer.write(stream.first) if stream.first else 0)
    direct = writer.direct()
    if direct is not None:
        await stream.pump(ctx, direct, writer.drained, keep)
        return
    # aiohttp's writer is not in the state the direct path relies on: the same bytes, written by this task.
    while (data := await stream.next()) is not None:
        mark = stream.arrived_ns
        if keep is not None:
            keep(stream.source)
        ctx.add_stream_work(mark, await writer.write(data))
