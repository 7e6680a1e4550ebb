"""Reading and checking request bodies: size limit, JSON object, field types. Errors are 400/413."""

from __future__ import annotations

from typing import Any

import ujson
from aiohttp import web

from runtime.errors import InvalidRequest, PayloadTooLarge
from runtime.http.jsonlimits import check_body


async def read_json_object(request: web.Request, limit_bytes: int) -> tuple[bytes, dict[str, Any]]:
    """The raw body and its parsed JSON object. Raises PayloadTooLarge or InvalidRequest."""
    length = request.content_length
    if length is not None and length > limit_bytes:
        raise PayloadTooLarge(
            f"request body of {length} bytes exceeds the limit of {limit_bytes} bytes (client.max_request_body_size_mb)"
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(
            f"request body exceeds the limit of {limit_bytes} bytes (client.max_request_body_size_mb)"
        ) from None
    if len(raw) > limit_bytes:
        raise PayloadTooLarge(
            f"request body of {len(raw)} bytes exceeds the limit of {limit_bytes} bytes "
            "(client.max_request_body_size_mb)"
        )
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
