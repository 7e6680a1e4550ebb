"""The upstream HTTP client's own errors: what went wrong on the wire, in the client's terms.

    NetError                       every failure of `runtime.net.client`
    ├── ConnectError               no connection: refused, DNS, unreachable, an unusable URL
    ├── ServerDisconnected         the server closed (or reset) the connection before the response ended
    ├── ProtocolError              the response is not valid HTTP/1.x (head, chunking, compression)
    ├── BodyTooLarge               the body (after inflation) is larger than the client's `max_body`
    ├── InvalidHeader              a request header we were asked to send would break the request head
    └── NetTimeout                 a bound of the client's own ran out
        ├── ConnectTimeout         opening the connection (TCP + TLS) took longer than connect_timeout
        ├── ReadTimeout            no bytes from the server for read_timeout (headers or body)
        └── PoolTimeout            no free socket: the per-origin / total connection cap stayed full

These are deliberately not the gateway's errors (runtime/errors.py): the client is infrastructure
below the core and knows nothing of providers, lanes or retries. The engine maps them to the
gateway's tree by type, in one table (runtime/core/upstream.py). In particular a PoolTimeout (a wait
for a socket of our own pool) is never a provider's queue timeout (QueueTimeout, the lane's).
They are not subclasses of the builtin TimeoutError either, so that `except TimeoutError` around a
request catches only the caller's own `asyncio.timeout` deadlines.
"""

from __future__ import annotations


class NetError(Exception):
    """Any failure of the upstream HTTP client."""


class ConnectError(NetError):
    pass


class ServerDisconnected(NetError):
    """The server closed or reset the connection; `got_bytes` says whether any response byte had arrived
    (if not, on a reused keep-alive socket, the request was never read: see runtime/net/client.py)."""

    def __init__(self, message: str, *, got_bytes: bool = False) -> None:
        super().__init__(message)
        self.got_bytes = got_bytes


class ProtocolError(NetError):
    """The server's bytes are not a valid HTTP/1.x response."""


class BodyTooLarge(NetError):
    """The body (after gzip/deflate inflation) is larger than the client's `max_body`."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"upstream response body is larger than {limit} bytes")
        self.limit = limit


class InvalidHeader(NetError):
    """A request header name or value holds a line break: sending it would split the request head."""


class NetTimeout(NetError):
    """One of the client's own bounds ran out; `seconds` is the bound."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


class ConnectTimeout(NetTimeout):
    pass


class ReadTimeout(NetTimeout):
    pass


class PoolTimeout(NetTimeout):
    """Waited `seconds` for a free socket under `connection_pool_limit[_per_host]`; nothing was sent."""


__all__ = [
    "BodyTooLarge",
    "ConnectError",
    "ConnectTimeout",
    "InvalidHeader",
    "NetError",
    "NetTimeout",
    "PoolTimeout",
    "ProtocolError",
    "ReadTimeout",
    "ServerDisconnected",
]
