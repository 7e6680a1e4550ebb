"""One request -> one log row. Built in `on_finish` as a plain tuple: no encoding on the request path.

Bytes and Python objects are turned into text by the writer, in the batch, off the request's latency.
"""

from __future__ import annotations

from typing import Any

from runtime.core.context import RequestContext

COLUMNS = (
    "id",
    "ts_ms",
    "endpoint",
    "provider",
    "model",
    "model_requested",
    "status",
    "stream",
    "latency_us",
    "overhead_us",
    "queue_wait_us",
    "key_select_us",
    "build_us",
    "encode_us",
    "upstream_us",
    "parse_us",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "retries",
    "fallback_index",
    "key_name",
    "error",
    "error_type",
    "input",
    "output",
    "attempts",
    "ingress",
)
INPUT_COL = COLUMNS.index("input")
OUTPUT_COL = COLUMNS.index("output")
ATTEMPTS_COL = COLUMNS.index("attempts")
INSERT_SQL = f"INSERT OR REPLACE INTO logs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def _input_of(ctx: RequestContext) -> Any:
    """The content part of the request: chat messages, a completion prompt or embedding input."""
    body = ctx.body
    for field in ("messages", "prompt", "input"):
        if field in body:
            return body[field]
    return ctx.input_raw


def to_row(ctx: RequestContext, with_content: bool) -> tuple[Any, ...]:
    latency_ns = ctx.elapsed_ns()
    usage = ctx.usage
    return (
        ctx.id,
        ctx.ts_ms,
        ctx.endpoint,
        ctx.provider or None,
        ctx.model or None,
        ctx.model_requested or None,
        ctx.status,
        1 if ctx.stream else 0,
        latency_ns // 1000,
        ctx.overhead_ns(latency_ns) // 1000,
        ctx.queue_wait_ns // 1000,
        ctx.key_select_ns // 1000,
        ctx.build_ns // 1000,
        ctx.encode_ns // 1000,
        ctx.upstream_ns // 1000,
        ctx.parse_ns // 1000,
        usage.prompt_tokens if usage else None,
        usage.completion_tokens if usage else None,
        usage.total_tokens if usage else None,
        usage.cached_tokens if usage else None,
        ctx.retries,
        ctx.fallback_index,
        ctx.key_name or None,
        ctx.error,
        ctx.error_type,
        _input_of(ctx) if with_content else None,
        ctx.output if with_content else None,
        ctx.attempts or None,
        ctx.ingress,
    )
