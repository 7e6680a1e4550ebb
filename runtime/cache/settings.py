"""The `semantic_cache` plugin's config (Go Bifrost's fields, plus a few of ours) and the per-request
`x-bf-cache-*` headers.

    {"name": "semantic_cache", "config": {"dimension": 1, "ttl": "5m", "default_cache_key": "app"}}

Go's fields: provider, keys, embedding_model, cleanup_on_shutdown, ttl (seconds or a Go duration such
as "5m"), threshold, vector_store_namespace, dimension (1: direct only; >= 2 with provider and
embedding_model: direct, then semantic), default_cache_key, conversation_history_threshold,
cache_by_model, cache_by_provider, exclude_system_prompt. `keys` and `vector_store_namespace` are
accepted with a warning: embeddings go through the gateway's own providers (their keys, retries and
cost), and the store is embedded (no namespace to pick).

Ours: max_entries, max_bytes (the store's caps), max_entry_bytes (a bigger answer is not stored),
coalesce (concurrent identical misses share one upstream call), scope ("virtual_key": entries never
cross virtual keys; "global": they do).

Errors carry the field's path (`plugins[2].config.ttl: ...`), raised as the config loader's ConfigError.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import InvalidRequest

DEFAULT_TTL_S = 300.0  # Go's default: 5 minutes
DEFAULT_THRESHOLD = 0.8
DEFAULT_HISTORY = 3
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_ENTRY_BYTES = 4 * 1024 * 1024
SCOPES = ("virtual_key", "global")
CACHE_TYPES = ("direct", "semantic")

# The config field -> accepted JSON types, checked by the config loader (runtime/plugins/registry.py).
FIELDS: Mapping[str, Any] = {
    "provider": str,
    "keys": list,
    "embedding_model": str,
    "cleanup_on_shutdown": bool,
    "ttl": (int, float, str),
    "threshold": (int, float),
    "vector_store_namespace": str,
    "dimension": int,
    "default_cache_key": str,
    "conversation_history_threshold": int,
    "cache_by_model": bool,
    "cache_by_provider": bool,
    "exclude_system_prompt": bool,
    "max_entries": int,
    "max_bytes": int,
    "max_entry_bytes": int,
    "coalesce": bool,
    "scope": str,
}

# Go's time.ParseDuration units, in seconds ("µs" and "μs" are both Go's spellings of microseconds).
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_MAX_TTL_S = 10 * 365 * 86400.0  # a bound so a typo cannot overflow the clock arithmetic


def parse_duration(value: Any) -> float | None:
    """Seconds from a non-negative number (seconds) or a Go duration string ("90s", "5m", "1h30m",
    or plain digits "300"); None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.isdigit():
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            while pos < len(text):
                m = _PART.match(text, pos)
                if m is None:
                    return None
                seconds += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
    else:
        return None
    if not math.isfinite(seconds) or seconds < 0 or seconds > _MAX_TTL_S:
        return None
    return seconds


