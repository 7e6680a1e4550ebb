"""config.json `config_store`, `logs_store` and `encryption_key`: which engine keeps the config document and
the request log, and the key that encrypts secrets at rest (Go Bifrost's blocks and field, same shape).

    "config_store": {"enabled": true, "type": "postgres",
                     "config": {"host": "127.0.0.1", "port": "5432", "user": "bifrost",
                                "password": "env.PG_PASSWORD", "db_name": "bifrost", "ssl_mode": "disable",
                                "max_open_conns": 10, "max_idle_conns": 2}}
    "logs_store":   {... the same shape ...}
    "encryption_key": "env.BIFROST_ENCRYPTION_KEY"

    type             "sqlite" (the embedded default: config.json and logs.db in the app dir) or "postgres"
    config.host      required; env.NAME allowed                                   (Go's fields, all)
    config.port      required, "5432" or 5432; env.NAME allowed
    config.user      required; env.NAME allowed
    config.password  required ("" for none / trust); env.NAME allowed; never in a message or a log line
    config.db_name   required; env.NAME allowed
    config.ssl_mode  required: disable | allow | prefer | require | verify-ca | verify-full
    config.max_open_conns   connections per worker process at most, default 10 (Go: 50 per process;
                            ours is per worker, and a gateway runs one worker per core)
    config.max_idle_conns   connections kept open when idle, default 2 (Go's default is 5)
    encryption_key   any passphrase (env.NAME allowed; the BIFROST_ENCRYPTION_KEY environment variable
                     when the field is absent, as in Go). A 32-byte AES-256-GCM key is derived from it
                     with Argon2id; PostgreSQL stores encrypt provider keys and virtual keys with it.

The embedded engine's Go field `config.path` loads with a warning (our files live in the app dir).
Anything else is an error naming its path. These blocks are read at start-up only: they say where the
rest of the configuration lives, so a change to them takes a restart (the config store never holds them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from runtime.config.load import ConfigError, _Reader
from runtime.config.model import PostgresSettings, StoresConfig

STORE_BLOCK_NAMES = ("config_store", "logs_store")
BLOCK_FIELDS = frozenset({"enabled", "type", "config"})
ENGINES = ("postgres", "sqlite")
POSTGRES_FIELDS = frozenset(
    {"host", "port", "user", "password", "db_name", "ssl_mode", "max_open_conns", "max_idle_conns"}
)
POSTGRES_REQUIRED = ("host", "port", "user", "password", "db_name", "ssl_mode")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
SQLITE_GO_FIELDS = frozenset({"path"})
ENCRYPTION_ENV = "BIFROST_ENCRYPTION_KEY"
# Blocks that say where configuration lives: read from the start-up file, never from a config store.
BOOTSTRAP_FIELDS = ("config_store", "logs_store", "shared_state", "encryption_key")


def parse_stores(
    raw: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None, warnings: list[str] | None = None
) -> StoresConfig:
    """The two store blocks and the encryption key of a raw document (absent: the embedded engines)."""
    env = os.environ if environ is None else environ
    raw = raw or {}
    config = _parse_block("config_store", raw.get("config_store"), env, warnings)
    logs = _parse_block("logs_store", raw.get("logs_store"), env, warnings)
    return StoresConfig(config=config, logs=logs, encryption_key=_encryption_key(raw, env))


def _parse_block(
    name: str, value: Any, environ: Mapping[str, str], warnings: list[str] | None
) -> PostgresSettings | None:
    if value is None:
        return None
    r = _Reader(value, name, environ)
    r.check(BLOCK_FIELDS, (), warnings)
    enabled = r.get("enabled", bool, True)
    kind = r.get("type", str, "sqlite")
    if kind not in ENGINES:
        raise ConfigError(f"{name}.type", f"unknown engine {kind!r}; known: {', '.join(ENGINES)}")
    conf = r.obj("config")
    if kind == "sqlite":
        if conf is not None:
            conf.check((), SQLITE_GO_FIELDS, warnings)  # `path`: our embedded files live in the app dir
        return None
    if conf is None:
        if not enabled:
            return None
        raise ConfigError(f"{name}.config", "is required for the postgres engine (host, port, user, ...)")
    settings = _parse_postgres(conf)
    return settings if enabled else None


def _parse_postgres(r: _Reader) -> PostgresSettings:
    r.check(POSTGRES_FIELDS, (), None)
    for key in POSTGRES_REQUIRED:
        if key not in r.data:
            raise ConfigError(f"{r.path}.{key}", "is required (Go Bifrost's postgres config)")
    host = r.get("host", str, env=True).strip()
    if not host:
        raise ConfigError(f"{r.path}.host", "must not be empty")
    port_value = r.get("port", (str, int), env=True)
    try:
        port = int(str(port_value).strip())
    except ValueError:
        raise ConfigError(f"{r.path}.port", 'expected a port number such as "5432"') from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{r.path}.port", f"the port must be 1-65535, got {port}")
    user = r.get("user", str, env=True)
    password = r.get("password", str, env=True)
    database = r.get("db_name", str, env=True)
    if not user or not database:
        raise ConfigError(f"{r.path}.{'user' if not user else 'db_name'}", "must not be empty")
    ssl_mode = r.get("ssl_mode", str, env=True)
    if ssl_mode not in SSL_MODES:
        raise ConfigError(f"{r.path}.ssl_mode", f"expected one of {', '.join(SSL_MODES)}, got {ssl_mode!r}")
    max_open = r.get("max_open_conns", int, 10)
    max_idle = r.get("max_idle_conns", int, 2)
    if max_open < 2:
        raise ConfigError(f"{r.path}.max_open_conns", f"must be 2 or more, got {max_open}")
    if max_idle < 0:
        raise ConfigError(f"{r.path}.max_idle_conns", f"must be zero or more, got {max_idle}")
    return PostgresSettings(
        host=host,
        port=port,
        user=user,
        password=password,
        database=database,
        ssl_mode=ssl_mode,
        max_open_conns=max_open,
        max_idle_conns=min(max_idle, max_open),
    )


def _encryption_key(raw: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    value = raw.get("encryption_key")
    if value is None:
        return environ.get(ENCRYPTION_ENV) or None
    r = _Reader({"encryption_key": value}, "", environ)
    key = r.get("encryption_key", str, env=True)
    return key or None
