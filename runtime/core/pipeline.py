"""The engine: run one request against its targets (primary, then fallbacks) with lanes, keys and
retries, timing every stage into the RequestContext.

    for each target (primary, fallbacks...), skipping one whose breaker is open (runtime/core/health.py;
    all open: the least bad one is still tried):
        for each attempt (1 + max_retries), each outcome and latency recorded in the breakers:
            lane slot -> key -> adapter.build_request -> encode -> upstream -> adapter.parse_*
            on failure: record the attempt; retry after backoff / Retry-After, or move on
    all failed -> raise the primary's error; every attempt is listed in ctx.attempts

Streams are opened the same way, and an opened stream only counts as a success once its first events
parsed; until then nothing has reached the client, so falling back is still allowed. After that, a
failure is the ingress's to report as an error event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from time import perf_counter_ns
from typing import Any

import aiohttp

from runtime.config.model import KeyConfig
from runtime.core.context import RequestContext
from runtime.core.failover import (
    KEY_COOLDOWN_S,
    LARGER_CONTEXT,
    NEXT_KEY,
    NO_RULES,
    RETRY,
    RETRY_AFTER,
    RETURN,
    RunRules,
    action_for,
    deadline_passed,
    error_class,
)
from runtime.core.health import least_bad
from runtime.core.rawstream import LINGER_S, RawStream
from runtime.core.retry import retry_delay
from runtime.core.router import ProviderHandle, Router
from runtime.core.upstream import TRANSPORT_ERRORS, first_token_timeout, incomplete_stream, transport_error
from runtime.errors import GatewayError, UnknownModel, UnsupportedOperation, UpstreamTimeout
from runtime.net.client import HTTPClient, Response
from runtime.providers.base import ParsedResponse, StreamTranslator, UpstreamRequest, Usage

Encoder = Callable[[Any], bytes]


class ChunkStream:
    """An opened stream: the events parsed so far, and more on demand. Holds a lane slot until closed."""

    __slots__ = (
        "_closed",
        "_idle_s",
        "_interrupted",
        "_lane",
        "_provider",
        "_response",
        "_translator",
        "arrived_ns",
        "first",
        "usage",
    )

    def __init__(
        self,
        first: list[dict[str, Any]],
        translator: StreamTranslator | None,
        response: Response | None,
        lane: Any,
        provider: str,
        idle_s: float,
        usage: Usage | None = None,
    ) -> None:
        self.first = first
        self._translator = translator
        self._response = response
        self._lane = lane
        self._provider = provider
        self._idle_s = idle_s
        self._closed = False
        self._interrupted: GatewayError | None = None
        self.usage = usage if translator is None else translator.usage
        # When the last read returned (perf_counter_ns): where the relay starts counting its own work.
        self.arrived_ns = 0

    async def next(self) -> list[dict[str, Any]] | None:
        """The next batch of events; None once the upstream ended properly. Raises GatewayError."""
        translator = self._translator
        if translator is None or self._response is None:
            self.arrived_ns = perf_counter_ns()
            return None
        while True:
            if self._interrupted is not None:
                raise self._interrupted
            if translator.finished:
                self.usage = translator.usage
                return None
            try:
                data = await self._response.readany()
            except TRANSPORT_ERRORS as exc:
                if self._interrupted is not None:
                    raise self._interrupted from None
                raise transport_error(exc, self._provider, "stream data", self._idle_s) from None
            self.arrived_ns = perf_counter_ns()
            if not data:
                tail = translator.close()
                self.usage = translator.usage
                if not translator.finished:
                    raise incomplete_stream(self._provider)
                return tail or None
            chunks = translator.feed(data)
            self.usage = translator.usage
            if chunks:
                return chunks

    @property
    def skipped(self) -> int:
        """Malformed events the translator dropped so far (0 for formats that never skip)."""
        return getattr(self._translator, "skipped", 0)

    def interrupt(self, err: GatewayError) -> None:
        """End the stream from outside (gateway shutdown): a `next()` waiting on the upstream, or the next
        call, raises `err`, so the relay's normal tail writes the client's error event and logs it."""
        if self._closed or self._interrupted is not None:
            return
        self._interrupted = err
        response = self._response
        if response is not None:
            response._fail(err)  # wakes a pending readany(), which raises err; close() then drops the socket

    def close(self) -> None:
        """Release the lane slot and the upstream connection (closing it if the body was not finished,
        which tells the provider to stop generating)."""
        if self._closed:
            return
        self._closed = True
        if self._response is not None:
            if self._translator is not None and self._translator.finished:
                self._response.release_when_done(LINGER_S)
            else:
                self._response.close()  # tells the provider to stop generating
        if self._lane is not None:
            self._lane.release()


class Engine:
    __slots__ = ("client", "encode", "router", "session")

    def __init__(
        self, router: Router, client: HTTPClient | None, encode: Encoder, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.router = router
        self.client = client  # the hot-path upstream client
        self.session = session  # aiohttp, for adapters' auxiliary calls (token fetches)
        self.encode = encode

    # -- the attempt loop ----------------------------------------------------------------------------
    async def complete(
        self, ctx: RequestContext, targets: list[tuple[ProviderHandle, str]], rules: RunRules | None = None
    ) -> ParsedResponse:
        return await self._run(ctx, targets, self._complete_once, rules or NO_RULES)

    async def open_stream(
        self,
        ctx: RequestContext,
        targets: list[tuple[ProviderHandle, str]],
        passthrough: bool = False,
        rules: RunRules | None = None,
    ) -> ChunkStream | RawStream:
        """Open a stream on the first target that starts one. With `passthrough` (the client speaks OpenAI SSE
        and no hook observes chunks), a target whose adapter has a pass-through scanner gives a RawStream
        (bytes forwarded as they are, runtime/core/rawstream.py); any other target a ChunkStream."""
        once = self._open_raw_once if passthrough else self._open_stream_once
        return await self._run(ctx, targets, once, rules or NO_RULES)

    async def _run(
        self, ctx: RequestContext, targets: list[tuple[ProviderHandle, str]], once: Any, rules: RunRules
    ) -> Any:
        """Try the targets in order under each one's failure policy (runtime/core/failover.py) and the
        request's deadline. Every failed attempt is recorded; the client gets the primary's error unless a
        policy returns another one at once."""
        first_error: GatewayError | None = None
        loop = asyncio.get_running_loop()
        deadline = None if rules.deadline_s is None else loop.time() + rules.deadline_s
        queue = list(targets)
        index = 0
        skipped: list[int] = []  # targets whose breaker was open (runtime/core/health.py)
        forced: int | None = None
        while index < len(queue) or (first_error is None and skipped and forced is None):
            if index < len(queue):
                at = index
                handle, model = queue[index]
                index += 1
                health = handle.health
                if health is not None and health.tripped and not health.admit_target(model):
                    skipped.append(at)
                    continue
            else:  # every target was open: still try the least bad one rather than fail without trying
                at = forced = _least_bad(queue, skipped)
                handle, model = queue[at]
                health = handle.health
            ctx.fallback_index = at
            ctx.provider = handle.name
            ctx.model = model
            if ctx.endpoint not in handle.adapter.operations:
                err: GatewayError = UnsupportedOperation(
                    f"provider '{handle.name}' does not support the {ctx.endpoint} endpoint", param="model"
                )
                self._record(ctx, handle, model, err, None)
                first_error = first_error or err
                continue
            policy = handle.config.failure_policy
            failed_keys: list[KeyConfig] = []
            attempt = 0
            while True:
                upstream_ns = ctx.upstream_ns
                try:
                    if deadline is None:
                        result = await once(ctx, handle, model, failed_keys)
                    else:
                        remaining = deadline - loop.time()
                        if remaining <= 0:
                            raise TimeoutError
                        async with asyncio.timeout(remaining):
                            result = await once(ctx, handle, model, failed_keys)
                    if health is not None:  # latency: the upstream's time to answer (a stream's first event)
                        health.succeeded(model, ctx.key_name, (ctx.upstream_ns - upstream_ns) / 1e9)
                    if ctx.attempts:  # after failures, the list ends with the attempt that answered
                        self._record_success(ctx, handle, model)
                    return result
                except TimeoutError:
                    if deadline is None:
                        raise
                    err = deadline_passed(rules.deadline_s or 0.0, len(ctx.attempts) + 1)
                    self._record(ctx, handle, model, err, ctx.key_name or None)
                    raise err from None  # no time is left for any other target
                except GatewayError as err:
                    self._record(ctx, handle, model, err, ctx.key_name)
                    first_error = first_error or err
                    action = action_for(err, policy)
                    if health is not None:
                        health.failed(model, ctx.key_name, error_class(err))
                    if action == RETURN:
                        raise
                    if action == LARGER_CONTEXT:
                        queue[index:] = rules.larger_context(ctx, handle, model, queue[index:], queue[:index])
                        if index >= len(queue):
                            raise  # no larger window to go to: this error is the answer
                        break
                    attempt += 1
                    delay: float | None = None
                    key = _key_named(handle, ctx.key_name)
                    if action == NEXT_KEY:
                        if key is not None:
                            handle.keys.set_aside(key, KEY_COOLDOWN_S)
                            failed_keys.append(key)
                        if _another_key(ctx, handle, model, failed_keys):
                            delay = 0.0
                    elif action == RETRY or (action == RETRY_AFTER and err.retry_after_s is not None):
                        delay = retry_delay(err, attempt, handle.config.network)
                        if key is not None and delay is not None:
                            failed_keys[:] = [key]  # a retry prefers another key, as before
                    if delay is None or (deadline is not None and loop.time() + delay >= deadline):
                        break  # the next target, at once
                    if health is not None and action != NEXT_KEY and health.target_blocked(model):
                        break  # this failure opened the target's breaker: no retry on it
                    ctx.retries += 1
                    if delay > 0:
                        await asyncio.sleep(delay)
        assert first_error is not None
        # Report the failure against the primary, whose error the client gets; attempts list the rest.
        ctx.provider, ctx.model = targets[0][0].name, targets[0][1]
        raise first_error

    @staticmethod
    def _record_success(ctx: RequestContext, handle: ProviderHandle, model: str) -> None:
        ctx.attempts.append(
            {
                "status": 200,
                "outcome": "stream_opened" if ctx.stream else "answered",
                "provider": handle.name,
                "model": model,
                "key": ctx.key_name,
                "fallback_index": ctx.fallback_index,
            }
        )

    @staticmethod
    def _record(
        ctx: RequestContext, handle: ProviderHandle, model: str, err: GatewayError, key_name: str | None
    ) -> None:
        entry = err.describe()
        entry["provider"] = handle.name
        entry["model"] = model
        entry["key"] = key_name
        entry["fallback_index"] = ctx.fallback_index
        ctx.attempts.append(entry)

    # -- one attempt ---------------------------------------------------------------------------------
    async def _prepare(
        self, ctx: RequestContext, handle: ProviderHandle, model: str, exclude: Sequence[KeyConfig], stream: bool
    ) -> tuple[KeyConfig, UpstreamRequest | None]:
        """Lane slot already held. Key selection, build and encode, each timed."""
        t1 = perf_counter_ns()
        key = handle.keys.select(model, exclude, ctx.allowed_keys.get(handle.name) if ctx.allowed_keys else None)
        if key is None:
            raise UnknownModel(f"no key of provider '{handle.name}' may serve model '{model}'", param="model")
        ctx.key_name = key.name
        t2 = perf_counter_ns()
        ctx.key_select_ns += t2 - t1
        if handle.adapter.local:
            return key, None
        request = handle.adapter.build_request(handle.config, handle.spec, ctx.endpoint, ctx.body, model, key, stream)
        t3 = perf_counter_ns()
        ctx.build_ns += t3 - t2
        if request.body is None:
            request.body = self.encode(request.payload)
        sign = handle.adapter.sign
        if sign is not None:
            await sign(request, key, handle.config, self.session)
        ctx.encode_ns += perf_counter_ns() - t3
        return key, request

    async def _acquire(self, ctx: RequestContext, handle: ProviderHandle) -> None:
        t0 = perf_counter_ns()
        lane = handle.lane
        if not lane.try_acquire():
            await lane.acquire(handle.config.network.default_request_timeout_in_seconds)
        ctx.queue_wait_ns += perf_counter_ns() - t0

    async def _complete_once(
        self, ctx: RequestContext, handle: ProviderHandle, model: str, exclude: Sequence[KeyConfig]
    ) -> ParsedResponse:
        await self._acquire(ctx, handle)
        try:
            _key, request = await self._prepare(ctx, handle, model, exclude, False)
            adapter = handle.adapter
            if request is None:
                return adapter.respond(ctx.endpoint, ctx.body, model)
            net = handle.config.network
            t4 = perf_counter_ns()
            phase = "response headers"
            response: Response | None = None
            try:
                async with asyncio.timeout(net.default_request_timeout_in_seconds):
                    if net.first_byte_timeout_in_seconds is not None:
                        async with asyncio.timeout(net.first_byte_timeout):
                            response = await self._send(request, net.connect_timeout_in_seconds, None)
                    else:
                        response = await self._send(request, net.connect_timeout_in_seconds, None)
                    phase = "response body"
                    raw = await response.read()
                status = response.status
                headers = response.headers
            except TRANSPORT_ERRORS as exc:
                if response is not None:
                    response.close()
                ctx.upstream_ns += perf_counter_ns() - t4
                bound = (
                    net.first_byte_timeout
                    if phase == "response headers" and net.first_byte_timeout_in_seconds is not None
                    else net.default_request_timeout_in_seconds
                )
                raise transport_error(exc, handle.name, phase, bound) from None
            except BaseException:
                if response is not None:
                    response.close()
                raise
            t5 = perf_counter_ns()
            ctx.upstream_ns += t5 - t4
            if status >= 400:
                raise adapter.parse_error(status, headers, raw)
            parsed = adapter.parse_response(ctx.endpoint, model, raw)
            ctx.parse_ns += perf_counter_ns() - t5
            return parsed
        finally:
            handle.lane.release()

    def _send(self, request: UpstreamRequest, connect_timeout: float, read_timeout: float | None) -> Any:
        assert self.client is not None
        return self.client.request(
            request.method,
            request.url,
            request.headers,
            request.body,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    async def _open_raw_once(
        self, ctx: RequestContext, handle: ProviderHandle, model: str, exclude: Sequence[KeyConfig]
    ) -> ChunkStream | RawStream:
        return await self._open_stream_once(ctx, handle, model, exclude, True)

    async def _open_stream_once(
        self,
        ctx: RequestContext,
        handle: ProviderHandle,
        model: str,
        exclude: Sequence[KeyConfig],
        passthrough: bool = False,
    ) -> ChunkStream | RawStream:
        await self._acquire(ctx, handle)
        response: Response | None = None
        try:
            _key, request = await self._prepare(ctx, handle, model, exclude, True)
            adapter = handle.adapter
            if request is None:
                chunks, usage = adapter.respond_stream(ctx.endpoint, ctx.body, model)
                return ChunkStream(chunks, None, None, handle.lane, handle.name, 0.0, usage)
            net = handle.config.network
            t4 = perf_counter_ns()
            try:
                async with asyncio.timeout(net.first_byte_timeout):
                    response = await self._send(
                        request, net.connect_timeout_in_seconds, net.stream_idle_timeout_in_seconds
                    )
            except TRANSPORT_ERRORS as exc:
                ctx.upstream_ns += perf_counter_ns() - t4
                raise transport_error(exc, handle.name, "response headers", net.first_byte_timeout) from None
            if response.status >= 400:
                try:
                    async with asyncio.timeout(net.default_request_timeout_in_seconds):
                        raw = await response.read()
                except TRANSPORT_ERRORS:
                    raw = b""
                ctx.upstream_ns += perf_counter_ns() - t4
                raise adapter.parse_error(response.status, response.headers, raw)
            scanner = adapter.raw_stream(ctx.endpoint, model, ctx.client_wants_usage) if passthrough else None
            if scanner is not None:
                raw_stream = RawStream(scanner, response, handle.lane, handle.name, net.stream_idle_timeout_in_seconds)
                try:
                    # A failure up to the first event may still fall back; a provider that sends headers (or
                    # keep-alive comments) but no event is bounded by the first-token timeout.
                    async with asyncio.timeout(net.first_token_timeout):
                        raw_first = await raw_stream.read_first()
                except TimeoutError:
                    raise first_token_timeout(handle.name, net.first_token_timeout) from None
                finally:
                    ctx.upstream_ns += perf_counter_ns() - t4
                if not raw_first and not scanner.finished:
                    raise UpstreamTimeout(f"provider '{handle.name}' sent an empty stream")
                raw_stream.first = raw_first
                response = None  # owned by the stream now
                return raw_stream
            translator = adapter.stream_translator(ctx.endpoint, model)
            stream = ChunkStream([], translator, response, handle.lane, handle.name, net.stream_idle_timeout_in_seconds)
            # Read until the first events parse: a failure up to here may still fall back.
            try:
                async with asyncio.timeout(net.first_token_timeout):
                    first = await stream.next()
            except TimeoutError:
                ctx.upstream_ns += perf_counter_ns() - t4
                raise first_token_timeout(handle.name, net.first_token_timeout) from None
            except GatewayError:
                ctx.upstream_ns += perf_counter_ns() - t4
                raise
            ctx.upstream_ns += perf_counter_ns() - t4
            if first is None and not translator.finished:
                raise UpstreamTimeout(f"provider '{handle.name}' sent an empty stream")
            stream.first = first or []
            response = None  # owned by the stream now
            return stream
        except BaseException:
            if response is not None:
                response.close()
            handle.lane.release()
            raise


def _least_bad(queue: Sequence[tuple[ProviderHandle, str]], skipped: Sequence[int]) -> int:
    """Of the skipped (open) targets, the index of the one soonest to cool down, then least failing."""
    stats = []
    for i in skipped:
        health = queue[i][0].health
        stats.append(health.targets.get(queue[i][1]) if health is not None else None)
    clock = next((b.clock for b in stats if b is not None), None)
    return least_bad(skipped, stats, clock() if clock is not None else 0.0)


def _another_key(ctx: RequestContext, handle: ProviderHandle, model: str, failed: Sequence[KeyConfig]) -> bool:
    """Whether a key this request has not tried yet may serve `model` on `handle`."""
    only = ctx.allowed_keys.get(handle.name) if ctx.allowed_keys else None
    return any(k not in failed and (only is None or k.name in only) for k in handle.keys.candidates(model))


def _key_named(handle: ProviderHandle, name: str) -> KeyConfig | None:
    for key in handle.config.keys:
        if key.name == name:
            return key
    return None
