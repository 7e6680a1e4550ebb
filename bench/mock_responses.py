"""Precomputed OpenAI-shaped response bytes for the mock provider.

Everything is rendered once per settings change so that serving a request is a dict lookup and one
``transport.write``: the mock must cost far less per request than any gateway it stands behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

_MODEL = "gpt-4o-mini"
_CREATED = 1_700_000_000


@dataclass(frozen=True, slots=True)
class MockSettings:
    """What the mock answers with; changed live through ``POST /control``."""

    latency_ms: float = 0.0
    response_tokens: int = 40
    stream_chunks: int = 20
    chunk_interval_ms: float = 10.0
    embedding_dim: int = 256
    prompt_tokens: int = 20
    # Injected faults (a request whose body holds ``bench-fault:<kind>``, see mock_provider.FAULTS): how
    # long a "timeout" request is held before it is answered, and how many chunks a "cut" stream sends.
    fault_hold_ms: float = 4000.0
    fault_cut_chunks: int = 3


def _http(status: str, content_type: bytes, body: bytes) -> bytes:
    head = (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nx-request-id: mock\r\n\r\n"
    )
    return head + body


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _usage(s: MockSettings) -> dict[str, int]:
    return {
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.response_tokens,
        "total_tokens": s.prompt_tokens + s.response_tokens,
    }


def _text(tokens: int) -> str:
    # One short word per token keeps "response size" and completion_tokens consistent.
    return " ".join("lorem" for _ in range(max(tokens, 1)))


def _chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunked-transfer frame."""
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass(frozen=True, slots=True)
class Rendered:
    """Bytes ready to write for each route; stream pieces are written on a timer."""

    chat: bytes
    completions: bytes
    embeddings: bytes
    models: bytes
    health: bytes
    not_found: bytes
    stream_head: bytes
    stream_chunk: bytes
    stream_last: bytes
    stream_usage: bytes
    stream_done: bytes


def render(s: MockSettings) -> Rendered:
    """Render every response body for settings ``s``."""
    text = _text(s.response_tokens)
    chat = {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": _CREATED,
        "model": _MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": _usage(s),
    }
    completion = {
        "id": "cmpl-mock",
        "object": "text_completion",
        "created": _CREATED,
        "model": _MODEL,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
        "usage": _usage(s),
    }
    vector = [round(((i * 7919) % 2000) / 1000.0 - 1.0, 6) for i in range(s.embedding_dim)]
    embeddings = {
        "object": "list",
        "model": "text-embedding-3-small",
        "data": [{"object": "embedding", "index": 0, "embedding": vector}],
        "usage": {"prompt_tokens": s.prompt_tokens, "total_tokens": s.prompt_tokens},
    }
    models = {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": _CREATED, "owned_by": "mock"}
            for m in (_MODEL, "gpt-4o", "text-embedding-3-small")
        ],
    }
    per_chunk = max(s.response_tokens // max(s.stream_chunks, 1), 1)
    delta = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": _MODEL,
        "choices": [{"index": 0, "delta": {"content": _text(per_chunk) + " "}, "finish_reason": None}],
    }
    last = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": _MODEL,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    usage = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": _MODEL,
        "choices": [],
        "usage": _usage(s),
    }
    stream_head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\nx-request-id: mock\r\n\r\n"
    )
    return Rendered(
        chat=_http("200 OK", b"application/json", _json(chat)),
        completions=_http("200 OK", b"application/json", _json(completion)),
        embeddings=_http("200 OK", b"application/json", _json(embeddings)),
        models=_http("200 OK", b"application/json", _json(models)),
        health=_http("200 OK", b"application/json", b'{"status":"ok"}'),
        not_found=_http(
            "404 Not Found",
            b"application/json",
            _json(
                {
                    "error": {
                        "message": "mock: unknown route",
                        "type": "invalid_request_error",
                        "code": "not_found",
                        "param": None,
                    }
                }
            ),
        ),
        stream_head=stream_head,
        stream_chunk=_chunk(b"data: " + _json(delta) + b"\n\n"),
        stream_last=_chunk(b"data: " + _json(last) + b"\n\n"),
        stream_usage=_chunk(b"data: " + _json(usage) + b"\n\n"),
        stream_done=_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n",
    )
