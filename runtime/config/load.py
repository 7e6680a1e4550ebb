"""config.json + environment -> the frozen config model.

All validation happens here, at the edge, so the rest of the runtime can trust its config. A bad file
raises `ConfigError` whose message names the field path (`providers.openai.keys[0].weight: ...`); the
CLI prints that one line and exits. The raw file (with the `env.` references intact) is kept for
persisting edits.

Environment references (`env.NAME`) are read only where a secret or a deployment address belongs,
as Go Bifrost documents: a key's `value`, every field of a key's credential block
(`azure_key_config`, `bedrock_key_config`, `vertex_key_config`), `network_config.base_url`, the
values of `network_config.extra_headers`, `shared_state.config`'s addr/username/password (and
`admin.token`, read by the admin API). Any other text
field takes `env.NAME` literally (a key may be *named* `env.OPENAI_KEY`); a number or a flag written
as `env.NAME` is an error, so no setting silently comes from the environment. A message about a value
that came from the environment names the reference, never the value: `got env.X (value hidden)`.
A key whose variable is unset is skipped with a warning (Go Bifrost does the same).

Unknown fields stop the load with the field path and the closest known names; fields of Go Bifrost's
schema that this runtime does not implement are accepted with one warning each (runtime/config/fields.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runtime.config import fields
from runtime.config.groups import parse_model_groups
from runtime.config.model import (
    AzureKeyConfig,
    BreakerConfig,
    ClientConfig,
    GatewayConfig,
    KeyConfig,
    NetworkConfig,
    PluginConfig,
    ProviderConfig,
    Tuning,
)
from runtime.config.pricing import parse_pricing_overrides
from runtime.config.urls import UnsafeURL, check_base_url
from runtime.governance.entities import GovernanceConfig
from runtime.providers.registry import PROVIDER_SPECS, ProviderSpec, custom_spec


class ConfigError(ValueError):
    """The configuration cannot be used. `str()` is one line naming the field path."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class MissingEnv(ConfigError):
    """An `env.NAME` reference whose variable is not set (a key with one is skipped, not fatal)."""

    def __init__(self, path: str, variable: str) -> None:
        self.variable = variable
        super().__init__(path, f"environment variable {variable} is not set (referenced as env.{variable})")


_MISSING = object()
ENV_FIELDS_HELP = (
    "environment references (env.NAME) are read only in a key's value, its azure/bedrock/vertex_key_config, "
    "network_config.base_url, network_config.extra_headers and shared_state.config's addr/username/password"
)


def is_env_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("env.")


def shown(value: Any, reference: str | None = None) -> str:
    """How a config value appears in a message: a value read from the environment by its reference only."""
    return f"{reference} (value hidden)" if reference else repr(value)


def resolve_env_tree(value: Any, path: str, environ: Mapping[str, str]) -> Any:
    """resolve_env through nested objects and lists (provider key blocks such as bedrock_key_config)."""
    if isinstance(value, dict):
        return {k: resolve_env_tree(v, f"{path}.{k}", environ) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env_tree(v, f"{path}[{i}]", environ) for i, v in enumerate(value)]
    return resolve_env(value, path, environ)


def resolve_env(value: Any, path: str, environ: Mapping[str, str]) -> Any:
    """`env.NAME` -> the value of environment variable NAME (an unset variable is MissingEnv)."""
    if is_env_ref(value):
        name = value[4:]
        if name not in environ:
            raise MissingEnv(path, name)
        return environ[name]
    return value


