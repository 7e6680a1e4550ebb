"""Admin access: open on loopback; elsewhere every /api, /ws and UI request needs the admin token.
A token configured in config.json (`admin.token`) is required on loopback too (a gateway behind a reverse
proxy on the same host sees every client as 127.0.0.1).

The token comes from config.json (`"admin": {"token": "env.BIFROST_ADMIN_TOKEN"}`) or, failing that,
is generated at the first non-loopback start, printed once, and only its SHA-256 is kept
(`<app_dir>/admin_token.sha256`; delete that file to get a new token at the next start). Tokens are
long random strings, so a plain SHA-256 is enough, and checking it costs one hash per admin request.

Clients send it as `Authorization: Bearer <token>`, or sign in once (POST /api/session) and then
send the `bifrost_admin` session cookie (HttpOnly; a random session id, never the token itself;
signing out, DELETE /api/session, revokes it in every worker: see admin_sessions.py). WebSocket
clients, which cannot set headers, may pass the token as `?token=` on `/ws` only; a token in the
URL of any other route is ignored (URLs end up in proxy logs and browser history). Only admin
handlers are wrapped: inference routes never run any of this.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web

from runtime.config.load import ConfigError, resolve_env
from runtime.config.model import GatewayConfig
from runtime.http.admin_common import fail
from runtime.http.admin_sessions import SESSIONS_FILE, SessionStore
from runtime.http.origin import is_loopback

log = logging.getLogger("bifrost.admin")

COOKIE = "bifrost_admin"
TOKEN_FILE = "admin_token.sha256"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _configured_token(config: GatewayConfig, environ: Mapping[str, str]) -> str | None:
    admin = config.raw.get("admin")
    if not isinstance(admin, dict) or not admin.get("token"):
        return None
    value = resolve_env(admin["token"], "admin.token", environ)
    if not isinstance(value, str) or len(value) < 16:
        raise ConfigError("admin.token", "must be a string of at least 16 characters")
    return value


def _stored_or_new_digest(app_dir: Path) -> bytes:
    """The stored token hash; at the very first start, a new token (printed once) and its hash.

    O_EXCL makes exactly one of several starting workers create (and print) it."""
    path = app_dir / TOKEN_FILE
    app_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker may be writing it right now
            text = path.read_text().strip()
            if len(text) == 64:
                return bytes.fromhex(text)
            time.sleep(0.02)
        raise ConfigError(
            TOKEN_FILE, f"{path} is not a SHA-256 hex digest; delete it to generate a new token"
        ) from None
    with os.fdopen(fd, "w") as f:
        f.write(hashlib.sha256(token.encode()).hexdigest())
    banner = (
        f"\n  Admin token (shown once; the UI and /api ask for it because the gateway listens on a "
        f"non-loopback address):\n\n      {token}\n\n  Only its hash is kept in {path}; delete that file "
        f'to get a new token, or set "admin": {{"token": "env.NAME"}} in config.json.\n'
    )
    with contextlib.suppress(OSError):
        sys.stdout.write(banner)
        sys.stdout.flush()
    return _digest(token)


class AdminAuth:
    def __init__(self, required: bool, digest: bytes | None = None, sessions: SessionStore | None = None) -> None:
        self.required = required
        self._digest = digest
        self.sessions = sessions

    @classmethod
    def for_config(cls, config: GatewayConfig, environ: Mapping[str, str] | None = None) -> AdminAuth:
        env = os.environ if environ is None else environ
        token = _configured_token(config, env)
        # A configured token is required even on loopback: behind a reverse proxy on the same host (the
        # cluster deployment, docs/cluster.md) every request comes from 127.0.0.1, so "loopback" no longer
        # means "this machine's operator".
        if is_loopback(config.host) and not token:
            return cls(False)
        digest = _digest(token) if token else _stored_or_new_digest(Path(config.app_dir))
        return cls(True, digest, SessionStore(Path(config.app_dir) / SESSIONS_FILE))

    def reconfigure(self, config: GatewayConfig, environ: Mapping[str, str] | None = None) -> bool:
        """A config edit may set or change admin.token; True when it did (sessions must then end)."""
        if not self.required:
            return False
        with contextlib.suppress(ConfigError):
            token = _configured_token(config, os.environ if environ is None else environ)
            if token and _digest(token) != self._digest:
                self._digest = _digest(token)
                return True
        return False

    def valid(self, token: str | None) -> bool:
        if not token or self._digest is None:
            return False
        return hmac.compare_digest(_digest(token), self._digest)

    def allowed(self, request: web.Request) -> bool:
        if not self.required:
            return True
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer " and self.valid(header[7:].strip()):
            return True
        if self.sessions is not None and self.sessions.valid(request.cookies.get(COOKIE)):
            return True
        # Only the WebSocket may carry the token in its URL: browsers cannot set its headers.
        return request.path == "/ws" and self.valid(request.query.get("token"))


def guard(auth: AdminAuth, handler: Handler, *, public: bool = False) -> Handler:
    """Wrap one admin handler: requests without the token (when one is required, and the handler is
    not `public`) get 401 and never reach the handler.

    Cross-site requests (foreign Origin, non-loopback Host while open on loopback, non-JSON bodies)
    never get this far: runtime/http/origin.py refuses them for every route."""
    needs_token = auth.required and not public

    async def guarded(request: web.Request) -> web.StreamResponse:
        if needs_token and not auth.allowed(request):
            return fail(
                "admin token required: send 'Authorization: Bearer <token>' or sign in at /",
                401,
                code="admin_token_required",
                type="authentication_error",
            )
        return await handler(request)

    guarded.__name__ = getattr(handler, "__name__", "guarded")
    return guarded
