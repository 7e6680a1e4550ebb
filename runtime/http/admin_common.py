"""Shared pieces of the admin API: its state key, JSON helpers and the one error shape.

Admin errors use the same `{"error": {message, type, code, param}}` body as inference errors, so the
UI and scripts handle one shape; `param` names the offending field (a config path for ConfigError).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from runtime.errors import GatewayError
from runtime.http.errors import error_response

if TYPE_CHECKING:
    from runtime.config.store import ConfigStore
    from runtime.http.admin_auth import AdminAuth
    from runtime.http.admin_ws import LiveHub
    from runtime.requestlog.queries import LogQueries


@dataclass(slots=True)
class AdminState:
    store: ConfigStore
    auth: AdminAuth
    queries: LogQueries | None
    hub: LiveHub
    started_at: float = field(default_factory=time.time)


ADMIN: web.AppKey[AdminState] = web.AppKey("admin")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data, ensure_ascii=False, default=str).encode(),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def fail(
    message: str,
    status: int = 400,
    *,
    code: str | None = None,
    param: str | None = None,
    type: str = "invalid_request_error",
) -> web.Response:
    return error_response(GatewayError(message, status=status, type=type, code=code, param=param))


async def read_object(request: web.Request) -> dict[str, Any]:
    """The JSON object body; raises AdminBadRequest with a readable message otherwise."""
    try:
        data = await request.json(loads=json.loads)
    except ValueError as exc:
        raise AdminBadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AdminBadRequest("request body must be a JSON object")
    return data


class AdminBadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.code = code

    def response(self) -> web.Response:
        return fail(self.message, self.status, param=self.param, code=self.code)