class _Reader:
    """Typed access to one JSON object, remembering where it is for error messages."""

    def __init__(self, data: Any, path: str, environ: Mapping[str, str]) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected an object, got {_type_name(data)}")
        self.data = data
        self.path = path
        self.environ = environ

    def _sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _MISSING, *, env: bool = False) -> Any:
        """The field coerced to `kind`. With `env`, `env.NAME` is read from the environment; without, refused."""
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise ConfigError(self._sub(key), "is required")
            return default
        reference = None
        if is_env_ref(value):
            if env:
                reference = value
                value = resolve_env(value, self._sub(key), self.environ)
            elif not (kind is str or (isinstance(kind, tuple) and str in kind)):
                raise ConfigError(self._sub(key), f"{value} is not read here: {ENV_FIELDS_HELP}")
        return _coerce(value, kind, self._sub(key), reference)

    def reference(self, key: str) -> str | None:
        """The `env.NAME` the field was written as, if any (for messages about its value)."""
        value = self.data.get(key)
        return value if is_env_ref(value) else None

    def obj(self, key: str) -> _Reader | None:
        value = self.data.get(key)
        if value is None:
            return None
        return _Reader(value, self._sub(key), self.environ)

    def items(self) -> list[tuple[str, Any]]:
        return list(self.data.items())

    def check(self, ours: Any, go: Any, warnings: list[str] | None, go_schema: Any = None) -> None:
        fields.check_fields(self.data, self.path, ours, go, warnings, go_schema)


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _coerce(value: Any, kind: type | tuple[type, ...], path: str, reference: str | None = None) -> Any:
    """`value` as `kind`. Messages show `reference` (env.NAME) instead of a value read from the environment."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if bool in kinds:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected true or false, got {shown(value, reference)}")
    if isinstance(value, bool):  # bool is an int subclass; never accept it as a number
        raise ConfigError(path, f"expected {_kind_words(kinds)}, got {shown(value, reference)}")
    if float in kinds and isinstance(value, (int, float)):
        return _finite(float(value), path, reference)
    if int in kinds and isinstance(value, int):
        return value
    if int in kinds and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)  # a number written as a string
    if float in kinds and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            return _finite(number, path, reference)
    if isinstance(value, kinds):
        return value
    what = "a string" if reference else _type_name(value)
    raise ConfigError(path, f"expected {_kind_words(kinds)}, got {what} {shown(value, reference)}")


def _finite(value: float, path: str, reference: str | None) -> float:
    if not math.isfinite(value):  # NaN would pass every `< 0` check and disable a bound
        raise ConfigError(path, f"expected a finite number, got {shown(value, reference)}")
    return value


def _kind_words(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _positive(value: float, path: str, allow_zero: bool = False) -> float:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(path, f"must be {'zero or more' if allow_zero else 'greater than zero'}, got {value}")
    return value


# Fields this runtime implements in each object (Go Bifrost's names, plus our own extensions).
KEY_FIELDS = frozenset(
    {
        "name",
        "value",
        "models",
        "weight",
        "azure_key_config",
        "bedrock_key_config",
        "vertex_key_config",
        "anthropic_version",
        "anthropic_beta",
    }
)
AZURE_KEY_FIELDS = frozenset({"endpoint", "deployments", "api_version"})
BEDROCK_KEY_FIELDS = frozenset({"access_key", "secret_key", "session_token", "region", "arn", "deployments"})
VERTEX_KEY_FIELDS = frozenset({"project_id", "region", "auth_credentials"})
NETWORK_FIELDS = frozenset(
    {
        "base_url",
        "extra_headers",
        "default_request_timeout_in_seconds",
        "connect_timeout_in_seconds",
        "first_byte_timeout_in_seconds",
        "first_token_timeout_in_seconds",
        "stream_idle_timeout_in_seconds",
        "max_retries",
        "retry_backoff_initial_ms",
        "retry_backoff_max_ms",
        "retry_backoff_initial",
        "retry_backoff_max",
    }
)
LANE_FIELDS = frozenset({"concurrency", "buffer_size"})
CUSTOM_FIELDS = frozenset({"base_provider_type"})
PROVIDER_FIELDS = frozenset(
    {
        "keys",
        "network_config",
        "concurrency_and_buffer_size",
        "custom_provider_config",
        "models",
        "default_max_tokens",
        "pricing_overrides",
        "failure_policy",
        "supports_assistant_prefill",
        "circuit_breaker",
        "load_balancing",
    }
)
BREAKER_FIELDS = frozenset(f.name for f in dataclasses.fields(BreakerConfig))
LOAD_BALANCING = ("weighted", "adaptive")
TOP_FIELDS = frozenset(
    {
        "$schema",
        "providers",
        "client",
        "admin",
        "profile",
        "plugins",
        "shared_state",
        "governance",
        "model_groups",
        "guardrails_config",
        "config_store",
        "logs_store",
        "encryption_key",
    }
)
PLUGIN_FIELDS = frozenset({"name", "enabled", "config"})
GO_PLUGIN_FIELDS = frozenset({"path", "version", "placement", "order"})
ADMIN_FIELDS = frozenset({"token"})
_CREDENTIAL_BLOCKS = {
    "bedrock_key_config": (BEDROCK_KEY_FIELDS, fields.GO_BEDROCK_KEY),
    "vertex_key_config": (VERTEX_KEY_FIELDS, fields.GO_VERTEX_KEY),
}


def _models(r: _Reader, path: str) -> tuple[str, ...]:
    """A `models` list. `["*"]` is Go Bifrost's "every model", which is what an empty list means here."""
    models = r.get("models", list, [])
    for i, m in enumerate(models):
        if not isinstance(m, str):
            raise ConfigError(f"{path}.models[{i}]", f"expected a string, got {_type_name(m)}")
    return () if "*" in models else tuple(models)


