"""The one place that touches the network for requests: the app's HTTPClient, and error mapping.

Transport failures are mapped here to the gateway's error tree, with messages that say which bound
was hit, so that retries, fallbacks and the log all see the same classification.
"""

from __future__ import annotations

import asyncio

import aiohttp

from runtime.core.httpclient import (
    DEFAULT_MAX_BODY,
    BodyTooLarge,
    ConnectError,
    ConnectTimeout,
    HTTPClient,
    HTTPClientError,
    ReadTimeout,
)
from runtime.errors import GatewayError, UpstreamGarbage, UpstreamTimeout, UpstreamTooLarge, UpstreamUnreachable


def make_client(
    pool_limit: int, pool_limit_per_host: int, keepalive_s: float, max_body: int = DEFAULT_MAX_BODY
) -> HTTPClient:
    """The app's upstream client (hot path). Created inside the running loop (cleanup_ctx).

    `max_body` is `client.max_upstream_response_mb` in bytes: the most one upstream answer may hold.
    """
    return HTTPClient(limit=pool_limit, limit_per_host=pool_limit_per_host, keepalive_s=keepalive_s, max_body=max_body)


def make_session() -> aiohttp.ClientSession:
    """An aiohttp session for auxiliary calls off the hot path (e.g. OAuth token fetches by adapters)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False)


def transport_error(exc: BaseException, provider: str, phase: str, seconds: float) -> GatewayError:
    """Map a transport failure to UpstreamTimeout, UpstreamUnreachable or UpstreamGarbage.

    `phase` is what we were waiting for ("response headers", "response body", "stream data") and
    `seconds` the bound that applied to it, for the message.
    """
    if isinstance(exc, ConnectTimeout):
        return UpstreamTimeout(f"timed out connecting to provider '{provider}' ({exc})", code="connect_timeout")
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, ReadTimeout)):
        code = {"response headers": "first_byte_timeout", "stream data": "stream_idle_timeout"}.get(
            phase, "request_timeout"
        )
        return UpstreamTimeout(f"provider '{provider}' sent no {phase} within {seconds:g}s", code=code)
    if isinstance(exc, BodyTooLarge):
        return UpstreamTooLarge(
            f"provider '{provider}' answered with more than {exc.limit / (1 << 20):g} MB (after decompression); "
            "raise client.max_upstream_response_mb to accept larger answers"
        )
    if isinstance(exc, ConnectError):
        return UpstreamUnreachable(f"provider '{provider}': {exc}")
    if isinstance(exc, HTTPClientError) and "closed the connection" in str(exc):
        return UpstreamUnreachable(f"provider '{provider}': {exc}")
    if isinstance(exc, HTTPClientError):
        return UpstreamGarbage(f"provider '{provider}' sent an invalid HTTP response: {exc}")
    return UpstreamUnreachable(f"provider '{provider}' request failed: {type(exc).__name__}: {exc}")


TRANSPORT_ERRORS = (HTTPClientError, TimeoutError, asyncio.TimeoutError, OSError)
