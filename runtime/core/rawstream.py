"""The streaming fast path: an upstream stream forwarded as bytes, straight from the socket callback.

Used when the provider and the client speak the same stream format (OpenAI SSE) and no hook observes
chunks. The adapter's scanner (providers/openai_passthrough.py) reads only what usage, the end marker
and upstream errors need, and returns the bytes to forward. `pump` attaches a sink to the upstream
response. Each read the socket delivers is scanned and written to the client inside the same
callback: one write per read, no task switch, no future and no timer per chunk. The relay's task
sleeps in one `wait()` for the whole stream, with one idle deadline (runtime/net/client.py). It is
woken only by the end, a failure, the idle bound, a shutdown interrupt, or the sink asking it to wait
for a slow client.

Back-pressure: a client that does not keep up fills its socket buffer until aiohttp pauses writing;
the sink then stops reading from the upstream socket and wakes the task, which waits for the client to
drain (bounded by `client.stream_write_timeout_in_seconds`) and resumes reading.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter_ns
from typing import Any

from runtime.core.context import RequestContext
from runtime.core.upstream import TRANSPORT_ERRORS, incomplete_stream, transport_error
from runtime.errors import GatewayError
from runtime.net.client import Response
from runtime.providers.base import RawStreamScanner, Usage

# How long a stream that ended properly ([DONE]) waits for its body's own end to keep its socket.
LINGER_S = 1.0


class RawStream:
    """An opened upstream stream on the fast path: `first` is the bytes up to the first whole event."""

    __slots__ = (
        "_client_error",
        "_closed",
        "_idle_s",
        "_interrupted",
        "_lane",
        "_provider",
        "_response",
        "_scanner",
        "_waiting_client",
        "arrived_ns",
        "first",
        "source",
    )

    def __init__(self, scanner: RawStreamScanner, response: Response, lane: Any, provider: str, idle_s: float) -> None:
        self._scanner = scanner
        # Without a sink the response's own buffer is bounded by the body cap; with one, the scanner's
        # unfinished event is all that is held: the same cap applies to it.
        scanner.max_event = response.limit
        self._response = response
        self._lane = lane
        self._provider = provider
        self._idle_s = idle_s
        self._closed = False
        self._interrupted: GatewayError | None = None
        self._client_error: BaseException | None = None
        self._waiting_client = False
        self.first = b""
        self.source = b""  # what the last `next()` consumed as received: the request log folds this
        self.arrived_ns = 0

    @property
    def skipped(self) -> int:
        """Malformed events dropped so far (the scanner's count)."""
        return self._scanner.skipped

    @property
    def usage(self) -> Usage | None:
        return self._scanner.usage

    async def read_first(self) -> bytes:
        """Read until the first data event (or the end): what a fallback decision needs to see. Comments
        (keep-alives some providers send while the model thinks) before it are kept and sent with it."""
        first = await self.next() or b""
        while first and b"data:" not in first:
            more = await self.next()
            if more is None:
                break
            first += more
        return first

    async def next(self) -> bytes | None:
        """The next whole events to forward, read by the calling task (the path without a sink);
        None after the proper end. Raises GatewayError."""
        scanner = self._scanner
        response = self._response
        while True:
            if self._interrupted is not None:
                raise self._interrupted
            if scanner.failed is not None:
                raise scanner.failed
            if scanner.finished:
                return None
            try:
                data = await response.readany()
            except TRANSPORT_ERRORS as exc:
                if self._interrupted is not None:
                    raise self._interrupted from None
                raise transport_error(exc, self._provider, "stream data", self._idle_s) from None
            self.arrived_ns = perf_counter_ns()
            if not data:
                tail = self._end_of_body()
                self.source = scanner.source
                return tail or None
            out = scanner.feed(data)
            if out:
                self.source = scanner.source
                return out

    def _end_of_body(self) -> bytes:
        tail = self._scanner.close()
        if not self._scanner.finished:
            raise incomplete_stream(self._provider)
        return tail

    async def pump(
        self,
        ctx: RequestContext,
        write: Callable[[bytes], bool],
        client_drained: Callable[[], Awaitable[Any]],
        keep: Callable[[bytes], None] | None,
    ) -> None:
        """Forward the rest of the stream. `write` sends bytes to the client without waiting and says whether
        the client's socket buffer is now full (raises ConnectionError once the client is gone);
        `client_drained` waits (bounded) until it is not; `keep` receives the
        forwarded events as the provider sent them, for the request log. Returns at the proper end;
        raises GatewayError (upstream failure, idle timeout, shutdown interrupt, stalled client) or
        ConnectionError (client gone)."""
        scanner = self._scanner
        response = self._response
        if scanner.finished:
            return

        def sink(data: bytes) -> None:
            start = perf_counter_ns()
            try:
                out = scanner.feed(data)
                if out:
                    if keep is not None:
                        keep(scanner.source)
                    full = write(out)
                    if scanner.failed is not None:
                        response.fail(scanner.failed)
                    elif full:
                        self._waiting_client = True
                        response.pause_reading()
                        response.wake()
                if scanner.finished:
                    # Keep reading: the body's own end (a chunked terminator) usually follows in the same
                    # read, and a finished body returns its connection to the pool instead of closing it.
                    response.wake()
            except GatewayError as err:
                response.fail(err)
            except ConnectionError as exc:  # the client went away: stop reading, let the task report it
                self._client_error = exc
                response.fail(exc)
            except Exception as exc:  # a bug: never let it escape into the event loop's protocol callback
                response.fail(exc)
            ctx.gateway_ns += perf_counter_ns() - start

        backlog = response.attach_sink(sink)
        try:
            if backlog:
                sink(backlog)
            while True:
                if self._interrupted is not None:
                    raise self._interrupted
                if self._client_error is not None:
                    raise self._client_error
                if scanner.finished:
                    return
                err = response.error
                if err is not None:
                    if isinstance(err, GatewayError):
                        raise err
                    if isinstance(err, TRANSPORT_ERRORS):
                        raise transport_error(err, self._provider, "stream data", self._idle_s)
                    raise err
                if response.finished:
                    tail = self._end_of_body()
                    if tail:
                        if keep is not None:
                            keep(scanner.source)
                        write(tail)
                    return
                if self._waiting_client:
                    await client_drained()
                    self._waiting_client = False
                    response.resume_reading()
                    continue
                await response.wait()
        finally:
            response.detach_sink()
            self.arrived_ns = perf_counter_ns()

    def interrupt(self, err: GatewayError) -> None:
        """End the stream from outside (gateway shutdown): the pump raises `err`."""
        if self._closed or self._interrupted is not None:
            return
        self._interrupted = err
        self._response.fail(err)

    def close(self) -> None:
        """Release the lane slot and the upstream connection (closed unless the body was finished)."""
        if self._closed:
            return
        self._closed = True
        response = self._response
        if self._scanner.finished and self._scanner.failed is None:
            response.release_when_done(LINGER_S)
        else:
            response.close()  # tells the provider to stop generating
        if self._lane is not None:
            self._lane.release()