def _base_url(r: _Reader, key: str, default: str | None, allow_private: bool) -> str | None:
    """A URL the gateway will send keys to, checked by the one rule (runtime/config/urls.py)."""
    url = r.get(key, str, default, env=True)
    if url is None or (url == default and r.data.get(key) is None):
        return url  # our own default, not the user's
    try:
        return check_base_url(url, allow_private=allow_private)
    except UnsafeURL as exc:
        reference = r.reference(key)
        # A URL with userinfo carries a password: name the problem, never echo it.
        got = "" if reference is None and "@" in url else f"; got {shown(url, reference)}"
        raise ConfigError(r._sub(key), f"{exc}{got}") from None


def _parse_key(
    data: Any,
    path: str,
    spec: ProviderSpec,
    environ: Mapping[str, str],
    client: ClientConfig,
    warnings: list[str] | None = None,
) -> KeyConfig:
    r = _Reader(data, path, environ)
    r.check(KEY_FIELDS, fields.GO_KEY, warnings, fields.KEY_SCHEMA)
    value = r.get("value", str, "", env=True)
    if spec.key_required and not value and spec.kind != "azure":
        raise ConfigError(f"{path}.value", "is required (a key, or env.NAME to read it from the environment)")
    models = _models(r, path)
    weight = _positive(r.get("weight", float, 1.0), f"{path}.weight", allow_zero=True)
    if weight == 0 and warnings is not None:
        warnings.append(
            f"{path}.weight is 0: this key gets traffic only when no key with a positive weight may serve the model"
        )
    azure = None
    az = r.obj("azure_key_config")
    if az is not None:
        az.check(AZURE_KEY_FIELDS, fields.GO_AZURE_KEY, warnings)
    if spec.kind == "azure":
        if az is None:
            raise ConfigError(f"{path}.azure_key_config", "is required for Azure keys (endpoint, deployments)")
        deployments = az.get("deployments", dict, {})
        for model, dep in deployments.items():
            if not isinstance(dep, str):
                raise ConfigError(f"{path}.azure_key_config.deployments.{model}", "expected a string")
        endpoint = _base_url(az, "endpoint", None, client.allow_private_base_urls)
        if endpoint is None:
            raise ConfigError(f"{path}.azure_key_config.endpoint", "is required")
        azure = AzureKeyConfig(
            endpoint=endpoint,
            deployments=MappingProxyType(dict(deployments)),
            api_version=az.get("api_version", str, "2024-10-21", env=True),
        )
    # The native adapters' fields (credential blocks, anthropic_*) travel in `extra`; Go-only fields do not.
    extra: dict[str, Any] = {}
    for k, v in r.items():
        if k not in KEY_FIELDS or k in ("name", "value", "models", "weight", "azure_key_config") or v is None:
            continue
        where = f"{path}.{k}"
        if k in _CREDENTIAL_BLOCKS:
            ours, go = _CREDENTIAL_BLOCKS[k]
            _Reader(v, where, environ).check(ours, go, warnings, fields.properties(fields.KEY_SCHEMA).get(k))
            extra[k] = resolve_env_tree(v, where, environ)
        else:
            extra[k] = v  # anthropic_version / anthropic_beta: literal text
    return KeyConfig(
        name=r.get("name", str, "") or f"key-{path.rsplit('[', 1)[-1].rstrip(']')}",
        value=value,
        models=models,
        weight=weight,
        azure=azure,
        extra=MappingProxyType(extra),
    )


def _parse_network(
    r: _Reader | None, spec: ProviderSpec, client: ClientConfig, warnings: list[str] | None = None
) -> NetworkConfig:
    d = NetworkConfig()
    if r is None:
        return NetworkConfig(base_url=spec.base_url)
    r.check(NETWORK_FIELDS, fields.GO_NETWORK, warnings, fields._DEFS.get("network_config"))
    headers = r.get("extra_headers", dict, {})
    resolved_headers = {}
    for k, v in headers.items():
        if not isinstance(v, str):
            raise ConfigError(f"{r.path}.extra_headers.{k}", "expected a string")
        value = resolve_env(v, f"{r.path}.extra_headers.{k}", r.environ)
        if any(c in value for c in "\r\n\0") or any(c in k for c in "\r\n\0:"):
            # Header values are often credentials: say what is wrong without echoing the value.
            got = f"; got {shown(value, v)}" if is_env_ref(v) else ""
            raise ConfigError(f"{r.path}.extra_headers.{k}", f"must not contain line breaks (or ':' in the name){got}")
        resolved_headers[k] = value
    # Go Bifrost spells the backoff fields both with and without the `_ms` suffix.
    initial = r.get("retry_backoff_initial_ms", int, None)
    if initial is None:
        initial = r.get("retry_backoff_initial", int, d.retry_backoff_initial_ms)
    cap = r.get("retry_backoff_max_ms", int, None)
    if cap is None:
        cap = r.get("retry_backoff_max", int, d.retry_backoff_max_ms)
    base_url = _base_url(r, "base_url", spec.base_url, client.allow_private_base_urls)
    first_byte = r.get("first_byte_timeout_in_seconds", float, None)
    first_token = r.get("first_token_timeout_in_seconds", float, None)
    net = NetworkConfig(
        base_url=base_url,
        extra_headers=MappingProxyType(resolved_headers),
        default_request_timeout_in_seconds=r.get(
            "default_request_timeout_in_seconds", float, d.default_request_timeout_in_seconds
        ),
        connect_timeout_in_seconds=r.get("connect_timeout_in_seconds", float, d.connect_timeout_in_seconds),
        first_byte_timeout_in_seconds=first_byte,
        first_token_timeout_in_seconds=first_token,
        stream_idle_timeout_in_seconds=r.get("stream_idle_timeout_in_seconds", float, d.stream_idle_timeout_in_seconds),
        max_retries=r.get("max_retries", int, d.max_retries),
        retry_backoff_initial_ms=initial,
        retry_backoff_max_ms=cap,
    )
    for name in ("default_request_timeout_in_seconds", "connect_timeout_in_seconds", "stream_idle_timeout_in_seconds"):
        _positive(getattr(net, name), f"{r.path}.{name}")
    if first_byte is not None:
        _positive(first_byte, f"{r.path}.first_byte_timeout_in_seconds")
    if first_token is not None:
        _positive(first_token, f"{r.path}.first_token_timeout_in_seconds")
    _positive(net.max_retries, f"{r.path}.max_retries", allow_zero=True)
    _positive(net.retry_backoff_initial_ms, f"{r.path}.retry_backoff_initial_ms", allow_zero=True)
    _positive(net.retry_backoff_max_ms, f"{r.path}.retry_backoff_max_ms", allow_zero=True)
    return net


