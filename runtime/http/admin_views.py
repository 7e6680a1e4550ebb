"""Providers as the admin API shows them (secrets masked) and as it writes them back (secrets kept).

A key value is never returned: an inline value becomes a mask that keeps at most its last four
characters, an `env.NAME` reference is shown as the reference (the name is not a secret). Extra
headers are masked the same way, since they often carry credentials. On update, a key or header
whose value is missing, null or still the mask keeps the stored value, so the UI can round-trip a
provider without ever having seen its secrets, and `env.NAME` references stay references.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from runtime.config.model import ProviderConfig
from runtime.core.router import ProviderHandle
from runtime.providers.registry import PROVIDER_SPECS

MASK = "••••"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def mask(value: str) -> str:
    """A recognisable but useless remnant of a secret: the mask plus at most its last 4 characters."""
    if not value:
        return ""
    if value.startswith("env."):
        return value
    shown = min(4, len(value) // 4)
    return MASK + (value[-shown:] if shown else "")


def is_masked(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.startswith(MASK))


def _raw_keys(raw_entry: dict[str, Any] | None) -> list[dict[str, Any]]:
    keys = (raw_entry or {}).get("keys")
    return [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []


def provider_view(
    name: str, cfg: ProviderConfig, raw_entry: dict[str, Any] | None, handle: ProviderHandle | None
) -> dict[str, Any]:
    raw_keys = _raw_keys(raw_entry)
    spec = PROVIDER_SPECS.get(name)
    custom = raw_entry is not None and isinstance(raw_entry.get("custom_provider_config"), dict)
    keys = []
    for i, key in enumerate(cfg.keys):
        stored = raw_keys[i].get("value") if i < len(raw_keys) else None
        reference = stored if isinstance(stored, str) and stored.startswith("env.") else None
        if raw_entry is None and spec is not None and spec.env_key:
            reference = f"env.{spec.env_key}"  # a provider taken from the environment at start-up
        item: dict[str, Any] = {
            "name": key.name,
            "value": reference or mask(key.value),
            "value_source": "env" if reference else ("inline" if key.value else "none"),
            "models": list(key.models),
            "weight": key.weight,
        }
        if key.azure is not None:
            item["azure_key_config"] = {
                "endpoint": key.azure.endpoint,
                "deployments": dict(key.azure.deployments),
                "api_version": key.azure.api_version,
            }
        keys.append(item)
    net = cfg.network
    view: dict[str, Any] = {
        "name": name,
        "kind": cfg.kind,
        "label": spec.label if spec is not None and not custom else f"{name} (custom, {cfg.kind} format)",
        "source": "config" if raw_entry is not None else ("builtin" if name == "mock" else "environment"),
        "keys": keys,
        "models": list(cfg.models),
        "network_config": {
            "base_url": net.base_url,
            "extra_headers": {k: mask(v) for k, v in net.extra_headers.items()},
            "default_request_timeout_in_seconds": net.default_request_timeout_in_seconds,
            "connect_timeout_in_seconds": net.connect_timeout_in_seconds,
            "first_byte_timeout_in_seconds": net.first_byte_timeout_in_seconds,
            "stream_idle_timeout_in_seconds": net.stream_idle_timeout_in_seconds,
            "max_retries": net.max_retries,
            "retry_backoff_initial_ms": net.retry_backoff_initial_ms,
            "retry_backoff_max_ms": net.retry_backoff_max_ms,
        },
        "concurrency_and_buffer_size": {
            "concurrency": cfg.concurrency,
            "buffer_size": cfg.buffer_size,
            "explicit": cfg.explicit_lane,
        },
        "custom_provider_config": {"base_provider_type": cfg.kind} if custom else None,
        "lane": lane_view(handle),
        "listed_models": list(handle.listed_models) if handle is not None else [],
    }
    return view


def lane_view(handle: ProviderHandle | None) -> dict[str, Any] | None:
    if handle is None:
        return None
    lane = handle.lane
    return {
        "in_flight": lane.in_flight,
        "queued": lane.queued,
        "concurrency": lane.concurrency,
        "buffer_size": lane.buffer_size,
        "dropped": lane.dropped,
    }


def merge_secrets(new_entry: dict[str, Any], old_entry: dict[str, Any] | None) -> dict[str, Any]:
    """`new_entry` (from the API) with masked/missing key values and header values taken from
    `old_entry` (the stored raw entry): matched by key name, else by position."""
    entry = copy.deepcopy(new_entry)
    old_keys = _raw_keys(old_entry)
    by_name = {k.get("name"): k for k in old_keys if k.get("name")}
    keys = entry.get("keys")
    if isinstance(keys, list):
        for i, key in enumerate(keys):
            if not isinstance(key, dict) or not is_masked(key.get("value")):
                continue
            old = by_name.get(key.get("name")) or (old_keys[i] if i < len(old_keys) else None)
            if old is not None and "value" in old:
                key["value"] = old["value"]
            else:
                key.pop("value", None)  # nothing to keep: validation says the value is required
    net = entry.get("network_config")
    old_net = (old_entry or {}).get("network_config")
    if isinstance(net, dict) and isinstance(net.get("extra_headers"), dict):
        old_headers = old_net.get("extra_headers") if isinstance(old_net, dict) else None
        old_headers = old_headers if isinstance(old_headers, dict) else {}
        for header, value in list(net["extra_headers"].items()):
            if is_masked(value):
                if header in old_headers:
                    net["extra_headers"][header] = old_headers[header]
                else:
                    del net["extra_headers"][header]
    return entry


# Fields a provider entry may have; anything else is a typo the user should hear about.
PROVIDER_FIELDS = frozenset(
    {"keys", "network_config", "concurrency_and_buffer_size", "custom_provider_config", "models"}
)


def clean_entry(body: dict[str, Any]) -> dict[str, Any]:
    """The provider entry to store: view-only fields dropped, unknown fields refused."""
    entry = {k: v for k, v in body.items() if k not in ("name", "kind", "label", "source", "lane", "listed_models")}
    if entry.get("custom_provider_config") is None:
        entry.pop("custom_provider_config", None)
    lane = entry.get("concurrency_and_buffer_size")
    if isinstance(lane, dict):
        lane.pop("explicit", None)
    unknown = sorted(set(entry) - PROVIDER_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; a provider has {', '.join(sorted(PROVIDER_FIELDS))}")
    if isinstance(entry.get("keys"), list):
        for key in entry["keys"]:
            if isinstance(key, dict):
                key.pop("value_source", None)
    net = entry.get("network_config")
    if isinstance(net, dict):
        for k in [k for k, v in net.items() if v is None]:
            del net[k]  # null means "the default", which is what leaving it out says
    return entry
