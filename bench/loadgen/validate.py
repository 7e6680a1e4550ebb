"""What counts as a success: status 200 and a well-formed body.

Kept apart from the protocol so the rule is easy to read and to test.  A non-streaming body must be
a JSON object holding the expected top-level key (``choices`` for chat/completions, ``data`` for
embeddings and models).  A stream must be SSE whose every ``data:`` line is JSON, none of them an
error event, and whose last event is ``data: [DONE]``.
"""

from __future__ import annotations

try:
    import ujson as _json
except ImportError:  # pragma: no cover
    import json as _json  # type: ignore[no-redef]

OK = "ok"


def check_json(body: bytes, expect: str) -> str:
    """Return ``"ok"`` or an error kind for a JSON response body."""
    try:
        obj = _json.loads(body)
    except ValueError:
        return "bad_json"
    if not isinstance(obj, dict):
        return "bad_json"
    value = obj.get(expect)
    if not value:
        return "bad_body" if "error" not in obj else "error_body"
    return OK


def check_sse(body: bytes) -> tuple[str, int]:
    """Return (kind, content events) for a complete SSE body."""
    events = 0
    done = False
    for block in body.split(b"\n\n"):
        block = block.strip()
        if not block:
            continue
        if done:
            return "sse_after_done", events
        for line in block.split(b"\n"):
            if not line.startswith(b"data:"):
                continue  # comments, event:, id: lines are legal SSE
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                continue
            try:
                obj = _json.loads(data)
            except ValueError:
                return "bad_sse", events
            if not isinstance(obj, dict) or "error" in obj:
                return "stream_error", events
            events += 1
    if not done:
        return "stream_cut", events
    return OK, events