def parse_provider(
    name: str,
    data: Any,
    environ: Mapping[str, str],
    tuning: Tuning,
    *,
    client: ClientConfig | None = None,
    warnings: list[str] | None = None,
) -> ProviderConfig:
    """One `providers.<name>` entry -> ProviderConfig. `warnings` collects accepted-but-ineffective fields."""
    client = client or ClientConfig()
    path = f"providers.{name}"
    r = _Reader(data, path, environ)
    r.check(PROVIDER_FIELDS, fields.GO_PROVIDER, warnings, fields.PROVIDER_SCHEMA)
    custom = r.obj("custom_provider_config")
    if custom is not None:
        custom.check(CUSTOM_FIELDS, fields.GO_CUSTOM, warnings, fields._DEFS.get("custom_provider_config"))
        base_type = custom.get("base_provider_type", str, "openai")
        net_r = r.obj("network_config")
        base_url = _base_url(net_r, "base_url", None, client.allow_private_base_urls) if net_r else None
        try:
            spec = custom_spec(name, base_type, base_url)
        except KeyError:
            raise ConfigError(
                f"{path}.custom_provider_config.base_provider_type",
                f"unknown provider type {base_type!r}{fields.suggest(base_type, PROVIDER_SPECS)}; "
                f"known: {', '.join(sorted(PROVIDER_SPECS))}",
            ) from None
    else:
        known = PROVIDER_SPECS.get(name)
        if known is None:
            raise ConfigError(
                path,
                f"unknown provider{fields.suggest(name, PROVIDER_SPECS)}; declare a custom one with "
                '"custom_provider_config": {"base_provider_type": "openai"} and '
                f"network_config.base_url (known providers: {', '.join(sorted(PROVIDER_SPECS))})",
            )
        spec = known
    keys_data = r.get("keys", list, [])
    keys: list[KeyConfig] = []
    missing: list[str] = []
    for i, k in enumerate(keys_data):
        try:
            keys.append(_parse_key(k, f"{path}.keys[{i}]", spec, environ, client, warnings))
        except MissingEnv as exc:
            # Go Bifrost starts without such a key and says so; so do we.
            missing.append(exc.variable)
            if warnings is not None:
                warnings.append(f"{path}.keys[{i}]: skipped, environment variable {exc.variable} is not set")
    if missing and not keys:
        if warnings is not None:
            warnings.append(
                f"{path}: no usable key (environment variable {', '.join(dict.fromkeys(missing))} not set); "
                "its requests fail until it is set"
            )
    elif spec.key_required and not keys:
        raise ConfigError(f"{path}.keys", f"{name} needs at least one key")
    network = _parse_network(r.obj("network_config"), spec, client, warnings)
    if network.base_url is None and spec.kind not in ("azure", "mock") and spec.base_url is None:
        raise ConfigError(f"{path}.network_config.base_url", "is required for this provider")
    lane = r.obj("concurrency_and_buffer_size")
    concurrency = tuning.default_concurrency
    buffer_size = tuning.default_buffer_size
    if lane is not None:
        lane.check(LANE_FIELDS, fields.GO_LANE, warnings)
        concurrency = int(_positive(lane.get("concurrency", int, concurrency), f"{lane.path}.concurrency"))
        buffer_size = int(
            _positive(lane.get("buffer_size", int, buffer_size), f"{lane.path}.buffer_size", allow_zero=True)
        )
    models = _models(r, path)
    extra: dict[str, Any] = {}
    max_tokens = r.get("default_max_tokens", int, None)
    if max_tokens is not None:
        extra["default_max_tokens"] = int(_positive(max_tokens, f"{path}.default_max_tokens"))
    return ProviderConfig(
        name=name,
        kind=spec.kind,
        keys=tuple(keys),
        network=network,
        concurrency=concurrency,
        buffer_size=buffer_size,
        models=models,
        explicit_lane=lane is not None,
        extra=MappingProxyType(extra),
        missing_env=tuple(dict.fromkeys(missing)) if missing and not keys else (),
        pricing_overrides=parse_pricing_overrides(
            r.data.get("pricing_overrides"), f"{path}.pricing_overrides", warnings
        ),
        failure_policy=_failure_policy(r),
        supports_assistant_prefill=r.get("supports_assistant_prefill", bool, None),
        circuit_breaker=_circuit_breaker(r),
        load_balancing=_load_balancing(r),
    )


