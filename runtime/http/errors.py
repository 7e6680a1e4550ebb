"""Rendering GatewayError as the one error shape every route answers with."""

from __future__ import annotations

from typing import Any

import ujson
from aiohttp import web

from runtime.core.context import RequestContext
from runtime.errors import GatewayError


def error_payload(err: GatewayError, ctx: RequestContext | None = None) -> dict[str, Any]:
    """OpenAI's error object plus Bifrost's fields (see runtime/errors.py for the tree)."""
    extra: dict[str, Any] = {}
    if ctx is not None:
        extra = {
            "provider": ctx.provider or None,
            "model_requested": ctx.model_requested or None,
            "attempts": ctx.attempts,
        }
    return {
        "error": {"message": err.message, "type": err.type, "code": err.code, "param": err.param},
        "is_bifrost_error": err.is_bifrost_error,
        "status_code": err.status,
        "extra_fields": extra,
    }


def error_response(
    err: GatewayError, ctx: RequestContext | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    hdrs = dict(headers or {})
    if err.retry_after_s is not None and err.status == 429:
        hdrs["Retry-After"] = str(max(1, round(err.retry_after_s)))
    return web.Response(
        status=err.status,
        body=ujson.dumps(error_payload(err, ctx)).encode(),
        content_type="application/json",
        headers=hdrs,
    )
