"""Server-sent events: an incremental parser for upstream streams and encoders for ours.

The parser follows the WHATWG event-stream rules that matter for LLM APIs: `\n`, `\r\n` or `\r` line
ends, `data:` lines joined with `\n`, an optional single space after the colon, comment lines starting
with `:`, and an event dispatched on a blank line.
"""

from __future__ import annotations

DONE = b"data: [DONE]\n\n"


class SSEEvent:
    __slots__ = ("data", "event")

    def __init__(self, event: str | None, data: str) -> None:
        self.event = event
        self.data = data

    def __repr__(self) -> str:
        return f"SSEEvent(event={self.event!r}, data={self.data[:60]!r})"


class SSEParser:
    """Feed bytes as they arrive; get back the events they complete."""

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            # A lone trailing \r may be the first half of \r\n: keep it for the next chunk.
            keep_cr = buf.endswith(b"\r")
            body = buf[:-1] if keep_cr else buf
            buf = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if keep_cr else b"")
        events: list[SSEEvent] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if not line:
                if self._data or self._event is not None:
                    events.append(SSEEvent(self._event, "\n".join(self._data)))
                self._data = []
                self._event = None
                continue
            if line[:1] == b":":
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value.decode("utf-8", "replace"))
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
        self._buf = buf[start:]
        return events

    @property
    def pending(self) -> bool:
        """Whether bytes or an unfinished event are still buffered (a cut stream)."""
        return bool(self._buf.strip() or self._data)


def encode_data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def encode_event(event: str, payload: bytes) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"
