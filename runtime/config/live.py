"""Apply a new GatewayConfig to the running gateway, and follow config.json edits made elsewhere.

Applying swaps the router (live lanes are kept by `Router.build`, so in-flight and queued requests
are unaffected: they hold the handles they resolved) and updates the few client settings that can
change at run time. `enable_logging` only takes effect at the next start: the request-log plugin is
part of the frozen hook tuple.

With several worker processes, each one runs a `ConfigWatcher`: once a second it stats config.json
and, when another worker (or a person) replaced it, validates and applies the new file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from runtime.config.load import ConfigError
from runtime.config.model import ClientConfig, GatewayConfig
from runtime.config.store import ConfigStore
from runtime.core.gateway import Gateway
from runtime.core.router import Router
from runtime.requestlog.writer import LogWriter

log = logging.getLogger("bifrost.config")

WATCH_INTERVAL_S = 1.0
# Client settings that only a restart applies (everything else applies at once).
RESTART_ONLY = ("enable_logging",)


def restart_required(started: ClientConfig, new: ClientConfig) -> list[str]:
    """Settings of `new` that differ from what the process started with and need a restart.

    The body limit can shrink at once (the gateway checks it), but the HTTP server's own cap was set
    at start-up, so a larger limit waits for the next start."""
    names = [name for name in RESTART_ONLY if getattr(started, name) != getattr(new, name)]
    if new.max_request_body_size_mb > started.max_request_body_size_mb:
        names.append("max_request_body_size_mb")
    return names


def apply_config(gateway: Gateway, config: GatewayConfig, writer: LogWriter | None) -> None:
    """Make `config` the running one. Synchronous: no request can observe a half-applied state."""
    gateway.set_router(Router.build(config.providers, config.client, previous=gateway.router))
    gateway.config = config
    gateway.body_limit = int(config.client.max_request_body_size_mb * 1024 * 1024)
    if writer is not None:
        writer.capacity = config.client.initial_pool_size
        writer.retention_days = config.client.log_retention_days
    for plugin in gateway.hooks.plugins:
        if getattr(plugin, "name", "") == "request-log":
            plugin.content_logging = not config.client.disable_content_logging


class ConfigWatcher:
    """Polls the store and applies what changed on disk (another worker's or a person's edit)."""

    def __init__(
        self, store: ConfigStore, gateway: Gateway, writer: LogWriter | None, interval_s: float = WATCH_INTERVAL_S
    ) -> None:
        self.store = store
        self.gateway = gateway
        self.writer = writer
        self.interval_s = interval_s
        self.reloads = 0

    async def check(self) -> bool:
        """One poll; True when a new config was applied."""
        if not self.store.changed_on_disk():  # one stat, on the loop: cheap
            return False
        try:
            new = await asyncio.to_thread(self.store.poll)
        except (ConfigError, OSError) as exc:
            log.warning("config.json changed but cannot be used, keeping the running config: %s", exc)
            return False
        if new is None:
            return False
        apply_config(self.gateway, new, self.writer)
        self.reloads += 1
        log.info("config.json changed on disk: %d provider(s) applied", len(new.providers))
        for warning in new.warnings:
            log.warning("config.json: %s", warning)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception:  # a watcher that dies silently would be worse than a logged error
                log.exception("config watcher failed")

    async def lifespan(self, _app: object) -> AsyncIterator[None]:
        task = asyncio.create_task(self.run(), name="bifrost-config-watcher")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
