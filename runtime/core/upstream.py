"""Upstream failures in the gateway's terms: the runtime.net client's errors mapped BY TYPE, in one table.

The client (runtime/net/) reports what happened on the wire in its own error classes; here each class
becomes one error of the gateway's tree (runtime/errors.py), with a message that names the provider and
the bound that was hit, so that retries, fallbacks and the log all see the same classification. Never
match on message text: a class is the contract, a message is for people.
"""

from __future__ import annotations

from collections.abc import Callable

from runtime.errors import (
    ConnectionPoolTimeout,
    GatewayError,
    UpstreamGarbage,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamUnreachable,
)
from runtime.net.errors import (
    BodyTooLarge,
    ConnectError,
    ConnectTimeout,
    InvalidHeader,
    NetError,
    NetTimeout,
    PoolTimeout,
    ProtocolError,
    ReadTimeout,
    ServerDisconnected,
)

# What the engine catches around a request: the client's errors, the caller's own `asyncio.timeout`
# deadlines (builtin TimeoutError) and a socket error that escaped the protocol (OSError).
TRANSPORT_ERRORS = (NetError, TimeoutError, OSError)

_PHASE_CODES = {"response headers": "first_byte_timeout", "stream data": "stream_idle_timeout"}


def _waited(exc: BaseException, provider: str, phase: str, seconds: float) -> GatewayError:
    # A read bound (the client's) or a deadline (the engine's asyncio.timeout): named by what we awaited.
    code = _PHASE_CODES.get(phase, "request_timeout")
    return UpstreamTimeout(f"provider '{provider}' sent no {phase} within {seconds:g}s", code=code)


def _connect_timeout(exc: BaseException, provider: str, phase: str, seconds: float) -> GatewayError:
    return UpstreamTimeout(f"timed out connecting to provider '{provider}' ({exc})", code="connect_timeout")


def _pool_timeout(exc: BaseException, provider: str, phase: str, seconds: float) -> GatewayError:
    return ConnectionPoolTimeout(f"provider '{provider}': {exc}")


def _too_large(exc: BaseException, provider: str, phase: str, seconds: float) -> GatewayError:
    limit = exc.limit if isinstance(exc, BodyTooLarge) else 0
    return UpstreamTooLarge(
        f"provider '{provider}' answered with more than {limit / (1 << 20):g} MB (after decompression); "
        "raise client.max_upstream_response_mb to accept larger answers"
    )


def _unreachable(exc: BaseException, provider: str, phase: str, seconds: float) -> GatewayError:
    return UpstreamUnreachable(f"provider '{provider}': {exc}")


def _garbage(exc: BaseException, provider: str, phase: str, seconds: float) -> GatewayError:
    return UpstreamGarbage(f"provider '{provider}' sent an invalid HTTP response: {exc}")


def _unsendable(exc: BaseException, provider: str, phase: str, seconds: float) -> GatewayError:
    return UpstreamGarbage(f"the request to provider '{provider}' could not be sent: {exc}")


def _failed(exc: BaseException, provider: str, phase: str, seconds: float) -> GatewayError:
    return UpstreamUnreachable(f"provider '{provider}' request failed: {type(exc).__name__}: {exc}")


Mapper = Callable[[BaseException, str, str, float], GatewayError]

# The one table. Looked up along the exception's MRO, so the most specific class listed wins.
TRANSPORT_ERROR_MAP: dict[type[BaseException], Mapper] = {
    ConnectTimeout: _connect_timeout,
    ReadTimeout: _waited,
    PoolTimeout: _pool_timeout,
    NetTimeout: _waited,
    TimeoutError: _waited,
    BodyTooLarge: _too_large,
    ConnectError: _unreachable,
    ServerDisconnected: _unreachable,
    ProtocolError: _garbage,
    InvalidHeader: _unsendable,
    NetError: _garbage,
    BaseException: _failed,
}


def transport_error(exc: BaseException, provider: str, phase: str, seconds: float) -> GatewayError:
    """Map a transport failure to the gateway's error for it (see TRANSPORT_ERROR_MAP).

    `phase` is what we were waiting for ("response headers", "response body", "stream data") and
    `seconds` the bound that applied to it, for the message.
    """
    for cls in type(exc).__mro__:
        mapper = TRANSPORT_ERROR_MAP.get(cls)
        if mapper is not None:
            return mapper(exc, provider, phase, seconds)
    return _failed(exc, provider, phase, seconds)  # unreachable: BaseException is in the table


def first_token_timeout(provider: str, seconds: float) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"provider '{provider}' sent no stream event within {seconds:g}s of its headers "
        "(network_config.first_token_timeout_in_seconds)",
        code="first_token_timeout",
    )


def incomplete_stream(provider: str) -> UpstreamGarbage:
    """The upstream body ended before the stream's own end marker ([DONE], message_stop, ...)."""
    return UpstreamGarbage(f"provider '{provider}' ended the stream without its end marker: the answer is incomplete")
