"""What the native-provider fakes share: a Reply with provider-level knobs, the deterministic "model"
behaviour (echo, stop sequences, max tokens), and a writer for framed streams (SSE with event names,
AWS event-stream frames) that honours the Reply's cut/stall/chunk_delay scripting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..recorder import Recorder
from ..reply import Reply


@dataclass(frozen=True)
class NativeReply(Reply):
    """A Reply plus native knobs. `usage` (inherited) is given in the provider's own usage fields."""

    # Force the provider's own finish/stop reason (e.g. "max_tokens", "SAFETY", "guardrail_intervened").
    finish: str | None = None
    # Send this provider-native error event inside a 200 stream after `cut_after` events (or at once).
    stream_error: Mapping[str, Any] | None = None


def native_error(status: int, body: Any, headers: Mapping[str, str] | None = None, **kw: Any) -> NativeReply:
    return NativeReply(status=status, json=body, headers=dict(headers or {}), **kw)


def words(text: str) -> int:
    return len(text.split())


def answer_text(name: str, user_text: str, reply: Reply) -> str:
    return reply.content if reply.content is not None else f"{name}: {user_text}"


def apply_stops(text: str, stops: Sequence[str] | None, max_tokens: int | None) -> tuple[str, str | None, bool]:
    """Cut the answer like a model would: at the first stop sequence (returned, not included), or after
    `max_tokens` words. Returns (text, matched stop sequence, cut for length)."""
    hit: str | None = None
    if stops:
        first = min(((text.find(s), s) for s in stops if s and s in text), default=None)
        if first is not None:
            text, hit = text[: first[0]], first[1]
    if max_tokens is not None and words(text) > max_tokens:
        return " ".join(text.split()[:max_tokens]), None, True
    return text, hit, False


def fragments(text: str, size: int = 7) -> list[str]:
    """Split a JSON string into the small fragments a model streams."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def sse(event: str | None, data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


async def send_stream(
    request: web.Request,
    frames: Iterable[bytes],
    reply: Reply,
    recorder: Recorder,
    headers: Mapping[str, str],
    content_type: str = "text/event-stream",
    error_frame: bytes | None = None,
) -> web.StreamResponse:
    """Write pre-framed events; `cut_after` aborts the connection (or, with `error_frame`, sends that
    provider error event instead and ends the body cleanly)."""
    response = web.StreamResponse(status=200, headers={"Cache-Control": "no-cache", **headers, **reply.headers})
    response.content_type = content_type
    await response.prepare(request)
    recorder.count("streams_started")
    recorder.status(200)
    for sent, frame in enumerate(frames):
        if reply.cut_after is not None and sent >= reply.cut_after:
            if error_frame is not None:
                await response.write(error_frame)
                await response.write_eof()
                recorder.count("streams_errored")
                return response
            recorder.count("streams_cut")
            if request.transport is not None:
                request.transport.abort()
            return response
        if reply.stall_after is not None and sent == reply.stall_after and reply.stall > 0:
            await asyncio.sleep(reply.stall)
        elif sent and reply.chunk_delay > 0:
            await asyncio.sleep(reply.chunk_delay)
        await response.write(frame)
    await response.write_eof()
    recorder.count("streams_completed")
    return response


def tool_calls_of(reply: Reply) -> list[dict[str, Any]]:
    """The scripted tool calls as (id, name, parsed input) dicts."""
    return [
        {"id": tc["id"], "name": tc["name"], "input": json.loads(tc["arguments"] or "{}")}
        for tc in (reply.tool_calls or ())
    ]
