"""Reading and checking request bodies: size limit, read deadline, memory in flight, JSON object, field types.

Errors: 400 (not a JSON object), 413 (over `client.max_request_body_size_mb`), 408 (the body did not
arrive within `client.body_read_timeout_in_seconds`), 503 (this worker is already reading
`client.max_request_bodies_in_flight_mb` of bodies). The last two are what keep slow or stalled clients
from holding memory without bound: a body is only ever buffered while it is being read, its bytes are
counted against one per-worker budget, and its read has a deadline.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import ujson
from aiohttp import web

from runtime.config.model import ClientConfig
from runtime.errors import GatewayError, InvalidRequest, PayloadTooLarge
from runtime.http.jsonlimits import check_body

MIB = 1024 * 1024


class RequestBodyTimeout(GatewayError):
    """The client sent the headers but not the whole body in time (a stalled or trickling upload)."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class BodiesInFlightFull(GatewayError):
    """This worker is already reading as many request bytes as `client.max_request_bodies_in_flight_mb` allows."""

    status = 503
    type = "server_busy"
    code = "request_bodies_in_flight"


class BodyBudget:
    """Bytes of request bodies this worker holds while reading them, against one cap.

    A body with a Content-Length reserves its whole length before the first byte is read, so a request
    that cannot fit is refused at once instead of half-way; a chunked body reserves chunk by chunk.
    Single event loop: no lock needed (no await between the check and the update).
    """

    __slots__ = ("limit", "used")

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.used = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give_back(self, n: int) -> None:
        self.used -= n


@dataclass(frozen=True, slots=True)
class BodyReading:
    """How this worker reads request bodies: the read deadline and the in-flight budget."""

    timeout_s: float
    budget: BodyBudget

    @classmethod
    def from_client(cls, client: ClientConfig, workers: int = 1) -> BodyReading:
        """The cap is for the whole gateway, so each of `workers` processes gets an even share; a share never
        drops below one body of the largest allowed size, else such a body could never be accepted."""
        share = client.max_request_bodies_in_flight_mb / max(1, workers)
        limit_mb = max(share, client.max_request_body_size_mb)
        return cls(client.body_read_timeout_in_seconds, BodyBudget(int(limit_mb * MIB)))


# Installed by runtime.server.serve from the config; an app served some other way gets the defaults.
BODY_READING = web.AppKey("body_reading", BodyReading)
_default_reading: BodyReading | None = None


def _reading(request: web.Request) -> BodyReading:
    global _default_reading
    reading = request.app.get(BODY_READING)
    if reading is None:
        if _default_reading is None:
            _default_reading = BodyReading.from_client(ClientConfig())
        reading = _default_reading
    return reading


def _too_large(limit_bytes: int, length: int | None = None) -> PayloadTooLarge:
    size = "request body" if length is None else f"request body of {length} bytes"
    return PayloadTooLarge(f"{size} exceeds the limit of {limit_bytes} bytes (client.max_request_body_size_mb)")


def _busy(budget: BodyBudget) -> BodiesInFlightFull:
    return BodiesInFlightFull(
        f"too many request bodies are being read at once ({budget.used / MIB:.1f} of {budget.limit / MIB:.0f} MB "
        "in this worker, client.max_request_bodies_in_flight_mb); retry shortly"
    )


async def read_json_object(request: web.Request, limit_bytes: int) -> tuple[bytes, dict[str, Any]]:
    """The raw body and its parsed JSON object. Raises PayloadTooLarge, RequestBodyTimeout,
    BodiesInFlightFull or InvalidRequest."""
    length = request.content_length
    if length is not None and length > limit_bytes:
        raise _too_large(limit_bytes, length)
    reading = _reading(request)
    budget = reading.budget
    reserved = length or 0
    if not budget.take(reserved):
        raise _busy(budget)
    chunks: list[bytes] = []
    content = request.content
    try:
        if content.is_eof():
            # The usual case: the whole body came with the headers and is buffered already, so there is
            # nothing to wait for and no deadline to arm (a timer per request is measurable at 3k RPS).
            raw = await content.read()
            if len(raw) > limit_bytes:
                raise _too_large(limit_bytes)
            if len(raw) > reserved:  # chunked: reserve what it turned out to be
                if not budget.take(len(raw) - reserved):
                    raise _busy(budget)
                reserved = len(raw)
        else:
            received = 0
            async with asyncio.timeout(reading.timeout_s):
                while True:
                    chunk = await content.readany()
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > limit_bytes:
                        raise _too_large(limit_bytes)
                    if received > reserved:  # chunked (or a body longer than its Content-Length)
                        if not budget.take(received - reserved):
                            raise _busy(budget)
                        reserved = received
                    chunks.append(chunk)
            raw = b"".join(chunks)
    except TimeoutError:
        raise RequestBodyTimeout(
            f"the request body did not arrive within {reading.timeout_s:g} s (client.body_read_timeout_in_seconds)"
        ) from None
    finally:
        chunks.clear()  # a failed read frees what it held now, not when the exception is collected
        budget.give_back(reserved)
    if not raw:
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        body = ujson.loads(raw)
    except ValueError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    check_body(raw, body)
    return raw, body


_TYPE_WORDS = {
    str: "a string",
    list: "an array",
    dict: "an object",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
}


def require(body: dict[str, Any], field: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(field)
    if value is None:
        raise InvalidRequest(f"'{field}' is required", param=field, code="missing_required_parameter")
    return check_type(body, field, kind)


def check_type(body: dict[str, Any], field: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(field)
    if value is None:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        words = " or ".join(_TYPE_WORDS.get(k, k.__name__) for k in kinds)
        raise InvalidRequest(f"'{field}' must be {words}, got {type(value).__name__}", param=field, code="invalid_type")
    return value
