"""Binding the gateway's listening sockets, and saying in one line why it could not.

`run()` binds before anything else starts (before the app, the request log or any worker), so a port in
use, a privileged port or a wrong host stops the start at once with a line a person can act on, and a
`--port 0` start knows its real port for the banner and for every worker.
"""

from __future__ import annotations

import errno
import os
import socket


class StartError(RuntimeError):
    """The gateway cannot start; str() is the one line to show a person."""


class ListenError(StartError):
    def __init__(self, host: str, port: int, exc: OSError) -> None:
        self.host = host
        self.port = port
        self.errno = exc.errno
        shown = f"[{host}]" if ":" in host else host
        super().__init__(f"cannot listen on {shown}:{port}: {_explain(exc)}")


def _explain(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return (
            f"unknown host ({exc.strerror}); pass --host with an address of this machine "
            "(127.0.0.1 for this machine only, 0.0.0.0 for every interface)"
        )
    if exc.errno == errno.EADDRINUSE:
        return "address already in use; stop the other process or pass --port (0 picks a free port)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied (ports below 1024 need privileges); pass --port 1024 or higher"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            "address not available on this machine; pass --host 127.0.0.1 (this machine only) "
            "or 0.0.0.0 (every interface)"
        )
    return exc.strerror or str(exc)


def bind_sockets(host: str, port: int, *, backlog: int = 2048, listen: bool, reuse_port: bool) -> list[socket.socket]:
    """Sockets bound to every address `host` resolves to, all on one port (port 0: the first free one).

    `listen=False` only binds (the supervisor's check before it starts workers: a bound socket that does
    not listen receives no connections, and without SO_REUSEPORT it conflicts even with another
    SO_REUSEPORT listener, such as a second gateway). Raises ListenError.
    """
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        seen: set[tuple[int, str]] = set()
        for family, kind, proto, _name, address in infos:
            ip = str(address[0])
            if (family, ip) in seen:
                continue
            seen.add((family, ip))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            if os.name == "posix":  # as asyncio does: restart while old connections sit in TIME_WAIT
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((ip, port, *address[2:]))
            port = sock.getsockname()[1]  # port 0: every other address takes the same port
            if listen:
                sock.listen(backlog)
                sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(host, port, exc) from None
    return sockets


def bound_port(sockets: list[socket.socket]) -> int:
    return int(sockets[0].getsockname()[1])