class SettingsError(ValueError):
    """A config field the plugin cannot use: `field` (e.g. "ttl") and a message. The caller turns it into
    the loader's ConfigError with the full path."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True, slots=True)
class CacheSettings:
    dimension: int = 1
    provider: str | None = None
    embedding_model: str | None = None
    ttl_s: float = DEFAULT_TTL_S
    threshold: float = DEFAULT_THRESHOLD
    cleanup_on_shutdown: bool = False
    default_cache_key: str | None = None
    conversation_history_threshold: int = DEFAULT_HISTORY
    cache_by_model: bool = True
    cache_by_provider: bool = True
    exclude_system_prompt: bool = False
    vector_store_namespace: str | None = None
    max_entries: int = DEFAULT_MAX_ENTRIES
    max_bytes: int = DEFAULT_MAX_BYTES
    max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES
    coalesce: bool = True
    scope: str = "virtual_key"
    ttl_raw: Any = None  # the ttl as configured (a duration string stays one in to_config)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def semantic(self) -> bool:
        """Direct lookups, then semantic ones on a miss (Go: a provider and a dimension >= 2)."""
        return self.provider is not None and self.embedding_model is not None and self.dimension >= 2

    @property
    def embedding_target(self) -> str:
        """The `provider/model` the embedding sub-request is routed to."""
        return f"{self.provider}/{self.embedding_model}"

    def to_config(self) -> dict[str, Any]:
        """The config in Go Bifrost's field names (plus ours), as the admin API shows and edits it."""
        out: dict[str, Any] = {"dimension": self.dimension}
        if self.provider is not None:
            out["provider"] = self.provider
        if self.embedding_model is not None:
            out["embedding_model"] = self.embedding_model
        ttl: Any = self.ttl_raw if self.ttl_raw is not None else self.ttl_s
        out["ttl"] = int(ttl) if isinstance(ttl, float) and ttl.is_integer() else ttl
        out.update(
            threshold=self.threshold,
            cleanup_on_shutdown=self.cleanup_on_shutdown,
            conversation_history_threshold=self.conversation_history_threshold,
            cache_by_model=self.cache_by_model,
            cache_by_provider=self.cache_by_provider,
            exclude_system_prompt=self.exclude_system_prompt,
        )
        if self.default_cache_key is not None:
            out["default_cache_key"] = self.default_cache_key
        if self.vector_store_namespace is not None:
            out["vector_store_namespace"] = self.vector_store_namespace
        out.update(
            max_entries=self.max_entries,
            max_bytes=self.max_bytes,
            max_entry_bytes=self.max_entry_bytes,
            coalesce=self.coalesce,
            scope=self.scope,
        )
        return out


