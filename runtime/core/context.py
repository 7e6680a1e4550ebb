"""RequestContext: everything one request carries through the pipeline, in slots.

One instance per request and nothing else allocated per request beyond what the wire needs; fields
are plain attributes so the hot path never does dict look-ups for its own bookkeeping. Stage times
are nanosecond sums (a retry adds to them), read by the request log and the metrics.

Gateway overhead is the gateway's own time, never a wait on the upstream or on the client. For an
answer sent whole it is the elapsed time minus the upstream wait. For a stream it is frozen when the
headers go out (the `x-bf-overhead-us` header reports exactly that figure) and then grows only by the
time spent on each read batch between its arrival and its write (`add_stream_work`): parsing,
translating, encoding and handing bytes to the socket, without the waits for the next chunk or for a
slow client to drain. The log row, /metrics and the dashboard all read `overhead_ns`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class RequestContext:
    __slots__ = (
        "allowed_keys",
        "attempts",
        "body",
        "build_ns",
        "cache",
        "cache_similarity",
        "caller",
        "client_wants_usage",
        "cost",
        "encode_ns",
        "end_ns",
        "endpoint",
        "error",
        "error_type",
        "fallback_index",
        "fallbacks",
        "gateway_ns",
        "guard",
        "guardrail_state",
        "guardrails",
        "headers",
        "id",
        "ingress",
        "input_raw",
        "key_name",
        "key_select_ns",
        "model",
        "model_requested",
        "observers",
        "output",
        "parse_ns",
        "pre_ran",
        "provider",
        "queue_wait_ns",
        "response_headers",
        "resume",
        "retries",
        "skipped_events",
        "start_ns",
        "status",
        "stream",
        "ts_ms",
        "upstream_ns",
        "usage",
    )

    def __init__(self, request_id: str, endpoint: str, ingress: str = "openai") -> None:
        self.id = request_id
        self.start_ns = time.perf_counter_ns()
        self.ts_ms = int(time.time() * 1000)
        self.endpoint = endpoint  # "chat" | "completions" | "embeddings" | ...
        self.ingress = ingress  # which API shape the client speaks
        self.body: dict[str, Any] = {}
        self.headers: Mapping[str, str] = _NO_HEADERS  # the request's (read-only), set by the relay
        self.caller: Any = None  # who is calling: set by an auth hook, None by default
        # Provider name -> the key names this request may use there (a virtual key's allowed_keys); None:
        # any key. Read once per attempt by key selection (runtime/core/keys.py).
        self.allowed_keys: Mapping[str, frozenset[str]] | None = None
        # Chunk observers this request only (a pre-hook appends, e.g. the cache capturing a miss's stream);
        # None: the plugins' own `on_chunk`s only. Any observer turns the streaming fast path off.
        self.observers: list[Callable[[RequestContext, dict[str, Any]], None]] | None = None
        # What the response cache did: "hit-direct" | "hit-semantic" | "miss"; None: not consulted.
        self.cache: str | None = None
        self.cache_similarity: float | None = None  # a semantic hit's cosine similarity
        # The output check a pre-hook set for this request (runtime/guardrails/): its `check_response(ctx,
        # result)` sees a whole answer before it is sent, its `stream_filter(ctx)` the chunks of a stream
        # (which then leaves the fast path). None: answers go out as they came.
        self.guard: Any = None
        # What guardrails did: one dict per rule that acted ({"rule", "provider", "stage", "action",
        # "types", "count"}; never a matched value), for the log row and metrics. None: nothing fired.
        self.guardrails: list[dict[str, Any]] | None = None
        # The guardrails plugin's per-request state (what its on_finish must scrub from the log): on the
        # request, so a plugin swapped by a live edit mid-request still finds it. None: not checked.
        self.guardrail_state: Any = None
        self.pre_ran = 0  # how many plugins' pre-hooks ran (runtime/core/hooks.py), for post-hooks
        # Headers a hook adds to the answer (e.g. rate-limit state). None until a hook sets some, so the
        # common case builds no dict; read when the answer's headers are built, plain or streaming.
        self.response_headers: dict[str, str] | None = None
        self.input_raw: bytes | None = None
        self.stream = False
        self.client_wants_usage = False
        self.model_requested = ""
        self.provider = ""
        self.model = ""
        self.fallbacks: tuple[str, ...] = ()
        self.fallback_index = 0
        self.retries = 0
        self.skipped_events = 0  # malformed upstream stream events dropped (the stream went on)
        self.key_name = ""
        self.queue_wait_ns = 0
        self.key_select_ns = 0
        self.build_ns = 0
        self.encode_ns = 0
        self.upstream_ns = 0
        self.parse_ns = 0
        self.end_ns = 0  # set once when the request is over, so every on_finish reader sees the same times
        self.gateway_ns = -1  # a stream's overhead once its headers are out; -1: not streaming (yet)
        self.status = 0
        self.error: str | None = None
        self.error_type: str | None = None
        self.usage: Any = None
        self.cost: float | None = None  # US dollars, once the outcome's usage is priced (None: unpriced)
        self.output: Any = None  # bytes (raw body) or str (assembled stream text)
        self.attempts: list[dict[str, Any]] = []
        # A chat stream's mid-stream recovery plan (runtime/core/resume.py); None: off or nowhere to go.
        self.resume: Any = None

    def elapsed_ns(self) -> int:
        return (self.end_ns or time.perf_counter_ns()) - self.start_ns

    def end(self) -> None:
        """The request is over: freeze its latency (and so its overhead) for the log, metrics and hooks."""
        self.end_ns = time.perf_counter_ns()

    def overhead_ns(self, elapsed_ns: int | None = None) -> int:
        """The gateway's own time so far (see the module doc); `elapsed_ns` saves a clock read."""
        if self.gateway_ns >= 0:
            return self.gateway_ns
        if elapsed_ns is None:
            elapsed_ns = self.elapsed_ns()
        return max(0, elapsed_ns - self.upstream_ns)

    def overhead_us(self) -> int:
        return self.overhead_ns() // 1000

    def begin_stream_body(self) -> int:
        """The stream's headers are about to go out: freeze the overhead so far (everything but the wait for
        the first upstream events); returns the clock reading the first batch's work is counted from."""
        now = time.perf_counter_ns()
        self.gateway_ns = max(0, now - self.start_ns - self.upstream_ns)
        return now

    def add_stream_work(self, since_ns: int, waited_ns: int = 0) -> None:
        """Add one read batch's processing: from its arrival (`since_ns`) to now, minus any wait on the client."""
        work = time.perf_counter_ns() - since_ns - waited_ns
        if work > 0:
            self.gateway_ns += work
