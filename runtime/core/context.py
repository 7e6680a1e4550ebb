"""RequestContext: everything one request carries through the pipeline, in slots.

One instance per request and nothing else allocated per request beyond what the wire needs; fields
are plain attributes so the hot path never does dict look-ups for its own bookkeeping. Stage times
are nanosecond sums (a retry adds to them), read by the request log and the metrics.
"""

from __future__ import annotations

import time
from typing import Any


class RequestContext:
    __slots__ = (
        "attempts",
        "body",
        "build_ns",
        "client_wants_usage",
        "encode_ns",
        "endpoint",
        "error",
        "error_type",
        "fallback_index",
        "fallbacks",
        "id",
        "ingress",
        "input_raw",
        "key_name",
        "key_select_ns",
        "model",
        "model_requested",
        "output",
        "parse_ns",
        "provider",
        "queue_wait_ns",
        "retries",
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
        self.input_raw: bytes | None = None
        self.stream = False
        self.client_wants_usage = False
        self.model_requested = ""
        self.provider = ""
        self.model = ""
        self.fallbacks: tuple[str, ...] = ()
        self.fallback_index = 0
        self.retries = 0
        self.key_name = ""
        self.queue_wait_ns = 0
        self.key_select_ns = 0
        self.build_ns = 0
        self.encode_ns = 0
        self.upstream_ns = 0
        self.parse_ns = 0
        self.status = 0
        self.error: str | None = None
        self.error_type: str | None = None
        self.usage: Any = None
        self.output: Any = None  # bytes (raw body) or str (assembled stream text)
        self.attempts: list[dict[str, Any]] = []

    def elapsed_ns(self) -> int:
        return time.perf_counter_ns() - self.start_ns

    def overhead_us(self) -> int:
        """Time spent in the gateway so far: everything except waiting on the upstream."""
        return max(0, (self.elapsed_ns() - self.upstream_ns) // 1000)
