"""The one place that touches the network: send an UpstreamRequest on the app's ClientSession.

Transport failures are mapped here to the gateway's error tree, with messages that say which bound
was hit, so that retries, fallbacks and the log all see the same classification.
"""

from __future__ import annotations

import asyncio

import aiohttp

from runtime.errors import GatewayError, UpstreamTimeout, UpstreamUnreachable


def make_session(pool_limit: int, pool_limit_per_host: int, keepalive_s: float) -> aiohttp.ClientSession:
    """The app's single upstream session: pooled keep-alive connections, no cookie jar, no auto-decompress
    of our own bodies. Created inside the running loop (cleanup_ctx)."""
    connector = aiohttp.TCPConnector(
        limit=pool_limit, limit_per_host=pool_limit_per_host, keepalive_timeout=keepalive_s,
        ttl_dns_cache=300, enable_cleanup_closed=False,
    )
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True,
        skip_auto_headers=("User-Agent",), raise_for_status=False,
    )


def transport_error(exc: BaseException, provider: str, phase: str, seconds: float) -> GatewayError:
    """Map an aiohttp/asyncio failure to UpstreamTimeout or UpstreamUnreachable.

    `phase` is what we were waiting for ("response headers", "response body", "stream data") and
    `seconds` the bound that applied to it, for the message.
    """
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(f"timed out connecting to provider '{provider}'", code="connect_timeout")
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        code = {"response headers": "first_byte_timeout", "stream data": "stream_idle_timeout"}.get(
            phase, "request_timeout")
        return UpstreamTimeout(f"provider '{provider}' sent no {phase} within {seconds:g}s", code=code)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnreachable(f"cannot connect to provider '{provider}': {exc.os_error or exc}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamUnreachable(f"provider '{provider}' broke off the response: {exc}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamUnreachable(f"provider '{provider}' closed the connection before answering")
    if isinstance(exc, aiohttp.InvalidURL):
        return UpstreamUnreachable(f"provider '{provider}' has an invalid URL: {exc}")
    return UpstreamUnreachable(f"provider '{provider}' request failed: {type(exc).__name__}: {exc}")


TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, asyncio.TimeoutError, OSError)
