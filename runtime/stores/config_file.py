"""The embedded config store: `<app_dir>/config.json`, edited atomically, watched for others' edits.

    FileConfigStore.mutate(change)  read-modify-write under a cross-process lock (blocking; `apply`
                                    runs it in a thread):
        1. re-read config.json if another worker (or a person) changed it since we last looked
        2. apply `change` to a deep copy of the raw document (secrets still written as `env.NAME`)
        3. validate the whole document into a new GatewayConfig (ConfigError names the field path)
        4. write a temp file, fsync, os.replace: readers see the old file or the new one, never half
    FileConfigStore.poll()      what another process wrote, validated (None when nothing changed)
    FileConfigStore.changes()   poll once a second (one stat on the loop; reading and validating a
                                changed file in a thread): live reload across workers

Only the raw document is ever written, so an `env.NAME` reference the edit did not touch stays a
reference and its secret never lands on disk. If validation or the write fails, the file on disk and
the in-memory state are both left as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from runtime.config.groups import parse_model_groups
from runtime.config.load import (
    ConfigError,
    check_governance,
    parse_document,
    parse_guardrails_block,
    parse_plugins,
    read_config_file,
)
from runtime.config.model import ClientConfig, GatewayConfig
from runtime.stores.config import ConfigStore, ConfigWriteError, Raw, env_providers_raw
from runtime.stores.files import file_signature, write_atomic
from runtime.stores.status import StoreStatus

try:  # POSIX: serialise writers across worker processes
    import fcntl
except ImportError:  # pragma: no cover - Windows runs one worker
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("bifrost.config")

WATCH_INTERVAL_S = 1.0
__all__ = ["ConfigWriteError", "FileConfigStore", "Raw", "env_providers_raw", "file_signature", "write_atomic"]


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class FileConfigStore:
    """The raw config document of one app dir, and the validated GatewayConfig it yields."""

    def __init__(
        self, config: GatewayConfig, environ: Mapping[str, str] | None = None, interval_s: float = WATCH_INTERVAL_S
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self.path = config.config_path
        self.lock_path = self.path.with_name(".config.json.lock")
        self.current = config
        self.raw: Raw = copy.deepcopy(dict(config.raw))
        # Keys the file leaves out of `client` keep the values start-up chose (a profile's defaults).
        self._client_defaults: ClientConfig = config.client
        self.signature = file_signature(self.path)
        self._lock = threading.Lock()
        self.interval_s = interval_s
        # A local file: up for as long as the gateway runs (its errors are answered per admin request).
        self.status = StoreStatus("sqlite", self.path.name)
        self.status.ok()

    @classmethod
    def from_config(cls, config: GatewayConfig) -> FileConfigStore:
        return cls(config)

    # -- building ------------------------------------------------------------------------------------
    def build(self, raw: Mapping[str, Any]) -> GatewayConfig:
        """Validate a whole raw document into a GatewayConfig (raises ConfigError)."""
        providers, client, warnings = parse_document(raw, self.environ, self.current.tuning, self._client_defaults)
        return dataclasses.replace(
            self.current,
            providers=MappingProxyType(providers),
            client=client,
            governance=check_governance(raw, self.environ, providers, client, []),  # virtual keys apply live
            plugins=parse_plugins(raw.get("plugins"), []),
            model_groups=parse_model_groups(
                raw.get("model_groups"), providers
            ),  # groups apply live  # checked by parse_document; the cache switches live
            guardrails=parse_guardrails_block(raw),  # checked by parse_document; rules apply live
            raw=MappingProxyType(copy.deepcopy(dict(raw))),
            warnings=warnings,
        )

    # -- writing -------------------------------------------------------------------------------------
    async def apply(self, change: Callable[[Raw], Any]) -> tuple[GatewayConfig, Any]:
        """The store interface's atomic edit: `mutate` on a thread (it takes a file lock and fsyncs)."""
        return await asyncio.to_thread(self.mutate, change)

    def mutate(self, change: Callable[[Raw], Any]) -> tuple[GatewayConfig, Any]:
        """Apply `change(raw)` and persist. Blocking (file lock, fsync): call it in a thread.

        Returns (the new config, whatever `change` returned). Raises ConfigError (nothing written)
        or ConfigWriteError (the old file kept)."""
        with self._lock, _locked(self.lock_path):
            self._refresh_from_disk()
            draft = copy.deepcopy(self.raw)
            if not isinstance(draft.get("providers"), dict):
                draft["providers"] = env_providers_raw(self.current)
            result = change(draft)
            new = self.build(draft)
            write_atomic(self.path, json.dumps(draft, indent=2, ensure_ascii=False) + "\n")
            self.raw = draft
            self.current = new
            self.signature = file_signature(self.path)
            return new, result

    def _refresh_from_disk(self) -> None:
        """Adopt what another process wrote, so this edit does not undo theirs."""
        if file_signature(self.path) == self.signature:
            return
        raw = read_config_file(self.path)
        if raw is None:
            return  # deleted by hand: keep ours; the write below recreates it
        self.current = self.build(raw)
        self.raw = raw
        self.signature = file_signature(self.path)

    # -- reading others' edits -----------------------------------------------------------------------
    def changed_on_disk(self) -> bool:
        """Cheap (one stat): whether `poll` would find something new."""
        signature = file_signature(self.path)
        return signature is not None and signature != self.signature

    def poll(self) -> GatewayConfig | None:
        """The new config if config.json changed since we last read or wrote it, else None.

        Raises ConfigError when the changed file is invalid (the caller keeps the running config;
        the signature is remembered so the same bad file is reported once)."""
        signature = file_signature(self.path)
        if signature == self.signature or signature is None:
            return None
        with self._lock:
            self.signature = signature
            raw = read_config_file(self.path)
            if raw is None:
                return None
            new = self.build(raw)
            self.raw = raw
            self.current = new
            return new

    async def check(self) -> GatewayConfig | None:
        """One look: the new config if another process replaced the file, else None (invalid: logged)."""
        if not self.changed_on_disk():  # one stat, on the loop: cheap
            return None
        try:
            return await asyncio.to_thread(self.poll)
        except (ConfigError, OSError) as exc:
            log.warning("config.json changed but cannot be used, keeping the running config: %s", exc)
            return None

    async def changes(self) -> AsyncIterator[GatewayConfig]:
        while True:
            await asyncio.sleep(self.interval_s)
            new = await self.check()
            if new is not None:
                yield new


if TYPE_CHECKING:  # mypy holds the engine to the interface
    _engine: type[ConfigStore] = FileConfigStore
