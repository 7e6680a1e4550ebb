"""Write a server-sent-event stream the way OpenAI does, with scripted stalls and cuts.

Each event is one `data: <json>\\n\\n`; a complete stream ends with `data: [DONE]\\n\\n`. A cut
aborts the TCP connection after N events, so the reader sees a truncated chunked body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from .recorder import Recorder
from .reply import Reply

SSE_HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive"}


def encode_event(data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


async def send_sse(
    request: web.Request,
    events: Iterable[Any],
    reply: Reply,
    recorder: Recorder,
    headers: Mapping[str, str],
) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **headers, **reply.headers})
    response.content_type = "text/event-stream"
    response.charset = "utf-8"
    await response.prepare(request)
    recorder.count("streams_started")
    recorder.status(200)
    for sent, event in enumerate([*events, "[DONE]"]):
        if reply.cut_after is not None and sent >= reply.cut_after:
            recorder.count("streams_cut")
            _abort(request)
            return response
        if reply.stall_after is not None and sent == reply.stall_after and reply.stall > 0:
            await asyncio.sleep(reply.stall)
        elif sent and reply.chunk_delay > 0:
            await asyncio.sleep(reply.chunk_delay)
        await response.write(encode_event(event))
    await response.write_eof()
    recorder.count("streams_completed")
    return response


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
