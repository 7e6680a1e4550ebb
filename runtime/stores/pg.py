"""PostgreSQL connections for the stores (asyncpg): one pool per store per worker, bounded in time.

Why asyncpg: it speaks the wire protocol itself (no libpq), is the fastest Python driver, supports COPY
(`copy_records_to_table`, the log writer's batch insert) and LISTEN/NOTIFY (`add_listener`), and is
maintained by the uvloop authors. It is imported only by the PostgreSQL engines, so a gateway on the
embedded engines never loads it.

    connect_pool(settings)   a pool of `max_idle_conns`..`max_open_conns` connections; every query is
                             bounded by `command_timeout` (asyncpg cancels it server-side when it passes)
    connect(settings)        one dedicated connection (LISTEN needs one that the pool never hands out)
    PostgresUnavailable      what the engines raise when the server cannot be reached or refuses: the
                             message names host:port/db and the cause, never the password

Every engine that holds a pool keeps a `StoreStatus` (runtime/stores/status.py) for /health.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from runtime.config.model import PostgresSettings
from runtime.stores.status import StoreUnavailable

CONNECT_TIMEOUT_S = 5.0  # bound on opening one connection
COMMAND_TIMEOUT_S = 10.0  # bound on any one statement (admin queries carry their own, smaller budgets)
IDLE_LIFETIME_S = 300.0  # a pooled connection idle for longer is closed (the server may have restarted)


class PostgresUnavailable(StoreUnavailable):
    """The server could not be reached, refused us, or did not answer in time. Never holds a secret."""


# The driver's errors that mean "the server is not there or not usable right now" (vs. a bug in a query).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.InvalidPasswordError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.QueryCanceledError,
)


def _params(settings: PostgresSettings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "user": settings.user,
        "password": settings.password or None,
        "database": settings.database,
        "ssl": settings.ssl_mode,
        "timeout": CONNECT_TIMEOUT_S,
        "command_timeout": COMMAND_TIMEOUT_S,
    }


def unavailable(settings: PostgresSettings, exc: BaseException) -> PostgresUnavailable:
    """A PostgresUnavailable naming the server and the cause's kind and text (the driver's messages carry
    no password; the settings' password is scrubbed anyway, in case a server echoes it)."""
    text = str(exc) or type(exc).__name__
    if settings.password:
        text = text.replace(settings.password, "***")
    return PostgresUnavailable(f"{settings.describe()}: {type(exc).__name__}: {text}"[:500])


async def connect_pool(settings: PostgresSettings, **extra: Any) -> asyncpg.Pool:
    """A connection pool for one store of this worker (raises PostgresUnavailable)."""
    try:
        pool = await asyncpg.create_pool(
            min_size=settings.max_idle_conns,
            max_size=settings.max_open_conns,
            max_inactive_connection_lifetime=IDLE_LIFETIME_S,
            **_params(settings),
            **extra,
        )
    except CONNECTION_ERRORS as exc:
        raise unavailable(settings, exc) from None
    assert pool is not None
    return pool


async def connect(settings: PostgresSettings) -> asyncpg.Connection:
    """One dedicated connection (LISTEN); raises PostgresUnavailable."""
    try:
        return await asyncpg.connect(**_params(settings))
    except CONNECTION_ERRORS as exc:
        raise unavailable(settings, exc) from None
