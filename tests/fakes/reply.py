"""What a fake provider answers to one request: a scripted `Reply`.

A test queues replies on a fake (`fake.enqueue(Reply.rate_limited(retry_after=1))`); each incoming
request takes the first queued reply whose `path_contains` matches, else the fake's default. A reply
with no overrides produces the provider's normal, documented answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One scripted behaviour. Everything defaults to "answer normally, at once"."""

    status: int = 200
    # Replace the whole body with this JSON value (sent with the given status).
    json: Any = None
    # Replace the whole body with these bytes (e.g. garbage that is not JSON).
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    # Seconds to wait before sending the status line and headers (time to first byte).
    delay: float = 0.0
    # Close the connection without answering at all (a connection error for the client).
    drop: bool = False
    # Assistant text / completion text to send instead of the default echo.
    content: str | None = None
    # Tool calls to answer with: [{"id": ..., "name": ..., "arguments": "<json string>"}].
    tool_calls: tuple[Mapping[str, str], ...] | None = None
    # Usage to report instead of the computed one.
    usage: Mapping[str, int] | None = None
    # Streaming: seconds between every two SSE events. A JSON answer is then sent as headers at
    # once and the body in three parts this far apart (slow body, fast first byte).
    chunk_delay: float = 0.0
    # Streaming: after this many events, stall once for `stall` seconds.
    stall_after: int | None = None
    stall: float = 0.0
    # Streaming: after this many events, abort the connection (no [DONE], no chunked terminator).
    cut_after: int | None = None
    # Only requests whose path contains this string take this reply (None = any request).
    path_contains: str | None = None

    @property
    def overrides_body(self) -> bool:
        return self.json is not None or self.raw is not None or self.status != 200

    # ---- canned provider errors, in OpenAI's documented error shape ----

    @classmethod
    def error(
        cls,
        status: int,
        message: str,
        type_: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Reply:
        body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        return cls(status=status, json=body, headers=dict(headers or {}), **kwargs)

    @classmethod
    def rate_limited(cls, retry_after: float | None = None, **kwargs: Any) -> Reply:
        headers = {} if retry_after is None else {"retry-after": _fmt_seconds(retry_after)}
        return cls.error(
            429,
            "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again later.",
            "requests",
            code="rate_limit_exceeded",
            headers=headers,
            **kwargs,
        )

    @classmethod
    def server_error(cls, status: int = 500, **kwargs: Any) -> Reply:
        return cls.error(
            status,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            **kwargs,
        )

    @classmethod
    def bad_request(cls, message: str = "Invalid value for 'temperature'.", **kwargs: Any) -> Reply:
        return cls.error(400, message, "invalid_request_error", param="temperature", **kwargs)

    @classmethod
    def garbage(cls, status: int = 200, **kwargs: Any) -> Reply:
        return cls(status=status, raw=b"<html>\x00 definitely {not json", content_type="text/html", **kwargs)


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
