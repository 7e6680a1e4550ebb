"""The hook contract and its runner: what a plugin may implement, and when the pipeline calls it.

A plugin is any object with a `name` and any of these methods (docs/architecture.md has the diagram):

- `async pre_hook(ctx) -> None | ParsedResponse | AsyncIterator[dict]` runs in plugin order BEFORE
  routing. It sees `ctx.ingress`, `ctx.endpoint`, `ctx.headers` (the request's, read-only), `ctx.body`
  (the internal OpenAI-shaped body, with its `model` and `fallbacks`), `ctx.stream` and `ctx.caller`.
  It may change the route (assign `ctx.body["model"]` / `ctx.body["fallbacks"]`), change or replace
  `ctx.body`, set `ctx.caller`, refuse by raising a GatewayError (rendered in the ingress's error shape),
  add answer headers (`ctx.response_headers`, a dict it creates: sent on the answer, errors included),
  or answer at once: a ParsedResponse is sent as the ingress's JSON answer, an async iterator of
  OpenAI-shaped chunk dicts as the ingress's stream (so one replay serves every client format). The
  first answer or refusal ends the stage: later pre-hooks and the provider are skipped.
- `async post_hook(ctx, response) -> None` runs in reverse plugin order after the outcome, success or
  failure, streaming or not (after a stream's last byte), for plugins whose pre-hook ran (plugins without
  a pre-hook always). `response` is the ParsedResponse of a successful non-streaming answer, else None;
  status, error, usage, cost (`ctx.cost`, dollars, None when unpriced), output and timings are on ctx.
- `on_chunk(ctx, chunk) -> None` (synchronous) sees every chunk dict of a stream before it is encoded;
  raising GatewayError stops the stream with the ingress's error event. A plugin that needs chunks for
  some requests only appends an observer of the same signature to `ctx.observers` in its pre-hook
  instead, so that every other stream keeps the fast path (bytes forwarded, no chunk dicts built).
- A pre-hook that answers may set `ctx.provider`, `ctx.model` and `ctx.cost` (e.g. 0.0 for a cache hit):
  the pipeline prices only an answer whose cost is still None.
- A pre-hook may set `ctx.guard`, the request's output guard (runtime/guardrails/): `async
  check_response(ctx, result) -> ParsedResponse` sees a whole answer before it is sent (returns it, changed
  or not; raises GatewayError to refuse it), and `stream_filter(ctx)` gives a filter whose `async
  feed(chunks) -> chunks` and, at the stream's end, `async finish() -> chunks` see every batch of a stream
  before observers, the log and the encoder (it may hold text back, mask it, or raise GatewayError to end
  the stream with the ingress's error event). A guarded stream leaves the fast path.
- `on_finish(ctx) -> None` (synchronous, must not block) runs exactly once when the request is over,
  whatever happened.

The runner freezes, at start-up, one tuple per stage of the methods plugins actually have; the pipeline
checks a tuple's truth before entering its stage, so an empty stage costs nothing per request or chunk.
An unexpected exception in a hook is a bug: the pipeline answers a JSON 500 internal_error in the
ingress's shape, and on_finish still runs. The core never imports a plugin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from time import perf_counter_ns
from typing import Any, Protocol, runtime_checkable

from runtime.core.context import RequestContext
from runtime.errors import GatewayError
from runtime.providers.base import ParsedResponse, Usage

# What a pre-hook may answer with instead of the provider.
Answer = ParsedResponse | AsyncIterator[dict[str, Any]]


@runtime_checkable
class Plugin(Protocol):
    name: str


class Hooks:
    """The frozen per-stage hook tuples of an ordered plugin list."""

    __slots__ = ("chunk", "finish", "plugins", "post", "pre")

    def __init__(self, plugins: list[Any]) -> None:
        self.plugins = tuple(plugins)
        self.pre: tuple[tuple[int, Callable[[RequestContext], Awaitable[Any]]], ...] = tuple(
            (i, p.pre_hook) for i, p in enumerate(plugins) if hasattr(p, "pre_hook")
        )
        self.post: tuple[tuple[int, bool, Callable[..., Awaitable[None]]], ...] = tuple(
            (i, hasattr(p, "pre_hook"), p.post_hook)
            for i, p in reversed(list(enumerate(plugins)))
            if hasattr(p, "post_hook")
        )
        self.chunk: tuple[Callable[[RequestContext, dict[str, Any]], None], ...] = tuple(
            p.on_chunk for p in plugins if hasattr(p, "on_chunk")
        )
        self.finish: tuple[Callable[[RequestContext], None], ...] = tuple(
            p.on_finish for p in plugins if hasattr(p, "on_finish")
        )

    async def run_pre(self, ctx: RequestContext) -> Answer | None:
        """Pre-hooks in order; the first answer ends the stage (a raise ends it too)."""
        for i, hook in self.pre:
            ctx.pre_ran = i + 1  # plugins before index i+1 count as having run, the raising one included
            answer = await hook(ctx)
            if answer is not None:
                return answer  # type: ignore[no-any-return]
        ctx.pre_ran = len(self.plugins)
        return None

    async def run_post(self, ctx: RequestContext, response: ParsedResponse | None) -> None:
        ran = ctx.pre_ran
        for i, has_pre, hook in self.post:
            if i < ran or not has_pre:
                await hook(ctx, response)

    def on_finish(self, ctx: RequestContext) -> None:
        for hook in self.finish:
            hook(ctx)


class AnswerStream:
    """A pre-hook's async iterator of chunk dicts, with the interface the relay reads from an upstream
    ChunkStream (`first`, `next`, `usage`, `arrived_ns`, `interrupt`, `close`)."""

    __slots__ = ("_chunks", "_interrupted", "arrived_ns", "first", "usage")

    def __init__(self, chunks: AsyncIterator[dict[str, Any]]) -> None:
        self._chunks = chunks
        self._interrupted: GatewayError | None = None
        self.first: list[dict[str, Any]] = []
        self.usage: Usage | None = None
        self.arrived_ns = 0

    async def start(self) -> AnswerStream:
        batch = await self.next()
        self.first = batch or []
        return self

    async def next(self) -> list[dict[str, Any]] | None:
        if self._interrupted is not None:
            raise self._interrupted
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            return None
        self.arrived_ns = perf_counter_ns()
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_openai(usage)
        return [chunk]

    def interrupt(self, err: GatewayError) -> None:
        self._interrupted = err

    def close(self) -> None:
        pass  # an async generator left unfinished is closed by the garbage collector's finalizer
