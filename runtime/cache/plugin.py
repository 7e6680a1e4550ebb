"""The `semantic_cache` plugin: answers repeated (or, in semantic mode, similar) requests from the cache.

Order: after governance (a refused request never reaches the cache; `ctx.caller` names the virtual
key the entries are scoped to), before the request log and the metrics. Only requests that carry a
cache key (`x-bf-cache-key`, or the config's `default_cache_key`) consult it, as in Go Bifrost.

pre_hook:  bypass (no key, another endpoint, a conversation longer than conversation_history_threshold)
           -> direct lookup by exact hash -> (a miss) join an identical request in flight, or lead one
           -> semantic lookup (semantic mode: the prompt embedded through the gateway's providers)
           -> a hit answers at once (whole, or replayed as a stream in any client format), costs 0;
              a miss goes upstream with `x-bf-cache: miss`, its stream observed to be stored.
post_hook: take the miss's answer (nothing more: post-hooks run before the client has its answer).
on_finish: once the answer has left, store it: only a complete success (status 200, every choice
           finished, no content-filter refusal, not a cut stream), unless x-bf-cache-no-store; then end
           the request's flight (followers get the answer, or go upstream themselves).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from time import perf_counter
from typing import Any

import ujson

from runtime.cache.coalesce import Coalescer, Flight
from runtime.cache.embed import Embedder
from runtime.cache.key import KeyShape, RequestKey, hash_of, key_parts, message_count, request_key
from runtime.cache.replay import StreamCapture, as_response, clone, replay_stream, storable
from runtime.cache.settings import CacheSettings, RequestOptions, request_options
from runtime.cache.stats import CacheCounters
from runtime.cache.store import CacheEntry, CacheStore
from runtime.core.context import RequestContext
from runtime.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, ParsedResponse, Usage

log = logging.getLogger("bifrost.cache")

ENDPOINTS = frozenset((CHAT, COMPLETIONS, EMBEDDINGS))
H_CACHE = "x-bf-cache"
H_SIMILARITY = "x-bf-cache-similarity"
H_ID = "x-bf-cache-id"


class _Miss:
    """What a miss carries from its pre-hook to its post-hook and on_finish."""

    __slots__ = ("answer", "capture", "flight", "key", "mode", "options", "posted", "response", "vector")

    def __init__(self, key: RequestKey, options: RequestOptions, mode: str) -> None:
        self.key = key
        self.options = options
        self.mode = mode  # the counters' mode of the miss: "semantic" when a semantic lookup ran
        self.flight: Flight | None = None
        self.capture: StreamCapture | None = None
        self.vector: list[float] | None = None
        self.answer: dict[str, Any] | None = None
        self.posted = False  # the post-hook saw the answer (None when it was streamed: the capture has it)
        self.response: ParsedResponse | None = None


class SemanticCachePlugin:
    name = "semantic_cache"

    def __init__(
        self,
        settings: CacheSettings,
        store: CacheStore,
        *,
        providers: Collection[str] = (),
        wait_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.counters = CacheCounters()
        self.clock = clock
        self.coalescer = Coalescer(wait_s)
        self.embedder = (
            Embedder(settings.embedding_target, settings.dimension, self.counters) if settings.semantic else None
        )
        self._providers = frozenset(providers)
        self._pending: dict[str, _Miss] = {}  # request id -> its miss, until on_finish
        self._opened: asyncio.Future[None] | None = None
        self._failed_logged_at = float("-inf")

    def bind_gateway(self, gateway: Any) -> None:
        """The app's Gateway, for the embedding sub-requests (built after the plugins)."""
        if self.embedder is not None:
            self.embedder.gateway = gateway
        if not self._providers:
            from runtime.governance.plugin import provider_names

            self._providers = provider_names(gateway.config.providers)

    async def _open(self) -> None:
        if self._opened is None:
            self._opened = asyncio.ensure_future(self.store.open())
        await asyncio.shield(self._opened)

    # -- pre-hook ----------------------------------------------------------------------------------------
    async def pre_hook(self, ctx: RequestContext) -> Any:
        endpoint = ctx.endpoint
        if endpoint not in ENDPOINTS:
            return None
        settings = self.settings
        options = request_options(ctx.headers, settings)  # a malformed header: 400 in the ingress's shape
        if options is None:
            return None
        body = ctx.body
        if message_count(body) > settings.conversation_history_threshold:
            return None  # Go: long conversations bypass the cache
        if self._opened is None or not self._opened.done():
            try:
                await self._open()
            except Exception:  # a store that cannot open: the gateway keeps serving, uncached
                self._store_failed("opening the store")
                return None
        vk = getattr(ctx.caller, "virtual_key_id", None) if settings.scope == "virtual_key" else None
        namespace = (vk, options.cache_key)
        # A direct lookup needs the exact hash only: the rest of the key is built after a miss (a hit, half
        # the requests or more where the cache pays, skips the params hash and the prompt text).
        shape = KeyShape(
            namespace=namespace,
            providers=self._providers,
            by_model=settings.cache_by_model,
            by_provider=settings.cache_by_provider,
            exclude_system=settings.exclude_system_prompt,
        )
        parts = key_parts(endpoint, body, **shape)  # once: the exact hash and, on a miss, the rest of the key
        exact = hash_of(parts) if options.direct else None
        self.counters.requests += 1
        now = self.clock()
        counters = self.counters
        if exact is not None:
            started = perf_counter()
            try:
                entry = await self.store.get(exact, now)
            except Exception:  # a failing store is not the request's failure: served uncached
                self._store_failed("a lookup")
                return None
            counters.lookup_seconds_sum["direct"] += perf_counter() - started
            counters.lookup_count["direct"] += 1
            if entry is not None:
                return self._hit(ctx, entry, "direct", None, now)
        key = request_key(endpoint, body, request_hash=exact, parts=parts, **shape)
        semantic = options.semantic and endpoint != EMBEDDINGS and key.semantic_text is not None
        miss = _Miss(key, options, "semantic" if semantic else "direct")
        if settings.coalesce and options.direct:
            flight = self.coalescer.flights.get(key.request_hash)
            if flight is not None and flight.open:
                answer = await self._follow(ctx, flight)
                if answer is not None:
                    return answer
                # the leader failed: this request goes upstream itself (and does not lead)
            elif flight is None:
                miss.flight = self.coalescer.lead(key.request_hash, ctx.id, key.provider, key.model)
        self._pending[ctx.id] = miss  # from here on_finish ends the flight, whatever happens
        if semantic and self.embedder is not None and key.semantic_text is not None:
            started = perf_counter()
            miss.vector = await self.embedder.embed(key.semantic_text)
            if miss.vector is not None:
                try:
                    found = await self.store.nearest(key.params_hash, miss.vector, options.threshold, self.clock())
                except Exception:
                    self._store_failed("a semantic lookup")
                    found = None
                counters.lookup_seconds_sum["semantic"] += perf_counter() - started
                counters.lookup_count["semantic"] += 1
                if found is not None:
                    entry, similarity = found
                    if miss.flight is not None:  # identical requests waiting on this one get the same answer
                        miss.answer = entry.response
                    return self._hit(ctx, entry, "semantic", similarity, now)
        counters.misses[miss.mode] += 1
        ctx.cache = "miss"
        _headers(ctx)[H_CACHE] = "miss"
        if ctx.stream and (options.store or miss.flight is not None):
            capture = miss.capture = StreamCapture(endpoint)
            observers = ctx.observers if ctx.observers is not None else []
            if miss.flight is not None:
                flight = miss.flight

                def observe(c: RequestContext, chunk: dict[str, Any]) -> None:
                    capture.observe(c, chunk)
                    flight.add_chunk(chunk)

                observers.append(observe)
            else:
                observers.append(capture.observe)
            ctx.observers = observers
        return None

    def _store_failed(self, what: str) -> None:
        """Log a store failure with its traceback, at most once a minute (a broken disk must not flood)."""
        now = time.monotonic()
        if now - self._failed_logged_at >= 60.0:
            self._failed_logged_at = now
            log.exception("semantic cache: %s failed; the request is served without the cache", what)

    async def _follow(self, ctx: RequestContext, flight: Flight) -> Any:
        """Wait on an identical request in flight; its answer, or None (go upstream yourself)."""
        if ctx.stream:
            chunks = await self.coalescer.follow_stream(flight)
            if chunks is None:
                return None
            answer: Any = chunks
        else:
            data = await self.coalescer.whole(flight)
            if data is None:
                return None
            answer = as_response(data)
        self.counters.coalesced += 1
        self.counters.hits["direct"] += 1
        ctx.cache = "hit-direct"
        ctx.cost = 0.0
        ctx.provider, ctx.model = flight.provider, flight.model
        headers = _headers(ctx)
        headers[H_CACHE] = "hit-direct"
        headers[H_ID] = flight.leader_id
        return answer

    def _hit(
        self, ctx: RequestContext, entry: CacheEntry, mode: str, similarity: float | None, now: float
    ) -> ParsedResponse | Any:
        counters = self.counters
        counters.hits[mode] += 1
        if entry.cost is not None:
            counters.saved_cost += entry.cost
        counters.saved_prompt_tokens += entry.prompt_tokens
        counters.saved_completion_tokens += entry.completion_tokens
        counters.saved_upstream_ms += entry.upstream_ms
        self.store.touch(entry, now)
        ctx.cache = f"hit-{mode}"
        ctx.cache_similarity = similarity
        ctx.provider = entry.provider
        ctx.model = entry.model
        ctx.cost = 0.0  # a hit reaches no provider
        headers = _headers(ctx)
        headers[H_CACHE] = ctx.cache
        headers[H_ID] = entry.id
        if similarity is not None:
            headers[H_SIMILARITY] = f"{similarity:.4f}"
        if ctx.stream:
            return replay_stream(entry.response)
        return as_response(entry.response)

    # -- post-hook: take a miss's answer; on_finish stores it ------------------------------------------
    async def post_hook(self, ctx: RequestContext, response: ParsedResponse | None) -> None:
        if ctx.cache != "miss":
            return  # not consulted, or a hit (its answer came from the store)
        miss = self._pending.get(ctx.id)
        if miss is not None:
            # Copying, checking and storing the answer is left to on_finish, after the client has it: here
            # it would be latency the client waits for (the answer is encoded for the client already).
            miss.posted = True
            miss.response = response

    def _keep(self, ctx: RequestContext, miss: _Miss) -> None:
        """A miss's complete answer: for the flight's followers and, unless no-store, for the store."""
        response = miss.response
        if response is not None:
            # The provider's bytes, when they went to the client as they were (`raw`), decode to a fresh copy
            # of the answer in one step; otherwise copy the (possibly re-encoded) answer itself.
            raw = response.raw
            data: dict[str, Any] | None = ujson.loads(raw) if raw is not None else clone(response.data)
        elif miss.capture is not None:
            data = miss.capture.answer()
        else:
            data = None
        if data is None or not storable(data):
            self.counters.not_stored += 1
            return
        miss.answer = data
        if not miss.options.store:
            self.counters.not_stored += 1
            return
        self._store(ctx, miss, data)

    def _store(self, ctx: RequestContext, miss: _Miss, data: dict[str, Any]) -> None:
        response_json = ujson.dumps(data, ensure_ascii=False, escape_forward_slashes=False)  # once: size and store
        if len(response_json) > self.settings.max_entry_bytes:
            self.counters.not_stored += 1
            return
        usage = Usage.from_openai(data.get("usage")) or ctx.usage
        now = self.clock()
        key = miss.key
        entry = CacheEntry(
            id=ctx.id,
            request_hash=key.request_hash,
            params_hash=key.params_hash,
            cache_key=miss.options.cache_key,
            virtual_key_id=getattr(ctx.caller, "virtual_key_id", None),
            endpoint=ctx.endpoint,
            provider=ctx.provider,
            model=ctx.model,
            created_at=now,
            expires_at=now + miss.options.ttl_s,
            response=data,
            prompt_text=key.prompt_text,
            prompt_tokens=usage.prompt_tokens if usage is not None else 0,
            completion_tokens=usage.completion_tokens if usage is not None else 0,
            cost=ctx.cost,
            upstream_ms=ctx.upstream_ns / 1e6,
            embedding=miss.vector,
        )
        try:
            self.store.put(entry, response_json)
        except Exception:  # the answer was already sent: a store failure is logged, never the request's
            log.exception("semantic cache: storing entry %s failed", ctx.id)
            self.counters.not_stored += 1
            return
        self.counters.stored += 1

    def on_finish(self, ctx: RequestContext) -> None:
        miss = self._pending.pop(ctx.id, None)
        if miss is None:
            return
        if miss.posted and ctx.cache == "miss" and ctx.status == 200 and ctx.error is None:
            try:
                self._keep(ctx, miss)
            except Exception:  # the answer has left; the hooks after this one (the request log) still run
                log.exception("semantic cache: keeping the answer of %s failed", ctx.id)
                self.counters.not_stored += 1
        if miss.flight is not None:
            answer = miss.answer if ctx.status == 200 and ctx.error is None else None
            if ctx.provider:
                miss.flight.provider, miss.flight.model = ctx.provider, ctx.model
            self.coalescer.end(miss.key.request_hash, miss.flight, answer)

    async def aclose(self) -> None:
        """At shutdown (or when switched off live): clear if cleanup_on_shutdown, then close the store.
        Requests still waiting on a flight go upstream themselves (this plugin's on_finish may no longer
        run for their leaders once a live switch replaced it)."""
        for request_hash, flight in list(self.coalescer.flights.items()):
            self.coalescer.end(request_hash, flight, None)
        if self.settings.cleanup_on_shutdown:
            try:
                await self.store.clear()
            except Exception:
                log.exception("semantic cache: clearing at shutdown failed")
        await self.store.close()


def _headers(ctx: RequestContext) -> dict[str, str]:
    headers = ctx.response_headers
    if headers is None:
        headers = ctx.response_headers = {}
    return headers
