"""config.json `shared_state`: the engine of the shared-state store (runtime/stores/shared.py).

Go Bifrost has no such block: its cluster mode (`cluster_config`) shares state by gossip between
peers, and Redis appears only as a vector store (`vector_store.type: "redis"`, `$defs/redis_config`).
This block is ours (issue 14), shaped like Go's `config_store` / `logs_store` blocks, and its Redis
`config` takes the fields of Go's `redis_config`, so an operator writes what they would for Go:

    "shared_state": {"type": "redis",
                     "config": {"addr": "127.0.0.1:6379", "password": "env.REDIS_PASSWORD", "db": 0,
                                "key_prefix": "bifrost:", "context_timeout": "3s"}}

    enabled          false: the embedded engine (as when the block is absent)
    type             "sqlite" (the embedded default, <app_dir>/state.db) or "redis"
    config.addr      host:port (IPv6 as [addr]:port); env.NAME allowed       (Go's field)
    config.username / password   Redis AUTH; env.NAME allowed                (Go's fields)
    config.db        database number, default 0                              (Go's field)
    config.pool_size / max_active_conns   connections per worker, default 32 (Go's fields)
    config.dial_timeout     connect bound, default "2s"                      (Go's field)
    config.read_timeout / write_timeout   socket bound, default: context_timeout (Go's fields)
    config.context_timeout  the bound on every operation, default "3s"       (Go's field)
    config.key_prefix       prepended to every key and channel, default "bifrost:" (ours: several
                            gateways may share one Redis)
    failure_policy   "fail_closed" (default: budgets and limits are hard ceilings, a request that needs
                     the store while it is down is refused with 503) or "fail_open" (admitted, its spend
                     recorded locally and added to the store when it answers again); either engine
                     (docs/failure-policy.md)

Go's idle-pool fields (min_idle_conns, max_idle_conns, conn_max_lifetime, conn_max_idle_time) load
with a warning. Anything else is an error with its field path. Messages about a value read from the
environment name the reference, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from runtime.config.load import ConfigError, _Reader, shown
from runtime.config.model import RedisSettings, SharedStateConfig

BLOCK = "shared_state"
BLOCK_FIELDS = frozenset({"enabled", "type", "config", "failure_policy"})
FAILURE_POLICIES = ("fail_closed", "fail_open")
ENGINES = ("redis", "sqlite")
REDIS_FIELDS = frozenset(
    {
        "addr",
        "username",
        "password",
        "db",
        "pool_size",
        "max_active_conns",
        "dial_timeout",
        "read_timeout",
        "write_timeout",
        "context_timeout",
        "key_prefix",
    }
)
GO_REDIS_ONLY = frozenset({"min_idle_conns", "max_idle_conns", "conn_max_lifetime", "conn_max_idle_time"})
_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_shared_state(
    value: Any, environ: Mapping[str, str], warnings: list[str] | None = None
) -> SharedStateConfig | None:
    """The block -> SharedStateConfig; None when absent or disabled (the embedded engine)."""
    if value is None:
        return None
    r = _Reader(value, BLOCK, environ)
    r.check(BLOCK_FIELDS, (), warnings)
    enabled = r.get("enabled", bool, True)
    kind = r.get("type", str, "sqlite")
    if kind not in ENGINES:
        raise ConfigError(f"{BLOCK}.type", f"unknown engine {kind!r}; known: {', '.join(ENGINES)}")
    policy = r.get("failure_policy", str, "fail_closed")
    if policy not in FAILURE_POLICIES:
        raise ConfigError(f"{BLOCK}.failure_policy", f"expected one of {', '.join(FAILURE_POLICIES)}, got {policy!r}")
    # Switched off: the embedded engine, which still follows the policy when one is given.
    embedded = SharedStateConfig(type="sqlite", failure_policy=policy) if "failure_policy" in r.data else None
    conf = r.obj("config")
    if kind == "sqlite":
        if conf is not None:
            conf.check((), (), warnings)  # the embedded engine takes no settings: any field is unknown
        return SharedStateConfig(type="sqlite", failure_policy=policy) if enabled else embedded
    if conf is None:
        if not enabled:
            return embedded  # switched off: nothing to connect to, nothing to require
        raise ConfigError(f"{BLOCK}.config", 'is required for the redis engine (at least "addr": "host:port")')
    redis = _parse_redis(conf, warnings)
    return SharedStateConfig(type="redis", redis=redis, failure_policy=policy) if enabled else embedded


def _parse_redis(r: _Reader, warnings: list[str] | None) -> RedisSettings:
    r.check(REDIS_FIELDS, GO_REDIS_ONLY, warnings)
    host, port = _addr(r)
    db = r.get("db", int, 0)
    if db < 0:
        raise ConfigError(f"{r.path}.db", f"must be zero or more, got {db}")
    pool = r.get("pool_size", int, None)
    if pool is None:
        pool = r.get("max_active_conns", int, 32)
    if pool < 1:
        name = "pool_size" if "pool_size" in r.data else "max_active_conns"
        raise ConfigError(f"{r.path}.{name}", f"must be 1 or more, got {pool}")
    timeout = _duration(r, "context_timeout", 3.0)
    assert timeout is not None
    read, write = _duration(r, "read_timeout", None), _duration(r, "write_timeout", None)
    socket = None if read is None and write is None else max(t for t in (read, write) if t is not None)
    username = r.get("username", str, None, env=True)
    password = r.get("password", str, None, env=True)
    prefix = r.get("key_prefix", str, "bifrost:")
    if any(c.isspace() for c in prefix):
        raise ConfigError(f"{r.path}.key_prefix", f"must not contain spaces, got {prefix!r}")
    return RedisSettings(
        host=host,
        port=port,
        username=username or None,
        password=password or None,
        db=db,
        key_prefix=prefix,
        timeout_s=timeout,
        connect_timeout_s=_duration(r, "dial_timeout", 2.0) or 2.0,
        socket_timeout_s=socket,
        max_connections=pool,
    )


def _addr(r: _Reader) -> tuple[str, int]:
    """`addr` as (host, port): host:port, or [IPv6]:port."""
    text = r.get("addr", str, env=True)
    reference = r.reference("addr")
    # A URL with userinfo may carry a password: name the problem, never echo the value.
    got = "" if reference is None and "@" in text else f", got {shown(text, reference)}"
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^\s:/@\[\]]+):([0-9]{1,5})", text.strip())
    if match is None:
        raise ConfigError(f"{r.path}.addr", f"expected host:port (Go Bifrost's redis_config.addr){got}")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 1 <= port <= 65535:
        raise ConfigError(f"{r.path}.addr", f"the port must be 1-65535{got}")
    return host, port


def _duration(r: _Reader, key: str, default: float | None) -> float | None:
    """A Go duration string ("500ms", "3s", "1m") in seconds; it must be greater than zero."""
    text = r.get(key, str, None)
    if text is None:
        return default
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"{r.path}.{key}", f'expected a duration such as "500ms" or "3s", got {text!r}')
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{r.path}.{key}", f"must be greater than zero, got {text!r}")
    return seconds
