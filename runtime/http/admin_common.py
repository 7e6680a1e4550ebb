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
    from runtime.http.admin_auth import AdminAuth
    from runtime.http.admin_ws import LiveHub
    from runtime.stores.config import ConfigStore
    from runtime.stores.logs import LogReader


@dataclass(slots=True)
class AdminState:
    store: ConfigStore
    auth: AdminAuth
    queries: LogReader | None
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
    """The JSON object body; raises AdminBadRequest with a readable message otherwise.

    JSON is UTF-8 (RFC 8259), and `"\\ud800"` is legal JSON that no UTF-8 file (config.json) or
    SQLite text can hold: a body with invalid UTF-8 or a lone surrogate is refused here, naming
    where, so no admin route ever has to cope with text it cannot store."""
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise AdminBadRequest(f"request body is not valid UTF-8 (byte {exc.start})") from None
    except ValueError as exc:
        raise AdminBadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AdminBadRequest("request body must be a JSON object")
    bad = unstorable_text(data, "")
    if bad is not None:
        raise AdminBadRequest("text must be valid Unicode (a lone UTF-16 surrogate such as \\ud800 is not)", param=bad)
    return data


def unstorable_text(value: Any, path: str) -> str | None:
    """The path of the first string (key or value) holding a lone surrogate, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "(body)"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if unstorable_text(k, sub) is not None:
                return sub.encode("utf-8", "backslashreplace").decode()
            found = unstorable_text(v, sub)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = unstorable_text(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


class AdminBadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.code = code

    def response(self) -> web.Response:
        return fail(self.message, self.status, param=self.param, code=self.code)
