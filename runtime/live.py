"""Apply a new GatewayConfig to the running gateway, and follow config.json edits made elsewhere.

This is app-level work (it reaches into the router, the plugins and the stores), so it lives beside
app.py, not in `config/`, which only parses and models the configuration.

Applying swaps the router (live lanes are kept by `Router.build`, so in-flight and queued requests
are unaffected: they hold the handles they resolved) and updates the few client settings that can
change at run time. `enable_logging` only takes effect at the next start: the request-log plugin is
part of the frozen hook tuple.

With several worker processes, each one runs a `ConfigWatcher`: it follows the config store's
change feed (`ConfigStore.changes()`; the embedded engine stats config.json once a second) and
applies each new config another worker (or a person) wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from runtime.config.model import ClientConfig, GatewayConfig
from runtime.core.gateway import Gateway
from runtime.core.hooks import Hooks
from runtime.core.router import Router
from runtime.stores.config import ConfigStore
from runtime.stores.logs import LogWriter

log = logging.getLogger("bifrost.config")

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


def _guardrails_raw(config: GatewayConfig) -> Any:
    """What decides the guardrails plugin: the block as configured and the built-in's on/off entry."""
    guardrails = config.guardrails
    entry = next((p for p in config.plugins if p.name == "guardrails"), None)
    return (None if guardrails is None else dict(guardrails.raw), None if entry is None else entry.enabled)


def _cache_entry(config: GatewayConfig) -> Any:
    return next((p for p in config.plugins if p.name == "semantic_cache"), None)


def swap_cache_plugin(gateway: Gateway, config: GatewayConfig) -> None:
    """The `semantic_cache` entry was added, enabled, disabled or edited: rebuild that plugin alone and
    swap the hook tuples in one assignment (requests in flight keep the tuples they started with). The
    old plugin's store is closed in a task (its followers go upstream)."""
    from runtime.plugins import registry  # only gateways whose cache config changes import it

    old = [p for p in gateway.hooks.plugins if getattr(p, "name", "") == "semantic_cache"]
    plugins = [p for p in gateway.hooks.plugins if getattr(p, "name", "") != "semantic_cache"]
    entry = _cache_entry(config)
    if entry is not None and entry.enabled:
        new = registry.build_cache(entry.config, config)
        registry.bind([new], gateway)
        # After governance (a refused request never reaches the cache) and guardrails (it stores what they
        # let through), before the log and metrics.
        before = ("governance", "guardrails")
        at = max((i + 1 for i, p in enumerate(plugins) if getattr(p, "name", "") in before), default=0)
        plugins.insert(at, new)
    gateway.hooks = Hooks(plugins)
    for plugin in old:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # applied outside the loop (a script): nothing runs to close it
            continue
        task = loop.create_task(plugin.aclose(), name="bifrost-cache-close")
        _closing.add(task)
        task.add_done_callback(_closed)
    log.info("semantic_cache: %s", "on" if entry is not None and entry.enabled else "off")


def swap_guardrails_plugin(gateway: Gateway, config: GatewayConfig) -> None:
    """The `guardrails_config` block changed: build a new guardrails plugin (or none, when no rule is
    active) in its place after governance, before the cache; swap the hook tuples in one assignment
    (requests in flight keep the engine they started with). The old one's remote detectors are closed
    in a task."""
    old = [p for p in gateway.hooks.plugins if getattr(p, "name", "") == "guardrails"]
    plugins = [p for p in gateway.hooks.plugins if getattr(p, "name", "") != "guardrails"]
    guardrails = config.guardrails
    on = guardrails is not None and guardrails.active and _guardrails_enabled(config)
    if on:
        from runtime.guardrails.plugin import GuardrailsPlugin  # only gateways with guardrails import it

        new = GuardrailsPlugin(
            guardrails, metrics=next((p for p in plugins if getattr(p, "name", "") == "metrics"), None)
        )
        new.bind_gateway(gateway)
        at = next((i + 1 for i, p in enumerate(plugins) if getattr(p, "name", "") == "governance"), 0)
        plugins.insert(at, new)
    gateway.hooks = Hooks(plugins)
    for plugin in old:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            continue
        task = loop.create_task(plugin.aclose(), name="bifrost-guardrails-close")
        _closing.add(task)
        task.add_done_callback(_closed)
    log.info("guardrails: %s", "on" if on else "off")


def _guardrails_enabled(config: GatewayConfig) -> bool:
    """Whether a `plugins` entry turned the built-in off (`{"name": "guardrails", "enabled": false}`)."""
    entry = next((p for p in config.plugins if p.name == "guardrails"), None)
    return entry is None or entry.enabled


_closing: set[asyncio.Task[None]] = set()  # strong references until the old stores are closed


def _closed(task: asyncio.Task[None]) -> None:
    _closing.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("closing a replaced plugin failed", exc_info=task.exception())


def apply_config(gateway: Gateway, config: GatewayConfig, writer: LogWriter | None) -> None:
    """Make `config` the running one. Synchronous: no request can observe a half-applied state."""
    cache_changed = _cache_entry(gateway.config) != _cache_entry(config)
    guardrails_changed = _guardrails_raw(gateway.config) != _guardrails_raw(config)
    gateway.set_router(
        Router.build(config.providers, config.client, previous=gateway.router, groups=config.model_groups)
    )
    gateway.config = config
    gateway.body_limit = int(config.client.max_request_body_size_mb * 1024 * 1024)
    if writer is not None:
        writer.capacity = config.client.initial_pool_size
        writer.retention_days = config.client.log_retention_days
    for plugin in gateway.hooks.plugins:
        if getattr(plugin, "name", "") == "request-log":
            plugin.content_logging = not config.client.disable_content_logging
        elif getattr(plugin, "name", "") == "governance":
            from runtime.governance.plugin import is_mandatory  # only gateways that govern import it

            plugin.reload(config.governance, is_mandatory(config), config.providers, config.model_groups)
    if guardrails_changed:
        swap_guardrails_plugin(gateway, config)
    if cache_changed:
        swap_cache_plugin(gateway, config)


class ConfigWatcher:
    """Applies what the store reports as changed elsewhere (another worker's or a person's edit)."""

    def __init__(self, store: ConfigStore, gateway: Gateway, writer: LogWriter | None) -> None:
        self.store = store
        self.gateway = gateway
        self.writer = writer
        self.reloads = 0

    def apply(self, new: GatewayConfig) -> None:
        apply_config(self.gateway, new, self.writer)
        self.reloads += 1
        where = getattr(self.store, "label", None)  # a server engine names itself; the embedded one is the file
        log.info(
            "%s: %d provider(s) applied",
            f"config changed in {where}" if where else "config.json changed on disk",
            len(new.providers),
        )
        for warning in new.warnings:
            log.warning("%s: %s", where or "config.json", warning)

    async def run(self) -> None:
        while True:
            try:
                async for new in self.store.changes():
                    self.apply(new)
            except asyncio.CancelledError:
                raise
            except Exception:  # a watcher that dies silently would be worse than a logged error
                log.exception("config watcher failed")
                await asyncio.sleep(1.0)

    async def lifespan(self, _app: object) -> AsyncIterator[None]:
        task = asyncio.create_task(self.run(), name="bifrost-config-watcher")
        yield
        # Cancel until it is done: a driver may swallow one cancellation (asyncpg's connect on Python 3.11
        # does when it lands mid-handshake), and a watcher that outlives shutdown would hang it.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        with contextlib.suppress(asyncio.CancelledError):
            task.exception()  # retrieved: a watcher failure at shutdown is not worth a warning
