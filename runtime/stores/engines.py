"""The engines of each store, as tables: a name -> "module:factory", imported only when chosen.

config.json selects the config and log engines the way Go Bifrost does, with a `type` in its
`config_store` / `logs_store` blocks (parsed into `config.stores`, runtime/config/stores.py):

    config_store  "sqlite"    the embedded default: config.json in the app dir, live reload (config_file.py)
                  "postgres"  the document in PostgreSQL, secrets encrypted, LISTEN/NOTIFY (config_postgres.py)
    logs_store    "sqlite"    the embedded default: <app_dir>/logs.db, batched writer (logs_sqlite/)
                  "postgres"  a time-partitioned table, batched COPY writer (logs_postgres/)
    shared state  "sqlite"    the embedded default: <app_dir>/state.db, across workers (shared_sqlite.py)
                  "redis"     one Redis server, across instances (shared_redis.py)

A block that is absent, names "sqlite" or is `enabled: false` runs on the embedded engine.
The shared-state engine is chosen by our own `shared_state` block (Go Bifrost has none: see
runtime/config/shared_state.py), parsed into `config.shared_state`; absent or disabled: embedded.
Adding an engine is one row here and one module beside this one. The table modules are imported
lazily (uvicorn's LOOP_SETUPS pattern), so reading the names costs config validation nothing, and a
gateway on the embedded engines never imports a PostgreSQL driver.

A config store is opened before the app is built (`open_config_store`): with PostgreSQL, the document
the gateway runs is the database's (seeded from config.json), not the file's.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.config.model import GatewayConfig
    from runtime.stores.config import ConfigStore
    from runtime.stores.logs import LogStore
    from runtime.stores.shared import SharedState

CONFIG_STORE_ENGINES: dict[str, str] = {
    "sqlite": "runtime.stores.config_file:FileConfigStore",
    "postgres": "runtime.stores.config_postgres:PostgresConfigStore",
}
LOG_STORE_ENGINES: dict[str, str] = {
    "sqlite": "runtime.stores.logs_sqlite:SQLiteLogStore",
    "postgres": "runtime.stores.logs_postgres:PostgresLogStore",
}
SHARED_STATE_ENGINES: dict[str, str] = {
    "sqlite": "runtime.stores.shared_sqlite:SQLiteSharedState",
    "redis": "runtime.stores.shared_redis:RedisSharedState",
}

# The config.json blocks that select an engine, and their tables.
STORE_BLOCKS: dict[str, dict[str, str]] = {"config_store": CONFIG_STORE_ENGINES, "logs_store": LOG_STORE_ENGINES}
EMBEDDED = "sqlite"
SHARED_STATE_FILE = "state.db"


def engine_name(config: GatewayConfig, block: str) -> str:
    """The engine `config` selects for `block` ("config_store" or "logs_store")."""
    settings = config.stores.config if block == "config_store" else config.stores.logs
    return EMBEDDED if settings is None else "postgres"


def load(table: dict[str, str], name: str) -> Any:
    """The factory registered as `name` in `table` (imports its module)."""
    try:
        target = table[name]
    except KeyError:
        raise ValueError(f"no such store engine {name!r} (available: {', '.join(sorted(table))})") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_config_store(config: GatewayConfig) -> ConfigStore:
    """The config store `config` selects (`config_store.type`), holding `config` as its current document."""
    factory = load(CONFIG_STORE_ENGINES, engine_name(config, "config_store"))
    store: ConfigStore = factory.from_config(config)
    return store


async def open_config_store(config: GatewayConfig) -> ConfigStore:
    """The config store `config` selects, opened; its `current` is the config to run. An engine with an
    async `open_from_config(config)` (PostgreSQL: connect, seed from config.json on first start, read the
    document) is awaited; the embedded one is built as it is."""
    factory = load(CONFIG_STORE_ENGINES, engine_name(config, "config_store"))
    opener = getattr(factory, "open_from_config", None)
    store: ConfigStore = await opener(config) if opener is not None else factory.from_config(config)
    return store


def build_log_store(config: GatewayConfig) -> LogStore | None:
    """The request-log store of `config`, or None when logging is off. Not yet started."""
    if not config.client.enable_logging:
        return None
    factory = load(LOG_STORE_ENGINES, engine_name(config, "logs_store"))
    store: LogStore = factory.from_config(config)
    return store


def build_shared_state(config: GatewayConfig) -> SharedState:
    """This worker's shared-state store (not yet opened): the engine `shared_state.type` names, else embedded."""
    settings = config.shared_state
    if settings is None or settings.type == EMBEDDED:
        return build_shared_state_at(EMBEDDED, Path(config.app_dir) / SHARED_STATE_FILE)
    store: SharedState = load(SHARED_STATE_ENGINES, settings.type).from_config(config)
    return store


def build_shared_state_at(name: str, location: Path | str) -> SharedState:
    """A shared-state store of engine `name` at `location`: a file path (sqlite) or redis://host:port/db."""
    factory = load(SHARED_STATE_ENGINES, name)
    store: SharedState = factory(Path(location) if name == EMBEDDED else str(location))
    return store


async def open_shared_state_engine(name: str, location: Path | str) -> SharedState:
    """A shared-state store of engine `name` at `location`, opened (tests and benchmarks)."""
    store = build_shared_state_at(name, location)
    await store.open()
    return store
