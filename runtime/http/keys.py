"""Typed application keys: the app's shared state, one AppKey each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from runtime.config.model import GatewayConfig
    from runtime.core.gateway import Gateway
    from runtime.stores.config import ConfigStore
    from runtime.stores.logs import LogStore, LogWriter
    from runtime.stores.shared import SharedState

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
CONFIG: web.AppKey[GatewayConfig] = web.AppKey("config")
LOG_WRITER: web.AppKey[LogWriter] = web.AppKey("log_writer")
CONFIG_STORE: web.AppKey[ConfigStore] = web.AppKey("config_store")
LOG_STORE: web.AppKey[LogStore] = web.AppKey("log_store")  # absent when client.enable_logging is false
SHARED_STATE: web.AppKey[SharedState] = web.AppKey("shared_state")  # opened in cleanup_ctx, per worker
