"""Providers as the admin API shows them (secrets masked) and as it writes them back (secrets kept).

The view is the stored config.json entry, every field of it (Bedrock's and Vertex's credential blocks,
`default_max_tokens`, any field the loader accepts), plus view-only fields (`effective`, `lane`, ...)
that are ignored on the way back in: a GET then PUT stores exactly what was there.

A secret is never returned: a key's value, and any field named like a secret at any depth
(`secret_key`, `session_token`, `auth_credentials`, ...), becomes a mask that keeps at most its last
four characters; an `env.NAME` reference is shown as the reference (the name is not a secret). Extra
headers are masked the same way, since they often carry credentials. On update, a secret whose value
is missing, null or still the mask keeps the stored value, so the UI can round-trip a provider
without ever having seen its secrets, and `env.NAME` references stay references.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from runtime.config.model import ProviderConfig
from runtime.core.failover import DEFAULT_POLICY
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


# Which stored fields are secrets, by name, at any depth of a provider entry: a key's `value`, Bedrock's
# access/secret key and session token, Vertex's auth_credentials, any *_token/*_secret/... in extra
# fields. Model -> deployment maps and pricing overrides (`input_cost_per_token`, ...) are data whatever
# their fields are called; every extra header may carry a credential.
SECRET_FIELD = re.compile(
    r"(^|_)(secret|token|password|passphrase|credentials?|private|key)(_|$)|api_?key|access_?key|^value$",
    re.IGNORECASE,
)  # by whole words: `default_max_tokens`, `keys`, `api_version` are not secrets
PLAIN_MAPS = frozenset({"deployments", "pricing_overrides"})
SECRET_MAPS = frozenset({"extra_headers"})
VIEW_ONLY = ("name", "kind", "label", "source", "lane", "listed_models", "effective", "health")
KEY_VIEW_ONLY = ("value_source", "name_source")


def _is_secret(field: str) -> bool:
    if field in PLAIN_MAPS or field.endswith("_config"):  # bedrock_key_config is a block holding secrets
        return False
    return SECRET_FIELD.search(field) is not None


def _hide(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if value is None or value == "":
        return value
    return MASK  # an object (a service-account JSON), a list, a number: never shown


def masked(field: str, value: Any) -> Any:
    """`value` of stored field `field` as the API shows it: the same shape, secrets masked."""
    if field in PLAIN_MAPS:
        return copy.deepcopy(value)
    if field in SECRET_MAPS and isinstance(value, dict):
        return {k: _hide(v) for k, v in value.items()}
    if _is_secret(field):
        return _hide(value)
    if isinstance(value, dict):
        return {k: masked(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(field, v) for v in value]
    return value


def effective_policy(configured: Mapping[str, str]) -> dict[str, str]:
    """Every failure class's action for a provider: its `failure_policy`, the defaults for the rest."""
    return {**DEFAULT_POLICY, **configured}


