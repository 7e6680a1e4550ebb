"""Build config.json documents (the Go-Bifrost schema subset) pointing providers at fakes.

Defaults are test-friendly: no retries, generous timeouts, so each test states the one setting it
is about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Json = dict[str, Any]

DEFAULT_NETWORK: Json = {
    "default_request_timeout_in_seconds": 60,
    "max_retries": 0,
    "retry_backoff_initial_ms": 50,
    "retry_backoff_max_ms": 500,
    "stream_idle_timeout_in_seconds": 60,
}


def network(base_url: str, **overrides: Any) -> Json:
    return {"base_url": base_url, **DEFAULT_NETWORK, **overrides}


def key(value: str, *, name: str | None = None, weight: float = 1.0, models: Iterable[str] = ()) -> Json:
    return {"name": name or value, "value": value, "models": list(models), "weight": weight}


def openai_provider(
    base_url: str,
    keys: Iterable[Json | str] = ("sk-fake-1",),
    *,
    concurrency: int | None = None,
    buffer_size: int | None = None,
    **network_overrides: Any,
) -> Json:
    provider: Json = {
        "keys": [k if isinstance(k, dict) else key(k) for k in keys],
        "network_config": network(base_url, **network_overrides),
    }
    if concurrency is not None or buffer_size is not None:
        provider["concurrency_and_buffer_size"] = {
            "concurrency": concurrency if concurrency is not None else 1000,
            "buffer_size": buffer_size if buffer_size is not None else 5000,
        }
    return provider


def custom_provider(base_url: str, keys: Iterable[Json | str] = ("sk-fake-1",), **network_overrides: Any) -> Json:
    """An OpenAI-compatible provider declared by name (custom_provider_config)."""
    provider = openai_provider(base_url, keys, **network_overrides)
    provider["custom_provider_config"] = {"base_provider_type": "openai"}
    return provider


def azure_provider(
    endpoint: str,
    *,
    api_key: str = "azure-fake-key",
    deployments: Mapping[str, str] | None = None,
    api_version: str = "2024-10-21",
    **network_overrides: Any,
) -> Json:
    deployments = dict(deployments or {"gpt-4o": "my-gpt4o-deploy"})
    return {
        "keys": [
            {
                "name": "azure-key",
                "value": api_key,
                "models": list(deployments),
                "weight": 1,
                "azure_key_config": {
                    "endpoint": endpoint,
                    "deployments": deployments,
                    "api_version": api_version,
                },
            }
        ],
        "network_config": {**DEFAULT_NETWORK, **network_overrides},
    }


def make_config(providers: Mapping[str, Json], **client: Any) -> Json:
    base_client: Json = {
        "drop_excess_requests": False,
        "enable_logging": True,
        "disable_content_logging": False,
    }
    return {"providers": dict(providers), "client": {**base_client, **client}}
