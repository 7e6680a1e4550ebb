"""OpenAI SSE in, the same bytes out: the scanner behind the streaming fast path.

When the provider speaks OpenAI's stream format and so does the client, the relay forwards the upstream
bytes instead of parsing every event into a dict and encoding it again. This scanner is all the parsing
that remains. It finds event boundaries, so only whole events are forwarded and a failure is never
spliced into the middle of one. It parses JSON only for the few events that need it:
- the usage event, for the log and the usage counters; it is dropped when the gateway asked for usage
  but the client did not;
- `[DONE]`, the proper end;
- an `error` object, which becomes a ProviderError, as OpenAIStream does;
- a finish reason, so that a body that ends cleanly after one is complete without `[DONE]` (several
  providers never send it): the client then gets a `[DONE]` the gateway adds;
- an event that does not have the shape of a JSON object (`data: {...}`): it is dropped and counted in
  `skipped`, and the stream goes on. The check is on the shape (counts of event starts and ends per read),
  not a full parse: an event with matching braces and broken JSON inside is forwarded as it came.

A cheap byte search decides which events to parse, so an ordinary content event costs one `rfind` and
three substring searches per read, whatever its size. The forwarded bytes are the provider's own, byte for
byte. The one exception is a stream with CR line ends: they are normalised to LF, because events can
only be split safely on one kind of separator.
"""

from __future__ import annotations

import re
from typing import Any

import ujson

from runtime.errors import GatewayError, ProviderError, UpstreamGarbage
from runtime.providers.base import Usage

_USAGE = rb'"usage"\s*:\s*\{'  # a usage object; `"usage":null` rides on every chunk
_ERROR = rb'"error"\s*:'
_SURROGATE = rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}"  # a UTF-16 surrogate as a JSON escape
_PARSE = re.compile(_USAGE + b"|" + _ERROR + b"|" + _SURROGATE)
_REASON = re.compile(rb'"finish_reason"\s*:\s*"')  # a finish reason (not the `null` of every other chunk)
DONE_EVENT = b"data: [DONE]\n\n"
_SURROGATES = re.compile(_SURROGATE)
MAX_EVENT = 64 << 20  # default bound on one event held while waiting for its end (the body cap's default)


def stream_event(payload: bytes | str) -> dict[str, Any]:
    """One OpenAI stream event's JSON object. Raises UpstreamGarbage for anything but an object, and
    ProviderError for an error event (an `error` without `choices`), as every OpenAI stream reader must."""
    try:
        chunk = ujson.loads(payload)
    except ValueError:
        raise UpstreamGarbage(f"upstream stream sent a non-JSON event: {payload[:120]!r}") from None
    if not isinstance(chunk, dict):
        raise UpstreamGarbage(f"upstream stream sent a non-object event: {payload[:120]!r}")
    err = chunk.get("error")
    if err is not None and "choices" not in chunk:
        message = err.get("message") if isinstance(err, dict) else str(err)
        raise ProviderError(
            f"upstream stream error: {message}",
            status=502,
            type=(err.get("type") if isinstance(err, dict) else None) or "api_error",
        )
    return chunk


def _needs_a_look(data: bytes) -> bool:
    """Whether any event in `data` may carry [DONE], an error, a usage object or an escaped surrogate.
    Substring searches (C memmem) first; a regex only when a cheap test cannot rule the event out."""
    if b"[DONE]" in data or b'"error"' in data:
        return True
    usage = data.count(b'"usage"')
    if usage and usage != data.count(b'"usage":null'):  # compact JSON carries `"usage":null` on every chunk
        return True
    return b"\\u" in data and _SURROGATES.search(data) is not None