def _int(config: Mapping[str, Any], name: str, default: int, minimum: int) -> int:
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(name, f"must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise SettingsError(name, f"must be at least {minimum}, got {value}")
    return value


def _bool(config: Mapping[str, Any], name: str, default: bool) -> bool:
    value = config.get(name, default)
    if not isinstance(value, bool):
        raise SettingsError(name, f"must be true or false, got {type(value).__name__}")
    return value


def _str(config: Mapping[str, Any], name: str) -> str | None:
    value = config.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(name, "must be a non-empty string")
    return value


def parse_settings(config: Mapping[str, Any]) -> CacheSettings:
    """The plugin's config -> CacheSettings. Raises SettingsError naming the field."""
    unknown = sorted(set(config) - set(FIELDS))
    if unknown:
        raise SettingsError(unknown[0], f"unknown field; known: {', '.join(sorted(FIELDS))}")
    warnings: list[str] = []
    provider = _str(config, "provider")
    embedding_model = _str(config, "embedding_model")
    dimension = _int(config, "dimension", 1, 1)
    if provider is not None:
        if embedding_model is None:
            raise SettingsError("embedding_model", "is required when provider is set (semantic mode)")
        if dimension < 2:
            raise SettingsError("dimension", "must be at least 2 with a provider (semantic mode); 1 is direct only")
    elif embedding_model is not None:
        raise SettingsError("embedding_model", "needs a provider (semantic mode); without one, drop it (direct only)")
    elif dimension != 1:
        raise SettingsError(
            "dimension", "must be 1 without a provider (direct only), or set provider and embedding_model"
        )
    keys = config.get("keys")
    if keys is not None:
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise SettingsError("keys", "must be a list of strings")
        if keys:
            warnings.append("keys: ignored; embeddings use the gateway's own keys for the provider")
    namespace = _str(config, "vector_store_namespace")
    if namespace is not None:
        warnings.append("vector_store_namespace: ignored; the cache store is embedded")
    ttl_raw = config.get("ttl")
    ttl_s = DEFAULT_TTL_S
    if ttl_raw is not None:
        parsed = parse_duration(ttl_raw)
        if parsed is None:
            raise SettingsError("ttl", f"must be seconds (a number >= 0) or a duration such as '5m', got {ttl_raw!r}")
        if parsed == 0:
            raise SettingsError("ttl", "must be more than 0 (an entry that expires at once is never served)")
        ttl_s = parsed
    threshold = config.get("threshold", DEFAULT_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise SettingsError("threshold", f"must be a number from 0 to 1, got {threshold!r}")
    default_key = config.get("default_cache_key")
    if default_key is not None and (not isinstance(default_key, str) or not default_key):
        raise SettingsError("default_cache_key", "must be a non-empty string")
    scope = config.get("scope", "virtual_key")
    if scope not in SCOPES:
        raise SettingsError("scope", f"must be one of {', '.join(SCOPES)}, got {scope!r}")
    return CacheSettings(
        dimension=dimension,
        provider=provider,
        embedding_model=embedding_model,
        ttl_s=ttl_s,
        threshold=float(threshold),
        cleanup_on_shutdown=_bool(config, "cleanup_on_shutdown", False),
        default_cache_key=default_key,
        conversation_history_threshold=_int(config, "conversation_history_threshold", DEFAULT_HISTORY, 0),
        cache_by_model=_bool(config, "cache_by_model", True),
        cache_by_provider=_bool(config, "cache_by_provider", True),
        exclude_system_prompt=_bool(config, "exclude_system_prompt", False),
        vector_store_namespace=namespace,
        max_entries=_int(config, "max_entries", DEFAULT_MAX_ENTRIES, 1),
        max_bytes=_int(config, "max_bytes", DEFAULT_MAX_BYTES, 1024),
        max_entry_bytes=_int(config, "max_entry_bytes", DEFAULT_MAX_ENTRY_BYTES, 1),
        coalesce=_bool(config, "coalesce", True),
        scope=scope,
        ttl_raw=ttl_raw,
        warnings=tuple(warnings),
    )


# -- per-request headers --------------------------------------------------------------------------------
H_KEY = "x-bf-cache-key"
H_TTL = "x-bf-cache-ttl"
H_THRESHOLD = "x-bf-cache-threshold"
H_TYPE = "x-bf-cache-type"
H_NO_STORE = "x-bf-cache-no-store"
MAX_KEY_CHARS = 256


@dataclass(frozen=True, slots=True)
class RequestOptions:
    cache_key: str
    ttl_s: float
    threshold: float
    direct: bool  # look up by exact hash
    semantic: bool  # look up by similarity (semantic mode only)
    store: bool


def request_options(headers: Mapping[str, str], settings: CacheSettings) -> RequestOptions | None:
    """The request's cache options, or None when it carries no cache key (Go: caching engages only with
    one). Malformed values are a 400 (InvalidRequest) in the ingress's error shape."""
    key = headers.get(H_KEY)
    if key is None:
        key = settings.default_cache_key
        if key is None:
            return None
    else:
        key = key.strip()
        if not key or len(key) > MAX_KEY_CHARS or not key.isprintable():
            raise InvalidRequest(f"{H_KEY} must be 1 to {MAX_KEY_CHARS} printable characters", param=H_KEY)
    ttl_s = settings.ttl_s
    value = headers.get(H_TTL)
    if value is not None:
        parsed = parse_duration(value)
        if parsed is None or parsed == 0:
            raise InvalidRequest(f"{H_TTL} must be seconds (> 0) or a duration such as '5m'", param=H_TTL)
        ttl_s = parsed
    threshold = settings.threshold
    value = headers.get(H_THRESHOLD)
    if value is not None:
        try:
            asked = float(value)
        except ValueError:
            asked = math.nan
        if not 0.0 <= asked <= 1.0:  # (NaN fails too)
            raise InvalidRequest(f"{H_THRESHOLD} must be a number from 0 to 1", param=H_THRESHOLD)
        threshold = min(1.0, max(settings.threshold, asked))  # Go: a request may only raise it
    direct, semantic = True, settings.semantic
    value = headers.get(H_TYPE)
    if value is not None:
        kind = value.strip().lower()
        if kind not in CACHE_TYPES:
            raise InvalidRequest(f"{H_TYPE} must be 'direct' or 'semantic'", param=H_TYPE)
        direct = kind == "direct"
        semantic = kind == "semantic" and settings.semantic
    store = True
    value = headers.get(H_NO_STORE)
    if value is not None:
        flag = value.strip().lower()
        if flag in ("true", "1"):
            store = False
        elif flag not in ("false", "0"):
            raise InvalidRequest(f"{H_NO_STORE} must be true, false, 1 or 0", param=H_NO_STORE)
    return RequestOptions(key, ttl_s, threshold, direct, semantic, store)
