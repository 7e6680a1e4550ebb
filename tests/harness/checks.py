"""Assertions about the gateway's contract that many tests share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def assert_error_shape(body: Any, status: int) -> dict[str, Any]:
    """The one error shape: OpenAI's error object plus is_bifrost_error, status_code, extra_fields."""
    assert isinstance(body, dict), f"error body is not a JSON object: {body!r}"
    error = body.get("error")
    assert isinstance(error, dict), f"no error object in {body!r}"
    for field in ("message", "type", "code", "param"):
        assert field in error, f"error.{field} missing in {body!r}"
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(body.get("is_bifrost_error"), bool), f"is_bifrost_error missing in {body!r}"
    assert body.get("status_code") == status, f"status_code {body.get('status_code')!r} != {status}"
    return error


def assert_gateway_headers(headers: Mapping[str, str]) -> int:
    """x-request-id and x-bf-overhead-us are on every response; returns the overhead in µs."""
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered.get("x-request-id"), f"x-request-id missing: {dict(lowered)}"
    overhead = lowered.get("x-bf-overhead-us")
    assert overhead is not None, f"x-bf-overhead-us missing: {dict(lowered)}"
    assert overhead.isdigit(), f"x-bf-overhead-us is not a whole number of µs: {overhead!r}"
    return int(overhead)
