"""Upstream networking: infrastructure below the core, knowing nothing of providers or the gateway.

client.py   the lean HTTP/1.1 keep-alive client the engine sends every upstream request with
errors.py   its own error classes (the engine maps them to runtime/errors.py by type)
slots.py    the FIFO socket caps (connection_pool_limit, connection_pool_limit_per_host)
session.py  an aiohttp session for adapters' auxiliary calls (token fetches), off the hot path
"""

from runtime.net.client import DEFAULT_MAX_BODY, Headers, HTTPClient, Response, make_client
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
from runtime.net.session import make_session

__all__ = [
    "DEFAULT_MAX_BODY",
    "BodyTooLarge",
    "ConnectError",
    "ConnectTimeout",
    "HTTPClient",
    "Headers",
    "InvalidHeader",
    "NetError",
    "NetTimeout",
    "PoolTimeout",
    "ProtocolError",
    "ReadTimeout",
    "Response",
    "ServerDisconnected",
    "make_client",
    "make_session",
]