def _circuit_breaker(r: _Reader) -> BreakerConfig:
    """`circuit_breaker`: {enabled, consecutive_failures, error_rate, ...}; fields left out keep the defaults."""
    block = r.obj("circuit_breaker")
    d = BreakerConfig()
    if block is None:
        return d
    block.check(BREAKER_FIELDS, frozenset(), None)
    p = block.path
    cfg = BreakerConfig(
        enabled=block.get("enabled", bool, d.enabled),
        consecutive_failures=int(
            _positive(block.get("consecutive_failures", int, d.consecutive_failures), f"{p}.consecutive_failures")
        ),
        error_rate=block.get("error_rate", float, d.error_rate),
        min_requests=int(_positive(block.get("min_requests", int, d.min_requests), f"{p}.min_requests")),
        window_seconds=_positive(block.get("window_seconds", float, d.window_seconds), f"{p}.window_seconds"),
        cooldown_seconds=_positive(block.get("cooldown_seconds", float, d.cooldown_seconds), f"{p}.cooldown_seconds"),
        max_cooldown_seconds=_positive(
            block.get("max_cooldown_seconds", float, d.max_cooldown_seconds), f"{p}.max_cooldown_seconds"
        ),
    )
    if not 0 < cfg.error_rate <= 1:
        raise ConfigError(f"{p}.error_rate", f"expected a share of failed attempts in (0, 1], got {cfg.error_rate!r}")
    if cfg.max_cooldown_seconds < cfg.cooldown_seconds:
        raise ConfigError(
            f"{p}.max_cooldown_seconds",
            f"must be at least cooldown_seconds ({cfg.cooldown_seconds:g}), got {cfg.max_cooldown_seconds:g}",
        )
    return cfg


def _load_balancing(r: _Reader) -> str:
    value = r.get("load_balancing", str, "weighted")
    if value not in LOAD_BALANCING:
        raise ConfigError(f"{r._sub('load_balancing')}", f"expected one of {', '.join(LOAD_BALANCING)}, got {value!r}")
    return value


def _failure_policy(r: _Reader) -> Mapping[str, str]:
    """`failure_policy`: {failure class: action}, each checked against runtime/core/failover.py's table."""
    from runtime.core.failover import POLICY_TABLE

    policy = r.obj("failure_policy")
    if policy is None:
        return MappingProxyType({})
    out: dict[str, str] = {}
    for name, action in policy.items():
        path = f"{policy.path}.{name}"
        row = POLICY_TABLE.get(name)
        if row is None:
            raise ConfigError(
                path, f"unknown failure class{fields.suggest(name, POLICY_TABLE)}; known: {', '.join(POLICY_TABLE)}"
            )
        if not isinstance(action, str) or action not in row[1]:
            raise ConfigError(path, f"expected one of {', '.join(sorted(row[1]))}, got {action!r}")
        out[name] = action
    return MappingProxyType(out)


# `enforce_governance_header` is Go's deprecated spelling of enforce_auth_on_inference: read, never ignored.
CLIENT_FIELDS = frozenset(f.name for f in dataclasses.fields(ClientConfig)) | {"enforce_governance_header"}


