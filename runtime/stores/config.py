"""The config store: the gateway's configuration document, its atomic edits and its change feed.

- `current` / `raw`: the validated GatewayConfig and the raw document it came from (secrets still
  written as `env.NAME` references: only the raw document is ever persisted).
- `apply(change)`: read-modify-write as one atomic step against every other writer (another
  worker, another instance, a person): adopt what others wrote, apply `change(raw)` to a copy,
  validate the whole document (ConfigError with the field path; nothing written), persist it so
  that readers see the old document or the new one, never half. Returns (new config, change's result).
- `changes()`: an async iterator of the configs others wrote, validated, as they appear. A document
  that does not validate is reported (logged) once and skipped; the running config stays.

Engines: `config_file.FileConfigStore` (embedded: `<app_dir>/config.json`, a cross-process file lock,
temp file + fsync + rename, change detection by stat once a second). A PostgreSQL engine would keep
the document in a row (SELECT ... FOR UPDATE to mutate, LISTEN/NOTIFY for `changes`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from runtime.providers.registry import PROVIDER_SPECS

if TYPE_CHECKING:
    from runtime.config.model import GatewayConfig

Raw = dict[str, Any]


class ConfigWriteError(OSError):
    """The config document could not be written; the previous one is still in place."""


@runtime_checkable
class ConfigStore(Protocol):
    current: GatewayConfig
    raw: Raw

    def build(self, raw: Mapping[str, Any]) -> GatewayConfig:
        """Validate a whole raw document into a GatewayConfig without storing it (raises ConfigError)."""

    async def apply(self, change: Callable[[Raw], Any]) -> tuple[GatewayConfig, Any]:
        """Apply `change(raw)` atomically and persist; raises ConfigError or ConfigWriteError."""

    def changes(self) -> AsyncIterator[GatewayConfig]:
        """Configs written by others, validated, as they appear (runs until cancelled)."""


def env_providers_raw(config: GatewayConfig) -> Raw:
    """The providers a file-less start took from the environment, written as `env.NAME` references,
    so that the first saved edit does not silently drop them on the next start."""
    block: Raw = {}
    for name, provider in config.providers.items():
        spec = PROVIDER_SPECS.get(name)
        if name == "mock" or spec is None or not spec.env_key:
            continue
        key: Raw = {"name": spec.env_key.lower(), "value": f"env.{spec.env_key}"}
        if provider.keys and provider.keys[0].azure is not None:
            key["azure_key_config"] = {
                "endpoint": provider.keys[0].azure.endpoint,
                "api_version": provider.keys[0].azure.api_version,
            }
        block[name] = {"keys": [key]}
    return block
