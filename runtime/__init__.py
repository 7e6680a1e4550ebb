"""Bifrost's gateway runtime: embed it with `create_app(config)` or run it with `run(config)`."""

from __future__ import annotations

from runtime.app import create_app
from runtime.config.load import ConfigError
from runtime.config.model import ClientConfig, GatewayConfig, KeyConfig, NetworkConfig, ProviderConfig, Tuning
from runtime.server import run, serve

__version__ = "0.1.0"

__all__ = [
    "ClientConfig",
    "ConfigError",
    "GatewayConfig",
    "KeyConfig",
    "NetworkConfig",
    "ProviderConfig",
    "Tuning",
    "__version__",
    "create_app",
    "run",
    "serve",
]
