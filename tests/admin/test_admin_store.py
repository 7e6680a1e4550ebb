"""ConfigStore in-process: atomic writes, failed writes keep the last good file, env refs kept."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runtime.config.load import ConfigError, load_gateway_config
from runtime.stores.config import ConfigWriteError
from runtime.stores.config_file import FileConfigStore as ConfigStore


def _store(tmp_path: Path, doc: dict, environ: dict[str, str]) -> ConfigStore:
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return ConfigStore(load_gateway_config(tmp_path, environ=environ), environ=environ)


DOC = {
    "providers": {
        "openai": {"keys": [{"name": "k", "value": "env.KEY"}], "network_config": {"base_url": "http://127.0.0.1:9"}}
    }
}


def test_write_is_atomic_and_keeps_env_references(tmp_path: Path) -> None:
    store = _store(tmp_path, DOC, {"KEY": "sk-fake-1"})
    new, _ = store.mutate(lambda raw: raw["providers"]["openai"].update(models=["gpt-4o"]))
    assert new.providers["openai"].models == ("gpt-4o",)
    assert new.providers["openai"].keys[0].value == "sk-fake-1"
    text = (tmp_path / "config.json").read_text()
    assert "env.KEY" in text and "sk-fake-1" not in text
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_failed_write_keeps_last_good_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path, DOC, {"KEY": "sk-fake-1"})
    before = (tmp_path / "config.json").read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(ConfigWriteError, match="No space left"):
        store.mutate(lambda raw: raw["providers"].pop("openai"))
    monkeypatch.undo()
    assert (tmp_path / "config.json").read_bytes() == before
    assert "openai" in store.current.providers and "openai" in store.raw["providers"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_invalid_edit_writes_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path, DOC, {"KEY": "sk-fake-1"})
    before = (tmp_path / "config.json").read_bytes()
    with pytest.raises(ConfigError) as info:
        store.mutate(lambda raw: raw["providers"]["openai"]["keys"][0].update(weight=-1))  # 0 is valid (Go)
    assert info.value.path == "providers.openai.keys[0].weight"
    assert (tmp_path / "config.json").read_bytes() == before


def test_other_writers_edits_are_not_lost(tmp_path: Path) -> None:
    env = {"KEY": "sk-fake-1"}
    first = _store(tmp_path, DOC, env)
    second = ConfigStore(load_gateway_config(tmp_path, environ=env), environ=env)  # another worker
    first.mutate(
        lambda raw: raw["providers"].update(
            a={
                "custom_provider_config": {"base_provider_type": "openai"},
                "network_config": {"base_url": "http://127.0.0.1:1"},
            }
        )
    )
    second.mutate(
        lambda raw: raw["providers"].update(
            b={
                "custom_provider_config": {"base_provider_type": "openai"},
                "network_config": {"base_url": "http://127.0.0.1:2"},
            }
        )
    )
    on_disk = json.loads((tmp_path / "config.json").read_text())["providers"]
    assert {"openai", "a", "b"} <= set(on_disk)
    assert first.poll() is not None and "b" in first.current.providers


def test_env_started_providers_survive_the_first_edit(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "sk-fake-1"}
    store = ConfigStore(load_gateway_config(tmp_path, environ=env), environ=env)
    store.mutate(lambda raw: raw.setdefault("client", {}).update(log_retention_days=3))
    on_disk = json.loads((tmp_path / "config.json").read_text())
    assert on_disk["providers"]["openai"]["keys"][0]["value"] == "env.OPENAI_API_KEY"
    assert "sk-fake-1" not in (tmp_path / "config.json").read_text()
