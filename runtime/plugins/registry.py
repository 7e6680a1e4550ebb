"""The one plugin table: built-ins and third-party plugins, looked up by the name `config.json` uses.

    "plugins": [{"name": "example", "enabled": true, "config": {"x": 1}}]

A third-party plugin is found through the `bifrost.plugins` entry-point group (importlib.metadata): the
entry point's name is the plugin's name, its object a callable `factory(config: dict) -> plugin` with an
optional `config_fields` mapping (field name -> type or tuple of types) that the config loader checks,
with paths like `plugins[0].config.x`. Built-ins are rows of the same table; their factories also get
the app's parts (the log writer, the metrics counters) through a PluginEnv.

Entry points are read once per process, and only a name the configuration uses is imported.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from runtime.cache.settings import FIELDS as CACHE_FIELDS

ENTRY_POINT_GROUP = "bifrost.plugins"

# Go Bifrost's built-in plugins this runtime does not implement: configured, they are a warning.
GO_ONLY = frozenset({"maxim", "otel", "jsonparser", "mocker"})


@dataclass
class PluginEnv:
    """What a built-in's factory may need from the app."""

    config: Any = None  # GatewayConfig
    writer: Any = None  # the log store's writer (None without a log store)
    metrics: Any = None  # the MetricsPlugin behind /metrics
    shared_state: Any = None  # this worker's shared-state store (runtime/stores/), for counters across workers


@dataclass(frozen=True)
class PluginSpec:
    name: str
    factory: Callable[[Mapping[str, Any], PluginEnv], Any]  # returns the plugin, or None (nothing to do)
    fields: Mapping[str, Any] = field(default_factory=dict)  # config field -> type(s)
    builtin: bool = False  # on by default; unknown config fields are Go settings we lack (warnings)
    # A built-in's Go config fields we lack (warnings); None: every unknown field is one. Any other field
    # is then a typo, an error: a misspelt security switch must not pass as "a Go setting".
    go_fields: frozenset[str] | None = None
    # A check of the whole config beyond field types (ranges, fields that need each other), run by the
    # config loader on every load and edit: check(config, path, warnings) raises the loader's ConfigError
    # with the field's path (`plugins[1].config.ttl`) and appends warnings.
    check: Callable[[Mapping[str, Any], str, list[str]], None] | None = None


def _request_log(config: Mapping[str, Any], env: PluginEnv) -> Any:
    from runtime.plugins.logging import RequestLogPlugin

    if env.writer is None:
        return None
    client = env.config.client
    return RequestLogPlugin(env.writer, not client.disable_content_logging, client.max_log_content_kb * 1024)


def _metrics(config: Mapping[str, Any], env: PluginEnv) -> Any:
    return env.metrics


def _governance(config: Mapping[str, Any], env: PluginEnv) -> Any:
    from runtime.core.cost import token_prices
    from runtime.governance.limits import BudgetAndRateLimits
    from runtime.governance.plugin import build

    # Budgets and rate limits count in this worker's shared-state store (opened by the first governed
    # request), priced from the model catalog and the providers' pricing_overrides.
    initial = env.config.providers
    shared = env.config.shared_state  # its failure_policy: what a request does while the store is down
    limits = BudgetAndRateLimits(
        env.shared_state,
        lambda provider, model: token_prices(provider, model, initial),
        failure_policy=shared.failure_policy if shared is not None else "fail_closed",
    )
    return build(env.config, limits=limits)  # reads its entry's config from env.config.plugins (live reloads)


def _guardrails(config: Mapping[str, Any], env: PluginEnv) -> Any:
    """Guardrails (runtime/guardrails/): built only when config.json's `guardrails_config` has an enabled
    rule with an enabled provider; live edits swap it (runtime/live.py)."""
    guardrails = env.config.guardrails
    if guardrails is None or not guardrails.active:
        return None
    from runtime.guardrails.plugin import GuardrailsPlugin

    return GuardrailsPlugin(guardrails, metrics=env.metrics)


def _cache_entry(config: Any) -> Any:
    """The enabled `semantic_cache` entry of a GatewayConfig, or None."""
    return next((p for p in config.plugins if p.name == "semantic_cache" and p.enabled), None)


def _check_semantic_cache(config: Mapping[str, Any], path: str, warnings: list[str]) -> None:
    from runtime.cache.settings import SettingsError, parse_settings
    from runtime.config.load import ConfigError

    try:
        settings = parse_settings(config)
    except SettingsError as err:
        raise ConfigError(f"{path}.{err.field}", err.message) from None
    warnings.extend(f"{path}.{warning}" for warning in settings.warnings)


def _semantic_cache(config: Mapping[str, Any], env: PluginEnv) -> Any:
    """The response cache (runtime/cache/): built only when a config enables it."""
    entry = _cache_entry(env.config)
    return None if entry is None else build_cache(entry.config, env.config)


