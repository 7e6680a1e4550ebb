"""create_app(config): the aiohttp application — routes, typed state, and what it owns.

The app owns exactly one upstream ClientSession and its stores (runtime/stores/, engines chosen through
the tables of runtime/stores/engines.py): the config store and its change feed, the log store's
writer, and this worker's shared-state store. All are opened and closed by `cleanup_ctx`, so that
shutdown drains them in order (requests first, then the log, then shared state).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from runtime.config.model import GatewayConfig
from runtime.core import health_sync
from runtime.core.gateway import Gateway
from runtime.core.hooks import Hooks
from runtime.errors import GatewayError
from runtime.http import (
    admin,
    anthropic,
    capabilities,
    edge,
    genai,
    health,
    metrics,
    moderations,
    openai,
    responses,
    ui,
)
from runtime.http.drain import DRAIN, Drain
from runtime.http.errors import error_response
from runtime.http.internal import fault_injection
from runtime.http.keys import CONFIG, CONFIG_STORE, GATEWAY, LOG_STORE, LOG_WRITER, SHARED_STATE
from runtime.live import ConfigWatcher
from runtime.net import make_client, make_session
from runtime.plugins import registry
from runtime.plugins.metrics import METRICS, MetricsPlugin
from runtime.stores import engines
from runtime.stores.config import ConfigStore

log = logging.getLogger("bifrost")

# Route modules, in order; each has add_routes(app). Later features append theirs here.
ROUTE_MODULES: list[Callable[[web.Application], None]] = [health.add_routes, openai.add_routes]
ROUTE_MODULES.append(anthropic.add_routes)  # /anthropic/v1/messages (issue 4)
ROUTE_MODULES.append(genai.add_routes)  # /genai/v1beta/models/... for google-genai (issue 4)
ROUTE_MODULES.append(responses.add_routes)  # /v1/responses (issue 4)
ROUTE_MODULES.append(moderations.add_routes)  # /v1/moderations (issue 15)
ROUTE_MODULES.append(capabilities.add_routes)  # /v1/capabilities (issue 4)
ROUTE_MODULES.append(admin.add_routes)  # /api, /ws (issue 6)
ROUTE_MODULES.append(ui.add_routes)  # the web UI at / (issue 6)
ROUTE_MODULES.append(metrics.add_routes)  # /metrics for Prometheus (issue 6)


async def _not_found(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    return error_response(
        GatewayError(
            f"no route for {request.method} {request.path}", status=404, type="invalid_request_error", code="not_found"
        ),
        headers={"x-request-id": gw.new_id(), "x-bf-overhead-us": "0"},
    )


STORE_CLOSE_S = 5.0  # bound on closing the config store's connections at shutdown


def create_app(config: GatewayConfig, config_store: ConfigStore | None = None) -> web.Application:
    """The app for `config`. `config_store`: the store already opened by runtime/server.py (PostgreSQL:
    `config` is its document); None builds the one `config` names (embedded: config.json)."""
    body_limit = int(config.client.max_request_body_size_mb * 1024 * 1024)
    app = web.Application(client_max_size=body_limit)
    app[CONFIG] = config
    edge.install(app, config)  # Host check, CORS, JSON-only bodies, JSON 500 for our bugs: every route
    app[DRAIN] = Drain(config.shutdown_grace_s)  # live requests and streams, for a bounded stop
    log_store = engines.build_log_store(config)
    writer = None
    if log_store is not None:
        app[LOG_STORE] = log_store
        writer = app[LOG_WRITER] = log_store.writer
    app[METRICS] = MetricsPlugin()  # counts only; /metrics renders on scrape
    # Built-ins (request log, metrics) and configured plugins, from the one registry table.
    # Shared state before the plugins: governance counters live in it (opened by their first use).
    shared_state = app[SHARED_STATE] = engines.build_shared_state(config)
    plugins = registry.build(config.plugins, registry.PluginEnv(config, writer, app[METRICS], shared_state))
    fault_injection(app, plugins)  # test suite only (BIFROST_TEST_FAULTS=1); nothing otherwise
    gateway = Gateway(config, Hooks(plugins))
    spool = getattr(writer, "spool", None)  # the PostgreSQL writer's (runtime/stores/spool.py)
    if spool is not None:
        gateway.before_reply = spool.flush_pending
    registry.bind(plugins, gateway)  # plugins making requests of their own (the cache's embeddings)
    app[GATEWAY] = gateway
    if config_store is None:
        config_store = engines.build_config_store(config)
    app[CONFIG_STORE] = config_store

    async def upstream_session(app: web.Application) -> AsyncIterator[None]:
        t = config.tuning
        max_body = int(config.client.max_upstream_response_mb * (1 << 20))
        client = make_client(t.connection_pool_limit, t.connection_pool_limit_per_host, t.keepalive_timeout_s, max_body)
        session = make_session()
        gateway.engine.client = client
        gateway.engine.session = session
        yield
        await client.close()
        await session.close()

    async def request_log(app: web.Application) -> AsyncIterator[None]:
        if writer is not None:
            await writer.start()
        yield
        if writer is not None:
            await writer.close()

    async def shared(app: web.Application) -> AsyncIterator[None]:
        # One per worker, opened by its first use (governance's budgets and rate limits): until then no
        # file, no thread, no task. Closed after everything else at shutdown, once the plugins that count
        # in it have handed back what they leased (a plugin with an async `close`).
        yield
        for plugin in gateway.hooks.plugins:  # the live ones (runtime/live.py may have swapped some)
            close = getattr(plugin, "aclose", None)
            if close is not None:
                try:
                    await asyncio.wait_for(close(), config.shutdown_grace_s)
                except Exception:
                    log.exception("plugin %s failed to close", getattr(plugin, "name", plugin))
        await shared_state.close()

    async def config_store_connections(app: web.Application) -> AsyncIterator[None]:
        # A server engine's pool (PostgreSQL); the embedded store holds nothing open. Bounded.
        yield
        close = getattr(config_store, "close", None)
        if close is not None:
            try:
                await asyncio.wait_for(close(), STORE_CLOSE_S)
            except Exception:
                log.exception("closing the config store failed")

    # Order matters: cleanup runs in reverse, so the log (entered early) is drained after requests end,
    # the config store's connections are closed after that, and shared state (entered first) is closed last.
    app.cleanup_ctx.append(shared)
    app.cleanup_ctx.append(config_store_connections)
    if health_sync.wanted(config):  # breaker transitions to and from the other workers / instances
        app.cleanup_ctx.append(health_sync.HealthSync(shared_state, gateway).lifespan)
    app.cleanup_ctx.append(request_log)
    app.cleanup_ctx.append(upstream_session)
    app.cleanup_ctx.append(ConfigWatcher(config_store, gateway, writer).lifespan)  # live reload
    for add_routes in ROUTE_MODULES:
        add_routes(app)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app
