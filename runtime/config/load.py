"""config.json + environment -> the frozen config model.

All validation happens here, at the edge, so the rest of the runtime can trust its config. A bad file
raises `ConfigError` whose message names the field path (`providers.openai.keys[0].weight: ...`); the
CLI prints that one line and exits. Secrets may be written as `env.NAME` and are read from the
environment here; the raw file (with the `env.` references intact) is kept for persisting edits.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runtime.config.model import (
    AzureKeyConfig,
    ClientConfig,
    GatewayConfig,
    KeyConfig,
    NetworkConfig,
    ProviderConfig,
    Tuning,
)
from runtime.providers.registry import PROVIDER_SPECS, ProviderSpec, custom_spec


class ConfigError(ValueError):
    """The configuration cannot be used. `str()` is one line naming the field path."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


_MISSING = object()


def resolve_env_tree(value: Any, path: str, environ: Mapping[str, str]) -> Any:
    """resolve_env through nested objects and lists (provider key blocks such as bedrock_key_config)."""
    if isinstance(value, dict):
        return {k: resolve_env_tree(v, f"{path}.{k}", environ) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env_tree(v, f"{path}[{i}]", environ) for i, v in enumerate(value)]
    return resolve_env(value, path, environ)


def resolve_env(value: Any, path: str, environ: Mapping[str, str]) -> Any:
    """`env.NAME` -> the value of environment variable NAME (an unset variable is an error)."""
    if isinstance(value, str) and value.startswith("env."):
        name = value[4:]
        if name not in environ:
            raise ConfigError(path, f"environment variable {name} is not set (referenced as {value!r})")
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

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise ConfigError(self._sub(key), "is required")
            return default
        value = resolve_env(value, self._sub(key), self.environ)
        return _coerce(value, kind, self._sub(key))

    def obj(self, key: str) -> _Reader | None:
        value = self.data.get(key)
        if value is None:
            return None
        return _Reader(value, self._sub(key), self.environ)

    def items(self) -> list[tuple[str, Any]]:
        return list(self.data.items())


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _coerce(value: Any, kind: type | tuple[type, ...], path: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if bool in kinds:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected true or false, got {value!r}")
    if isinstance(value, bool):  # bool is an int subclass; never accept it as a number
        raise ConfigError(path, f"expected {_kind_words(kinds)}, got {value!r}")
    if float in kinds and isinstance(value, (int, float)):
        return float(value)
    if int in kinds and isinstance(value, int):
        return value
    if int in kinds and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)  # env.NAME values arrive as strings
    if float in kinds and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, kinds):
        return value
    raise ConfigError(path, f"expected {_kind_words(kinds)}, got {_type_name(value)} {value!r}")