def parse_client(
    data: Any,
    environ: Mapping[str, str],
    defaults: ClientConfig | None = None,
    warnings: list[str] | None = None,
) -> ClientConfig:
    """The `client` block; keys it leaves out take `defaults` (a tuning profile's values), so the file wins."""
    d = defaults or ClientConfig()
    if data is None:
        return d
    r = _Reader(data, "client", environ)
    r.check(CLIENT_FIELDS, fields.GO_CLIENT, warnings, fields.schema_for(("client",)))
    client = ClientConfig(
        drop_excess_requests=r.get("drop_excess_requests", bool, d.drop_excess_requests),
        initial_pool_size=r.get("initial_pool_size", int, d.initial_pool_size),
        enable_logging=r.get("enable_logging", bool, d.enable_logging),
        disable_content_logging=r.get("disable_content_logging", bool, d.disable_content_logging),
        log_retention_days=r.get("log_retention_days", int, d.log_retention_days),
        max_request_body_size_mb=r.get("max_request_body_size_mb", float, d.max_request_body_size_mb),
        allowed_origins=tuple(_string_list(r, "allowed_origins", d.allowed_origins)),
        max_log_content_kb=r.get("max_log_content_kb", int, d.max_log_content_kb),
        max_upstream_response_mb=r.get("max_upstream_response_mb", float, d.max_upstream_response_mb),
        max_request_bodies_in_flight_mb=r.get(
            "max_request_bodies_in_flight_mb", float, d.max_request_bodies_in_flight_mb
        ),
        header_read_timeout_in_seconds=r.get("header_read_timeout_in_seconds", float, d.header_read_timeout_in_seconds),
        body_read_timeout_in_seconds=r.get("body_read_timeout_in_seconds", float, d.body_read_timeout_in_seconds),
        keepalive_idle_timeout_in_seconds=r.get(
            "keepalive_idle_timeout_in_seconds", float, d.keepalive_idle_timeout_in_seconds
        ),
        stream_write_timeout_in_seconds=r.get(
            "stream_write_timeout_in_seconds", float, d.stream_write_timeout_in_seconds
        ),
        shutdown_grace_in_seconds=r.get("shutdown_grace_in_seconds", float, d.shutdown_grace_in_seconds),
        allow_private_base_urls=r.get("allow_private_base_urls", bool, d.allow_private_base_urls),
        enforce_auth_on_inference=r.get("enforce_auth_on_inference", bool, d.enforce_auth_on_inference)
        or r.get("enforce_governance_header", bool, False),
        request_deadline_in_seconds=r.get("request_deadline_in_seconds", float, d.request_deadline_in_seconds),
        context_window_fallbacks=_context_window_fallbacks(r, d.context_window_fallbacks),
        stream_resume=r.get("stream_resume", bool, d.stream_resume),
    )
    _positive(client.initial_pool_size, "client.initial_pool_size")
    _positive(client.log_retention_days, "client.log_retention_days", allow_zero=True)
    _positive(client.max_request_body_size_mb, "client.max_request_body_size_mb")
    for name in (
        "max_log_content_kb",
        "max_upstream_response_mb",
        "max_request_bodies_in_flight_mb",
        "header_read_timeout_in_seconds",
        "body_read_timeout_in_seconds",
        "keepalive_idle_timeout_in_seconds",
        "stream_write_timeout_in_seconds",
    ):
        _positive(getattr(client, name), f"client.{name}")
    if client.shutdown_grace_in_seconds is not None:
        _positive(client.shutdown_grace_in_seconds, "client.shutdown_grace_in_seconds", allow_zero=True)
    if client.request_deadline_in_seconds is not None:
        _positive(client.request_deadline_in_seconds, "client.request_deadline_in_seconds")
    return client


def _context_window_fallbacks(r: _Reader, default: Mapping[str, tuple[str, ...]]) -> Mapping[str, tuple[str, ...]]:
    block = r.obj("context_window_fallbacks")
    if block is None:
        return default
    out: dict[str, tuple[str, ...]] = {}
    for model, targets in block.items():
        path = f"{block.path}.{model}"
        if not isinstance(targets, list) or not targets:
            raise ConfigError(path, "expected a non-empty list of provider/model strings")
        for i, target in enumerate(targets):
            if not isinstance(target, str) or not target:
                raise ConfigError(f"{path}[{i}]", f"expected a provider/model string, got {_type_name(target)}")
        out[model] = tuple(targets)
    return MappingProxyType(out)


def _string_list(r: _Reader, key: str, default: tuple[str, ...]) -> list[str]:
    values = r.get(key, list, list(default))
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ConfigError(f"{r.path}.{key}[{i}]", f"expected a string, got {_type_name(v)}")
    return values


def providers_from_env(environ: Mapping[str, str], tuning: Tuning) -> dict[str, ProviderConfig]:
    """Zero-config start: every provider whose usual API-key variable is set."""
    found: dict[str, ProviderConfig] = {}
    for spec in PROVIDER_SPECS.values():
        if not spec.env_key or not environ.get(spec.env_key):
            continue
        key: dict[str, Any] = {"name": spec.env_key.lower(), "value": environ[spec.env_key]}
        if spec.kind == "azure":
            endpoint = environ.get("AZURE_ENDPOINT") or environ.get("AZURE_OPENAI_ENDPOINT")
            if not endpoint:
                continue  # a key without an endpoint cannot be used
            key["azure_key_config"] = {
                "endpoint": endpoint,
                "api_version": environ.get("AZURE_API_VERSION", "2024-10-21"),
            }
        for field_path, variable in spec.env_config:
            if environ.get(variable):
                block, _, name = field_path.partition(".")
                key.setdefault(block, {})[name] = environ[variable]
        found[spec.name] = parse_provider(spec.name, {"keys": [key]}, environ, tuning)
    return found