def provider_view(
    name: str, cfg: ProviderConfig, raw_entry: dict[str, Any] | None, handle: ProviderHandle | None, source: str
) -> dict[str, Any]:
    """The stored entry, every field of it (secrets masked), plus view-only fields the API ignores on
    the way back in (name, kind, label, source, lane, listed_models, effective, health, keys[].value_source,
    keys[].name_source). So GET then PUT writes back exactly what was stored (issue 9 item 17).

    `raw_entry` is the entry as stored in config.json; for a provider taken from the environment it
    is the entry a first save would write (`env.NAME` references); None for the built-in mock.
    `source` says which: "config", "environment" or "builtin"."""
    spec = PROVIDER_SPECS.get(name)
    stored = raw_entry if raw_entry is not None else {}
    custom = isinstance(stored.get("custom_provider_config"), dict)
    view: dict[str, Any] = {
        "name": name,
        "kind": cfg.kind,
        "label": spec.label if spec is not None and not custom else f"{name} (custom, {cfg.kind} format)",
        "source": source,
    }
    for field, value in stored.items():
        if field not in VIEW_ONLY:
            view[field] = masked(field, value)
    keys = view.get("keys")
    if isinstance(keys, list):
        for i, key in enumerate(keys):
            if not isinstance(key, dict):
                continue
            value = stored["keys"][i].get("value")
            key["value_source"] = (
                "env" if isinstance(value, str) and value.startswith("env.") else ("inline" if value else "none")
            )
            if not key.get("name") and i < len(cfg.keys):
                key["name"], key["name_source"] = cfg.keys[i].name, "default"
    net = cfg.network
    view["effective"] = {  # what the gateway runs with: defaults and the tuning profile filled in
        "models": list(cfg.models),
        "network_config": {
            "base_url": net.base_url,
            "extra_headers": {k: mask(v) for k, v in net.extra_headers.items()},
            "default_request_timeout_in_seconds": net.default_request_timeout_in_seconds,
            "connect_timeout_in_seconds": net.connect_timeout_in_seconds,
            "first_byte_timeout_in_seconds": net.first_byte_timeout_in_seconds,
            "first_token_timeout_in_seconds": net.first_token_timeout_in_seconds,
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
        "keys": [{"name": k.name, "models": list(k.models), "weight": k.weight} for k in cfg.keys],
        "failure_policy": effective_policy(cfg.failure_policy),
        "circuit_breaker": dataclasses.asdict(cfg.circuit_breaker),
        "load_balancing": cfg.load_balancing,
    }
    view["lane"] = lane_view(handle)
    # This worker's breakers and statistics per key and model (runtime/core/health.py); None: none kept.
    view["health"] = handle.health.view() if handle is not None and handle.health is not None else None
    view["listed_models"] = list(handle.listed_models) if handle is not None else []
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


_ABSENT = object()


def merge_secrets(new_entry: dict[str, Any], old_entry: dict[str, Any] | None) -> dict[str, Any]:
    """`new_entry` (from the API) with every masked, null or missing secret taken from `old_entry` (the
    stored raw entry), at any depth: keys are matched by name, else by position; a secret missing
    from a block the client sent keeps its stored value; a masked value with nothing stored is dropped
    (validation then says what is required). Extra headers: masked keeps, missing removes."""
    return _merge(copy.deepcopy(new_entry), old_entry if isinstance(old_entry, dict) else {})


def _merge(new: dict[str, Any], old: dict[str, Any], secret_map: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in new.items():
        before = old.get(field, _ABSENT)
        if secret_map or _is_secret(field):
            if is_masked(value):
                if before is not _ABSENT:
                    out[field] = before
                continue  # nothing stored to keep
            out[field] = value
        elif field in SECRET_MAPS and isinstance(value, dict):
            out[field] = _merge(value, before if isinstance(before, dict) else {}, secret_map=True)
        elif field == "keys" and isinstance(value, list):
            out[field] = _merge_keys(value, before if isinstance(before, list) else [])
        elif isinstance(value, dict) and field not in PLAIN_MAPS:
            out[field] = _merge(value, before if isinstance(before, dict) else {})
        else:
            out[field] = value
    if not secret_map:
        for field, before in old.items():
            if field not in new and _is_secret(field):
                out[field] = before  # a client that does not know the field keeps it
    return out


def _merge_keys(new_keys: list[Any], old_keys: list[Any]) -> list[Any]:
    old_dicts = [k if isinstance(k, dict) else {} for k in old_keys]
    by_name = {k.get("name"): k for k in old_dicts if k.get("name")}
    merged: list[Any] = []
    for i, key in enumerate(new_keys):
        if not isinstance(key, dict):
            merged.append(key)
            continue
        old = by_name.get(key.get("name")) or (old_dicts[i] if i < len(old_dicts) else {})
        merged.append(_merge(key, old))
    return merged


def clean_entry(body: dict[str, Any]) -> dict[str, Any]:
    """The provider entry to store: view-only fields dropped. Which fields a provider may have is the
    config loader's business (it names an unknown one with its path), not repeated here."""
    entry = {k: copy.deepcopy(v) for k, v in body.items() if k not in VIEW_ONLY}
    if entry.get("custom_provider_config") is None:
        entry.pop("custom_provider_config", None)
    lane = entry.get("concurrency_and_buffer_size")
    if isinstance(lane, dict):
        lane.pop("explicit", None)  # older clients sent the view's flag back
    if isinstance(entry.get("keys"), list):
        for i, key in enumerate(entry["keys"]):
            if not isinstance(key, dict):
                continue
            if key.get("name_source") == "default" and key.get("name") == f"key-{i}":
                del key["name"]  # the loader's default name, shown for reading; the file never had one
            for field in KEY_VIEW_ONLY:
                key.pop(field, None)
    net = entry.get("network_config")
    if isinstance(net, dict):
        for k in [k for k, v in net.items() if v is None]:
            del net[k]  # null means "the default", which is what leaving it out says
    return entry
