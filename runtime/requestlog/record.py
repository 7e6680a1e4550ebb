"""One request -> one log row. Built in `on_finish` as a plain tuple: no encoding on the request path.

Bytes and Python objects are turned into text by the writer, in the batch, off the request's latency.
Content is bounded here, before the row enters the writer's buffer, so memory is bounded and not only
the disk: a raw body or answer over `client.max_log_content_kb` is cut (O(cap), no matter its size)
to text ending in a marker that says how much was cut. Content under the cap costs one `len()`.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.core.context import RequestContext
from runtime.core.text import clip_text, clip_utf8

CONTENT_SETTING = "client.max_log_content_kb"
# Identifier-like columns (model, provider, key name, error type) come from clients too; a name this
# long is no name, and these columns are indexed.
NAME_LIMIT = 1024


class Clipped(str):
    """Text already bounded (and valid UTF-8): the writer stores it as it is, not as a JSON value."""

    __slots__ = ()


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
    "cost",
    "virtual_key_id",  # the governing virtual key's id (never its value), None when ungoverned
    "skipped_events",  # malformed upstream stream events dropped (the stream went on); None: none
    "cache",  # what the response cache did: "hit-direct" | "hit-semantic" | "miss"; None: not consulted
    "cache_similarity",  # a semantic hit's cosine similarity
    # What guardrails did (runtime/guardrails/): one {"rule", "provider", "stage", "action", "types", "count",
    # "error"?} per rule that acted, stored as JSON text like `attempts`; never a matched value. None: nothing fired.
    "guardrails",
)
INPUT_COL = COLUMNS.index("input")
OUTPUT_COL = COLUMNS.index("output")
ATTEMPTS_COL = COLUMNS.index("attempts")
GUARDRAILS_COL = COLUMNS.index("guardrails")
# Columns the writers store as JSON text (the readers decode them again).
JSON_COLUMNS = ("input", "output", "attempts", "guardrails")


def insert_sql(rows: int) -> str:
    """The INSERT of `rows` rows (multi-row VALUES), in COLUMNS order."""
    one = f"({', '.join('?' * len(COLUMNS))})"
    return f"INSERT OR REPLACE INTO logs ({', '.join(COLUMNS)}) VALUES {', '.join([one] * rows)}"


INSERT_SQL = insert_sql(1)


def _input_of(ctx: RequestContext, limit: int | None) -> Any:
    """The content part of the request: chat messages, a completion prompt or embedding input.

    Over the cap, the raw body's first `limit` bytes instead (slicing it is O(limit); serialising the
    parsed messages to find where to cut would be O(size))."""
    raw = ctx.input_raw
    if limit is not None and raw is not None and len(raw) > limit:
        return Clipped(clip_utf8(raw, limit, CONTENT_SETTING))
    body = ctx.body
    for field in ("messages", "prompt", "input"):
        if field in body:
            return body[field]
    return ctx.input_raw


def bounded(value: Any, limit: int | None) -> Any:
    """`value` as it is when it is within `limit` bytes (or of a kind bounded where it was made: the
    stream accumulator's result); else a `Clipped` prefix with its truncation marker."""
    if limit is None or value is None:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return value if len(value) <= limit else Clipped(clip_utf8(value, limit, CONTENT_SETTING))
    if isinstance(value, str) and len(value) * 4 > limit:
        clipped = clip_text(value, limit, CONTENT_SETTING)
        return value if clipped is value else Clipped(clipped)
    return value


def _name(value: str | None) -> str | None:
    if not value:
        return None
    return value if len(value) <= NAME_LIMIT else Clipped(clip_text(value, NAME_LIMIT, "the log's name limit"))


def to_row(ctx: RequestContext, with_content: bool, content_limit: int | None = None) -> tuple[Any, ...]:
    """The row for `ctx`; with `content_limit` (bytes), input and output are bounded to it."""
    latency_ns = ctx.elapsed_ns()
    usage = ctx.usage
    return (
        ctx.id,
        ctx.ts_ms,
        ctx.endpoint,
        _name(ctx.provider),
        _name(ctx.model),
        _name(ctx.model_requested),
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
        _name(ctx.key_name),
        bounded(ctx.error, content_limit),
        _name(ctx.error_type),
        _input_of(ctx, content_limit) if with_content else None,
        bounded(ctx.output, content_limit) if with_content else None,
        ctx.attempts or None,
        ctx.ingress,
        ctx.cost,
        getattr(ctx.caller, "virtual_key_id", None),  # ctx.caller is a governance Caller, or None
        ctx.skipped_events or None,
        ctx.cache,
        ctx.cache_similarity,
        ctx.guardrails,  # None, or a short list of small dicts: encoded by the writer, off the request path
    )


TRIM = 2000  # characters of input/output a live-feed record carries


def row_summary(row: tuple[Any, ...] | dict[str, Any], trim: int = TRIM) -> dict[str, Any]:
    """A log row (tuple in record.COLUMNS order, or dict) as the live feed's JSON object."""
    record = dict(zip(COLUMNS, row, strict=False)) if isinstance(row, tuple) else dict(row)
    for name in ("input", "output"):
        value = record.get(name)
        if isinstance(value, str) and len(value) > trim:
            record[name] = value[:trim]
            record[f"{name}_truncated"] = True
    record["stream"] = bool(record.get("stream"))
    guardrails = record.get("guardrails")
    if isinstance(guardrails, str):  # a row read back from the store (the multi-worker tail): JSON text
        record["guardrails"] = decode_json(guardrails)
    return record


def decode_json(value: Any) -> Any:
    """A JSON column's text as its value; text that is not JSON (a clipped body) as it is."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