class OpenAIPassThrough:
    """Scan one upstream OpenAI SSE stream; `feed` returns the bytes to forward (whole events only)."""

    __slots__ = ("_pending", "_reason", "_wants_usage", "failed", "finished", "max_event", "skipped", "source", "usage")

    def __init__(self, wants_usage: bool) -> None:
        self._wants_usage = wants_usage  # the client asked for the usage chunk (stream_options.include_usage)
        self._pending = b""
        self.max_event = MAX_EVENT  # the stream's owner sets the upstream body cap here
        self.usage: Usage | None = None
        self.finished = False
        self._reason = False  # a finish reason went by: a clean end of body completes the stream
        self.skipped = 0  # malformed events dropped
        # An error event met after other events of the same read: those are returned first, and this
        # is raised by the next call (the stream's owner checks it after forwarding them).
        self.failed: GatewayError | None = None
        # The whole events the last `feed` consumed, as the provider sent them (before a usage chunk
        # was dropped or a split surrogate replaced): what the request log folds.
        self.source = b""

    def feed(self, data: bytes) -> bytes:
        """The complete events `data` finishes, to forward as they are; the rest waits for more bytes.
        Raises ProviderError for an upstream error event and UpstreamGarbage for a malformed one."""
        if self.failed is not None:
            raise self.failed
        if self.finished:
            self.source = b""
            return b""  # nothing after [DONE] is part of the answer
        if self._pending:
            data = self._pending + data
            self._pending = b""
        if b"\r" in data:
            data = self._lf(data)
        end = data.rfind(b"\n\n")
        if end < 0:
            self._keep(data)
            self.source = b""
            return b""
        end += 2
        if end < len(data):
            self._keep(data[end:])
            data = data[:end]
        self.source = data
        if not self._reason:
            reasons = data.count(b'"finish_reason"')
            if reasons and reasons != data.count(b'"finish_reason":null') and _REASON.search(data) is not None:
                self._reason = True
        if _needs_a_look(data) or not _well_formed(data):
            return self._events(data)
        return data

    def close(self) -> bytes:
        """Upstream EOF: a last event without its blank line is still an event; a stream that ended
        cleanly after its finish reason is complete, and the client gets the `[DONE]` it did not send."""
        tail = b""
        if self._pending.strip() and not self.finished:
            rest, self._pending = self._pending, b""
            tail = self.feed(rest.rstrip(b"\n") + b"\n\n")
        if not self.finished and self._reason and self.failed is None:
            self.finished = True
            tail += DONE_EVENT
        return tail

    def _keep(self, rest: bytes) -> None:
        if len(rest) > self.max_event:
            raise UpstreamGarbage(f"upstream stream sent an event over {self.max_event} bytes without its end")
        self._pending = rest

    def _lf(self, data: bytes) -> bytes:
        # A trailing \r may be the first half of \r\n: hold it back until the next read.
        if data.endswith(b"\r"):
            self._pending = b"\r"
            data = data[:-1]
        return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    def _events(self, data: bytes) -> bytes:
        """The slow path, for reads holding a usage, error or [DONE] event: look at each event."""
        out: list[bytes] = []
        changed = False
        for event in data.split(b"\n\n"):
            if not event.strip(b"\n"):
                continue
            payload = _data_of(event)
            if payload == b"[DONE]":
                self.finished = True
                out.append(event)
                break
            if payload is not None and not _object_shaped(payload):
                self.skipped += 1  # not a JSON object: a client's SDK would fail on it
                changed = True
                continue
            if payload is not None and _PARSE.search(payload) is not None:
                try:
                    replaced = self._inspect(payload)
                except UpstreamGarbage:
                    self.skipped += 1
                    changed = True
                    continue
                except GatewayError as err:
                    if not out:
                        raise
                    self.failed = err  # forward the events before it; raised by the next call
                    changed = True
                    break
                if replaced is None:  # dropped
                    changed = True
                    continue
                if replaced:  # re-encoded
                    changed = True
                    event = replaced
            out.append(event)
        if not changed and not self.finished:
            return data
        if self.failed is not None:
            self.source = b"".join(event + b"\n\n" for event in out)
        return b"".join(event + b"\n\n" for event in out)

    def _inspect(self, payload: bytes) -> bytes | None:
        """Parse one event that may carry usage, an error or escaped surrogates: None to drop it, b"" to
        forward it unchanged, else the event re-encoded (only when it held a surrogate escape)."""
        chunk = stream_event(payload)
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_openai(usage)
            # We asked upstream for usage so the log always has it; the client did not: drop the
            # usage-only chunk (a client may index choices[0] of every chunk).
            if not self._wants_usage and not chunk.get("choices"):
                return None
        if _SURROGATES.search(payload) is not None:
            # A character split across two events arrives as two lone surrogates, which strict UTF-8
            # readers refuse: re-encode the event with pairs joined and lone ones as U+FFFD, as the
            # parsed path does (runtime/core/text.py).
            text = ujson.dumps(chunk, ensure_ascii=False, escape_forward_slashes=False)
            return b"data: " + text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace").encode()
        return b""


def _well_formed(data: bytes) -> bool:
    """Whether every event in `data` (whole events, LF line ends) is one `data: {...}` line: as many
    event starts and object ends as event separators. Anything else takes the per-event look."""
    events = data.count(b"\n\n")
    starts = data.count(b"\n\ndata: {") + (1 if data.startswith(b"data: {") else 0)
    return starts == events and data.count(b"}\n\n") == events


def _object_shaped(payload: bytes) -> bool:
    body = payload.strip()
    return body[:1] == b"{" and body[-1:] == b"}"


def _data_of(event: bytes) -> bytes | None:
    """The `data` of one SSE event (its `data:` lines joined), None when it has none (a comment)."""
    if event.startswith(b"data:") and b"\n" not in event:
        value = event[5:]
        return value[1:] if value[:1] == b" " else value
    lines = [line for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[6:] if line[5:6] == b" " else line[5:] for line in lines)
