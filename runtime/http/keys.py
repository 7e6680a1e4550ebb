"""Typed application keys: the app's shared state, one AppKey each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from runtime.config.model import GatewayConfig
    from runtime.core.gateway import Gateway
    from runtime.requestlog.writer import LogWriter

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
CONFIG: web.AppKey[GatewayConfig] = web.AppKey("config")
LOG_WRITER: web.AppKey[LogWriter] = web.AppKey("log_writer")