def build_cache(config: Mapping[str, Any], gateway_config: Any, clock: Callable[[], float] | None = None) -> Any:
    """A SemanticCachePlugin for its (checked) config: the cluster store with Redis shared state and a
    PostgreSQL config store, else the embedded store in the app dir."""
    import time

    from runtime.cache.plugin import SemanticCachePlugin
    from runtime.cache.settings import SettingsError, parse_settings
    from runtime.cache.sqlite_store import SqliteCacheStore
    from runtime.config.load import ConfigError

    try:
        settings = parse_settings(config)
    except SettingsError as err:
        raise ConfigError(f"plugins.semantic_cache.config.{err.field}", err.message) from None
    dimension = settings.dimension if settings.semantic else None
    shared, postgres = gateway_config.shared_state, gateway_config.stores.config
    store: Any
    if shared is not None and shared.type == "redis" and shared.redis is not None and postgres is not None:
        # Cluster mode: every instance shares one cache (exact lookups in Redis, every entry in the config
        # store's PostgreSQL database, semantic indexes kept in sync): runtime/cache/cluster_store.py.
        from runtime.cache.cluster_store import ClusterCacheStore

        store = ClusterCacheStore(
            postgres, shared.redis, max_entries=settings.max_entries, max_bytes=settings.max_bytes, dimension=dimension
        )
    else:
        # The embedded engine: entries in memory for lookups, persisted to cache.db in the app dir (shared
        # by the workers of one instance).
        store = SqliteCacheStore(
            gateway_config.app_dir / "cache.db",
            max_entries=settings.max_entries,
            max_bytes=settings.max_bytes,
            dimension=dimension,
            shared_file=gateway_config.workers > 1,
        )
    # Followers of an identical request wait at most as long as the slowest provider may take.
    waits = [
        max(n.default_request_timeout_in_seconds, n.first_byte_timeout, n.stream_idle_timeout_in_seconds)
        * (1 + n.max_retries)
        for n in (p.network for p in gateway_config.providers.values())
    ]
    return SemanticCachePlugin(settings, store, wait_s=min(600.0, max(waits, default=60.0)), clock=clock or time.time)


def bind(plugins: list[Any], gateway: Any) -> None:
    """Hand the app's Gateway to the plugins that make requests of their own (the cache's embeddings)."""
    for plugin in plugins:
        bind_gateway = getattr(plugin, "bind_gateway", None)
        if bind_gateway is not None:
            bind_gateway(gateway)


# Go's names: "logging" is the request log, "telemetry" the Prometheus counters, "governance" virtual keys
# (first, so that a refused request reaches no other plugin's pre-hook).
BUILTINS: dict[str, PluginSpec] = {
    "governance": PluginSpec(
        "governance",
        _governance,
        {"is_vk_mandatory": bool},
        builtin=True,
        go_fields=frozenset(
            {"required_headers", "is_enterprise", "disable_auto_tool_inject", "routing_chain_max_depth"}
        ),
    ),
    # Guardrails: after governance (rules see the caller's virtual key and team), before the cache (which
    # then keys and stores what was redacted, never the original).
    "guardrails": PluginSpec("guardrails", _guardrails, builtin=True, go_fields=frozenset()),
    # The response cache: after governance (scoped by its virtual key), before the log and metrics.
    "semantic_cache": PluginSpec(
        "semantic_cache",
        _semantic_cache,
        CACHE_FIELDS,
        builtin=True,
        go_fields=frozenset(),  # every Go field is implemented (or accepted with a warning): others are typos
        check=_check_semantic_cache,
    ),
    "logging": PluginSpec("logging", _request_log, builtin=True),
    "telemetry": PluginSpec("telemetry", _metrics, builtin=True),
}


@functools.cache
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def find(name: str) -> PluginSpec | None:
    """The plugin called `name`: a built-in, else an installed entry point (imported now), else None."""
    spec = BUILTINS.get(name)
    if spec is not None:
        return spec
    ep = _entry_points().get(name)
    if ep is None:
        return None
    factory = ep.load()
    return PluginSpec(name, lambda config, _env: factory(dict(config)), getattr(factory, "config_fields", {}))


def names() -> list[str]:
    return sorted(set(BUILTINS) | set(_entry_points()))


def build(configured: tuple[Any, ...], env: PluginEnv) -> list[Any]:
    """The ordered plugin list: built-ins (unless configured `enabled: false`), then the enabled
    configured plugins in file order."""
    by_name = {p.name: p for p in configured}
    plugins: list[Any] = []
    for name, spec in BUILTINS.items():
        conf = by_name.get(name)
        if conf is None or conf.enabled:
            plugin = spec.factory(conf.config if conf is not None else {}, env)
            if plugin is not None:
                plugins.append(plugin)
    for conf in configured:
        if conf.enabled and conf.name not in BUILTINS:
            found = find(conf.name)
            if found is not None:
                plugins.append(found.factory(conf.config, env))
    return plugins