def mock_provider(tuning: Tuning) -> ProviderConfig:
    return parse_provider("mock", {}, {}, tuning)


def read_config_file(path: Path) -> dict[str, Any] | None:
    """The parsed file, or None when there is none. Bad JSON is a ConfigError with line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("", f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ConfigError("", f"{path} must hold a JSON object at the top level")
    return data


def build_providers(
    raw: Mapping[str, Any] | None,
    environ: Mapping[str, str],
    tuning: Tuning,
    client: ClientConfig | None = None,
    warnings: list[str] | None = None,
) -> dict[str, ProviderConfig]:
    """Providers from the file when it has a `providers` block, else from the environment; plus mock."""
    providers: dict[str, ProviderConfig]
    block = raw.get("providers") if raw else None
    if block is None:
        providers = providers_from_env(environ, tuning)
    else:
        if not isinstance(block, dict):
            raise ConfigError("providers", f"expected an object, got {_type_name(block)}")
        providers = {}
        for name, data in block.items():
            if (
                name not in PROVIDER_SPECS
                and name in fields.GO_PROVIDER_NAMES
                and not (isinstance(data, dict) and "custom_provider_config" in data)
            ):
                if warnings is not None:
                    warnings.append(
                        f"providers.{name}: Go Bifrost provider not implemented in this version; it has no effect"
                    )
                continue
            providers[name] = parse_provider(name, data, environ, tuning, client=client, warnings=warnings)
    providers.setdefault("mock", mock_provider(tuning))
    return providers


def parse_document(
    raw: Mapping[str, Any] | None,
    environ: Mapping[str, str],
    tuning: Tuning,
    client_defaults: ClientConfig | None = None,
) -> tuple[dict[str, ProviderConfig], ClientConfig, tuple[str, ...]]:
    """A whole config document -> (providers, client, warnings). Used by start-up and by every admin edit."""
    warnings: list[str] = []
    if raw:
        fields.check_fields(raw, "", TOP_FIELDS, fields.GO_TOP, warnings, fields.SCHEMA)
        admin = raw.get("admin")
        if admin is not None:
            _Reader(admin, "admin", environ).check(ADMIN_FIELDS, (), warnings)
        _stores(raw, environ, warnings)  # config_store / logs_store / encryption_key; kept by load_gateway_config
        parse_plugins(raw.get("plugins"), warnings)  # checked on every load and edit; kept by load_gateway_config
        _shared_state(raw, environ, warnings)  # likewise
    # The client block first: allow_private_base_urls decides which provider base URLs are accepted.
    client = parse_client(raw.get("client") if raw else None, environ, client_defaults, warnings)
    providers = build_providers(raw, environ, tuning, client, warnings)
    if raw:
        check_governance(raw, environ, providers, client, warnings)
        parse_model_groups(raw.get("model_groups"), providers, warnings)  # kept by load_gateway_config
        _guardrails(raw, warnings)  # likewise
    return providers, client, tuple(warnings)


def check_governance(
    raw: Mapping[str, Any],
    environ: Mapping[str, str],
    providers: Mapping[str, ProviderConfig],
    client: ClientConfig,
    warnings: list[str],
) -> GovernanceConfig | None:
    """The `governance` block, checked (runtime/config/governance.py), plus the warnings about how it is
    enforced: keys with nothing asking for them, or enforcement with no key that could pass it."""
    from runtime.config.governance import parse_governance  # it imports this module's reader

    governance = parse_governance(raw.get("governance"), environ, providers, warnings)
    if client.enforce_auth_on_inference and (governance is None or not governance.virtual_keys):
        warnings.append(
            "client.enforce_auth_on_inference: no virtual key is configured, so every inference request gets 401"
        )
    plugins = raw.get("plugins")
    disabled = isinstance(plugins, list) and any(
        isinstance(p, dict) and p.get("name") == "governance" and p.get("enabled") is False for p in plugins
    )
    if disabled and governance is not None and governance.virtual_keys:
        warnings.append("plugins: governance is disabled, so governance.virtual_keys are not enforced")
    return governance


def parse_plugins(value: Any, warnings: list[str]) -> tuple[PluginConfig, ...]:
    """`plugins: [{"name", "enabled", "config"}]` -> PluginConfig per entry we can run.

    A name in the registry (runtime/plugins/registry.py) is checked field by field against the config
    fields its plugin declares; a Go Bifrost plugin we do not implement (or a Go dynamic plugin, given by
    `path`) is a warning, as every Go setting we lack; any other name is an error."""
    from runtime.plugins import registry  # the registry reads entry points: only when a file has plugins

    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError("plugins", f"must be a list of plugin objects, got {_type_name(value)}")
    out: list[PluginConfig] = []
    for i, item in enumerate(value):
        path = f"plugins[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(path, f"must be an object, got {_type_name(item)}")
        fields.check_fields(item, path, PLUGIN_FIELDS, GO_PLUGIN_FIELDS, warnings)
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}.name", "is required: the plugin's name")
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{path}.enabled", f"must be true or false, got {_type_name(enabled)}")
        config = item.get("config")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ConfigError(f"{path}.config", f"must be an object, got {_type_name(config)}")
        spec = registry.find(name)
        if spec is None:
            if name in registry.GO_ONLY or "path" in item:
                warnings.append(f"{path}: Go Bifrost plugin '{name}' is not implemented in this version; no effect")
                continue
            known = registry.names()
            raise ConfigError(
                f"{path}.name", f"no plugin named '{name}'{fields.suggest(name, known)}; known: {', '.join(known)}"
            )
        for key, v in config.items():
            where = f"{path}.config.{key}"
            kind = spec.fields.get(key)
            if kind is None:
                if spec.builtin and (spec.go_fields is None or key in spec.go_fields):
                    warnings.append(f"{where}: Go Bifrost setting not implemented in this version; it has no effect")
                    continue
                raise ConfigError(where, f"unknown field{fields.suggest(str(key), spec.fields)}")
            kinds = kind if isinstance(kind, tuple) else (kind,)
            if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
                raise ConfigError(where, f"must be {_kind_words(kinds)}, got {_type_name(v)}")
        if spec.check is not None and (enabled or config):  # a plugin's own checks (ranges, pairs of fields)
            spec.check(config, f"{path}.config", warnings)
        out.append(PluginConfig(name, enabled, MappingProxyType(dict(config))))
    return tuple(out)


def load_gateway_config(
    app_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
    workers: int = 1,
    tuning: Tuning | None = None,
    environ: Mapping[str, str] | None = None,
    client_defaults: ClientConfig | None = None,
) -> GatewayConfig:
    """The whole start-up config: `<app_dir>/config.json` (if any) + environment + tuning."""
    env = os.environ if environ is None else environ
    tuning = tuning or Tuning()
    path = Path(app_dir) / "config.json"
    raw = read_config_file(path)
    try:
        providers, client, warnings = parse_document(raw, env, tuning, client_defaults)
    except ConfigError as exc:
        raise ConfigError(exc.path, f"{exc.message} (in {path})") from None
    return GatewayConfig(
        host=host,
        port=port,
        app_dir=Path(app_dir),
        log_level=log_level,
        workers=workers,
        providers=MappingProxyType(providers),
        client=client,
        tuning=tuning,
        raw=MappingProxyType(dict(raw or {})),
        warnings=warnings,
        plugins=parse_plugins(raw.get("plugins"), []) if raw else (),  # already checked by parse_document
        shared_state=_shared_state(raw, env, []),
        stores=_stores(raw, env, []),
        governance=check_governance(raw, env, providers, client, []) if raw else None,  # checked above too
        model_groups=parse_model_groups(raw.get("model_groups") if raw else None, providers),  # checked above
        guardrails=_guardrails(raw, []),  # checked above
    )


def _shared_state(raw: Mapping[str, Any] | None, environ: Mapping[str, str], warnings: list[str]) -> Any:
    """The `shared_state` block (runtime/config/shared_state.py, which imports this module: hence here)."""
    from runtime.config.shared_state import parse_shared_state

    return parse_shared_state(raw.get("shared_state"), environ, warnings) if raw else None


def _stores(raw: Mapping[str, Any] | None, environ: Mapping[str, str], warnings: list[str]) -> Any:
    """The `config_store` / `logs_store` blocks and `encryption_key` (runtime/config/stores.py)."""
    from runtime.config.stores import parse_stores

    return parse_stores(raw, environ, warnings)


def parse_guardrails_block(raw: Mapping[str, Any] | None) -> Any:
    """A document's `guardrails_config` as GuardrailsConfig (None when absent); for the config stores'
    live builds (the document was already checked by parse_document)."""
    return _guardrails(raw, [])


def _guardrails(raw: Mapping[str, Any] | None, warnings: list[str]) -> Any:
    """The `guardrails_config` block (runtime/guardrails/config.py); its modules load only when it is there."""
    if not raw or raw.get("guardrails_config") is None:
        return None
    from runtime.guardrails.config import parse_guardrails

    return parse_guardrails(raw.get("guardrails_config"), warnings)
