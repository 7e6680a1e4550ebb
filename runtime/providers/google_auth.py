"""OAuth2 access tokens for a Google service account (the JWT bearer grant, RFC 7523), cached.

    assertion = base64url(header).base64url(claims).base64url(RS256 signature)
        header  {"alg": "RS256", "typ": "JWT", "kid": private_key_id}
        claims  {"iss": client_email, "scope": ..., "aud": token_uri, "iat": now, "exp": now + 3600}
    POST token_uri  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=...
        -> {"access_token": ..., "expires_in": 3599, "token_type": "Bearer"}

A token is reused until REFRESH_MARGIN_S before it expires; concurrent requests that find it stale
share one fetch. The token endpoint is the key file's `token_uri`, so a test (or a private endpoint)
can point it elsewhere. Failures map onto the gateway's errors: a refused grant is a 401, an
unreachable endpoint a retryable 502.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp

from runtime.errors import GatewayError, ProviderError, UpstreamUnreachable

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LIFETIME_S = 3600
REFRESH_MARGIN_S = 300
_FETCH_TIMEOUT = aiohttp.ClientTimeout(total=30)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def service_account(credentials: Any, where: str) -> dict[str, Any]:
    """`auth_credentials` (a JSON string or object) -> the key file's fields, checked."""
    info = credentials
    if isinstance(credentials, str):
        try:
            info = json.loads(credentials)
        except ValueError:
            raise _config_error(f"{where}: auth_credentials is not valid JSON") from None
    if not isinstance(info, Mapping):
        raise _config_error(f"{where}: auth_credentials must be a service-account key (JSON)")
    for field in ("client_email", "private_key"):
        if not isinstance(info.get(field), str) or not info[field]:
            raise _config_error(f"{where}: auth_credentials has no {field}")
    return dict(info)


def _config_error(message: str) -> GatewayError:
    return GatewayError(message, status=500, type="configuration_error", code="invalid_credentials")


def make_assertion(info: Mapping[str, Any], now: float, scope: str = SCOPE) -> str:
    """The signed JWT for the grant. Pure apart from the signature's key parsing."""
    # Imported here: `cryptography` is only needed by deployments that use Vertex AI.
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    token_uri = info.get("token_uri") or DEFAULT_TOKEN_URI
    header = {"alg": "RS256", "typ": "JWT"}
    if info.get("private_key_id"):
        header["kid"] = info["private_key_id"]
    issued = int(now)
    claims = {"iss": info["client_email"], "scope": scope, "aud": token_uri, "iat": issued, "exp": issued + LIFETIME_S}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    try:
        key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    except ValueError:
        raise _config_error("auth_credentials.private_key is not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise _config_error("auth_credentials.private_key must be an RSA key")
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


class _Token:
    __slots__ = ("expires_at", "value")

    def __init__(self, value: str, expires_at: float) -> None:
        self.value = value
        self.expires_at = expires_at


class TokenCache:
    """Access tokens per service account; one per app process (it lives on the adapter)."""

    def __init__(self, clock: Callable[[], float] = time.time, refresh_margin_s: float = REFRESH_MARGIN_S) -> None:
        self.clock = clock
        self.refresh_margin_s = refresh_margin_s
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._fetching: dict[tuple[str, str], asyncio.Future[_Token]] = {}

    async def token(self, info: Mapping[str, Any], session: aiohttp.ClientSession | None) -> str:
        key = (str(info["client_email"]), str(info.get("token_uri") or DEFAULT_TOKEN_URI))
        cached = self._tokens.get(key)
        if cached is not None and cached.expires_at - self.refresh_margin_s > self.clock():
            return cached.value
        pending = self._fetching.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(info, key, session))
            self._fetching[key] = pending
            pending.add_done_callback(lambda done: self._settled(key, done))
        token = await asyncio.shield(pending)
        return token.value

    def _settled(self, key: tuple[str, str], done: asyncio.Future[_Token]) -> None:
        self._fetching.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here: every waiter may have gone (clients disconnected)

    async def _fetch(
        self, info: Mapping[str, Any], key: tuple[str, str], session: aiohttp.ClientSession | None
    ) -> _Token:
        if session is None:
            raise UpstreamUnreachable("no HTTP session to fetch a Google access token with")
        now = self.clock()
        form = urlencode({"grant_type": GRANT, "assertion": make_assertion(info, now)})
        try:
            async with session.post(
                key[1], data=form, timeout=_FETCH_TIMEOUT, headers={"Content-Type": "application/x-www-form-urlencoded"}
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise UpstreamUnreachable(f"cannot reach the Google token endpoint {key[1]}: {exc}") from None
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        if status != 200 or not isinstance(body, dict) or not body.get("access_token"):
            detail = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
            message = f"Google token endpoint refused the service account {key[0]}: {detail or f'HTTP {status}'}"
            if status >= 500 or status == 429:
                raise ProviderError(message, status=502 if status >= 500 else 429, type="api_error")
            raise ProviderError(message, status=401, type="authentication_error", code="invalid_grant")
        token = _Token(str(body["access_token"]), now + float(body.get("expires_in") or LIFETIME_S))
        self._tokens[key] = token
        return token
