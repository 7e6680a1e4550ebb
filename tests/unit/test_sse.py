"""The SSE parser: split anywhere, CRLF, comments, multi-line data, event names, pending tail."""

from __future__ import annotations

from runtime.codecs.sse import SSEParser

STREAM = b'event: message_start\r\ndata: {"a":1}\r\n\r\n: keep-alive\n\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n'


def events(parser: SSEParser, data: bytes, step: int) -> list[tuple[str | None, str]]:
    out = []
    for i in range(0, len(data), step):
        out.extend((e.event, e.data) for e in parser.feed(data[i : i + step]))
    return out


def test_same_events_whatever_the_chunking() -> None:
    expected = [("message_start", '{"a":1}'), (None, "line1\nline2"), (None, "[DONE]")]
    for step in (1, 2, 3, 7, len(STREAM)):
        assert events(SSEParser(), STREAM, step) == expected, step


def test_unterminated_event_is_pending() -> None:
    parser = SSEParser()
    assert parser.feed(b'data: {"cut": tr') == []
    assert parser.pending