def _kind_words(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _positive(value: float, path: str, allow_zero: bool = False) -> float:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(path, f"must be {'zero or more' if allow_zero else 'greater than zero'}, got {value}")
    return value


def _parse_key(data: Any, path: str, spec: ProviderSpec, environ: Mapping[str, str]) -> KeyConfig:
    r = _Reader(data, path, environ)
    value = r.get("value", str, "")
    if spec.key_required and not value and spec.kind != "azure":
        raise ConfigError(f"{path}.value", "is required (a key, or env.NAME to read it from the environment)")
    models = r.get("models", list, [])
    for i, m in enumerate(models):
        if not isinstance(m, str):
            raise ConfigError(f"{path}.models[{i}]", f"expected a string, got {_type_name(m)}")
    weight = _positive(r.get("weight", float, 1.0), f"{path}.weight")
    azure = None
    az = r.obj("azure_key_config")
    if spec.kind == "azure":
        if az is None:
            raise ConfigError(f"{path}.azure_key_config", "is required for Azure keys (endpoint, deployments)")
        deployments = az.get("deployments", dict, {})
        for model, dep in deployments.items():
            if not isinstance(dep, str):
                raise ConfigError(f"{path}.azure_key_config.deployments.{model}", "expected a string")
        azure = AzureKeyConfig(
            endpoint=az.get("endpoint", str).rstrip("/"),
            deployments=MappingProxyType(dict(deployments)),
            api_version=az.get("api_version", str, "2024-10-21"),
        )
    known = {"name", "value", "models", "weight", "azure_key_config"}
    extra = {k: resolve_env_tree(v, f"{path}.{k}", environ) for k, v in r.items() if k not in known}
    return KeyConfig(
        name=r.get("name", str, "") or f"key-{path.rsplit('[', 1)[-1].rstrip(']')}",
        value=value,
        models=tuple(models),
        weight=weight,
        azure=azure,
        extra=MappingProxyType(extra),
    )


def _parse_network(r: _Reader | None, spec: ProviderSpec) -> NetworkConfig:
    d = NetworkConfig()
    if r is None:
        return NetworkConfig(base_url=spec.base_url)
    headers = r.get("extra_headers", dict, {})
    for k, v in headers.items():
        if not isinstance(v, str):
            raise ConfigError(f"{r.path}.extra_headers.{k}", "expected a string")
    # Go Bifrost spells the backoff fields both with and without the `_ms` suffix.
    initial = r.get("retry_backoff_initial_ms", int, None)
    if initial is None:
        initial = r.get("retry_backoff_initial", int, d.retry_backoff_initial_ms)
    cap = r.get("retry_backoff_max_ms", int, None)
    if cap is None:
        cap = r.get("retry_backoff_max", int, d.retry_backoff_max_ms)
    base_url = r.get("base_url", str, spec.base_url)
    if base_url is not None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{r.path}.base_url", f"expected an http:// or https:// URL, got {base_url!r}")
        base_url = base_url.rstrip("/")
    first_byte = r.get("first_byte_timeout_in_seconds", float, None)
    net = NetworkConfig(
        base_url=base_url,
        extra_headers=MappingProxyType(dict(headers)),
        default_request_timeout_in_seconds=r.get(
            "default_request_timeout_in_seconds", float, d.default_request_timeout_in_seconds
        ),
        connect_timeout_in_seconds=r.get("connect_timeout_in_seconds", float, d.connect_timeout_in_seconds),
        first_byte_timeout_in_seconds=first_byte,
        stream_idle_timeout_in_seconds=r.get("stream_idle_timeout_in_seconds", float, d.stream_idle_timeout_in_seconds),
        max_retries=r.get("max_retries", int, d.max_retries),
        retry_backoff_initial_ms=initial,
        retry_backoff_max_ms=cap,
    )
    for name in ("default_request_timeout_in_seconds", "connect_timeout_in_seconds", "stream_idle_timeout_in_seconds"):
        _positive(getattr(net, name), f"{r.path}.{name}")
    if first_byte is not None:
        _positive(first_byte, f"{r.path}.first_byte_timeout_in_seconds")
    _positive(net.max_retries, f"{r.path}.max_retries", allow_zero=True)
    _positive(net.retry_backoff_initial_ms, f"{r.path}.retry_backoff_initial_ms", allow_zero=True)
    _positive(net.retry_backoff_max_ms, f"{r.path}.retry_backoff_max_ms", allow_zero=True)
    return net


def parse_provider(name: str, data: Any, environ: Mapping[str, str], tuning: Tuning) -> ProviderConfig:
    """One `providers.<name>` entry -> ProviderConfig."""
    path = f"providers.{name}"
    r = _Reader(data, path, environ)
    custom = r.obj("custom_provider_config")
    if custom is not None:
        base_type = custom.get("base_provider_type", str, "openai")
        net_r = r.obj("network_config")
        base_url = net_r.get("base_url", str, None) if net_r else None
        try:
            spec = custom_spec(name, base_type, base_url)
        except KeyError:
            raise ConfigError(
                f"{path}.custom_provider_config.base_provider_type",
                f"unknown provider type {base_type!r}; known: {', '.join(sorted(PROVIDER_SPECS))}",
            ) from None
    else:
        spec = PROVIDER_SPECS.get(name)
        if spec is None:
            raise ConfigError(
                path,
                "unknown provider; declare a custom one with "
                '"custom_provider_config": {"base_provider_type": "openai"} and '
                f"network_config.base_url (known providers: {', '.join(sorted(PROVIDER_SPECS))})",
            )
    keys_data = r.get("keys", list, [])
    keys = tuple(_parse_key(k, f"{path}.keys[{i}]", spec, environ) for i, k in enumerate(keys_data))
    if spec.key_required and not keys:
        raise ConfigError(f"{path}.keys", f"{name} needs at least one key")
    network = _parse_network(r.obj("network_config"), spec)
    if network.base_url is None and spec.kind not in ("azure", "mock") and spec.base_url is None:
        raise ConfigError(f"{path}.network_config.base_url", "is required for this provider")
    lane = r.obj("concurrency_and_buffer_size")
    concurrency = tuning.default_concurrency
    buffer_size = tuning.default_buffer_size
    if lane is not None:
        concurrency = int(_positive(lane.get("concurrency", int, concurrency), f"{lane.path}.concurrency"))
        buffer_size = int(
            _positive(lane.get("buffer_size", int, buffer_size), f"{lane.path}.buffer_size", allow_zero=True)
        )
    models = r.get("models", list, [])
    known = {"keys", "network_config", "concurrency_and_buffer_size", "custom_provider_config", "models"}
    extra = {k: v for k, v in r.items() if k not in known}
    return ProviderConfig(
        name=name,
        kind=spec.kind,
        keys=keys,
        network=network,
        concurrency=concurrency,
        buffer_size=buffer_size,
        models=tuple(str(m) for m in models),
        explicit_lane=lane is not None,
        extra=MappingProxyType(extra),
    )


def parse_client(data: Any, environ: Mapping[str, str], defaults: ClientConfig | None = None) -> ClientConfig:
    """The `client` block; keys it leaves out take `defaults` (a tuning profile's values), so the file wins."""
    d = defaults or ClientConfig()
    if data is None:
        return d
    r = _Reader(data, "client", environ)
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
    return client


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
    raw: Mapping[str, Any] | None, environ: Mapping[str, str], tuning: Tuning
) -> dict[str, ProviderConfig]:
    """Providers from the file when it has a `providers` block, else from the environment; plus mock."""
    providers: dict[str, ProviderConfig]
    block = raw.get("providers") if raw else None
    if block is None:
        providers = providers_from_env(environ, tuning)
    else:
        if not isinstance(block, dict):
            raise ConfigError("providers", f"expected an object, got {_type_name(block)}")
        providers = {name: parse_provider(name, data, environ, tuning) for name, data in block.items()}
    providers.setdefault("mock", mock_provider(tuning))
    return providers


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
        providers = build_providers(raw, env, tuning)
        client = parse_client(raw.get("client") if raw else None, env, client_defaults)
    except ConfigError as exc:
        raise ConfigError(exc.path, f"{exc.args[0].split(': ', 1)[-1]} (in {path})") from None
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
    )
