"""config.json `plugins`: names looked up in the one registry (built-ins and `bifrost.plugins` entry
points), each plugin's `config` checked against the fields it declares, Go plugins we lack warned."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.process import REPO_ROOT
from test_hooks import install_example

from runtime.app import create_app
from runtime.config.load import ConfigError, load_gateway_config
from runtime.core.hooks import Hooks
from runtime.http.keys import GATEWAY
from runtime.plugins import registry


@pytest.fixture
def example_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(install_example(tmp_path / "site")))
    monkeypatch.syspath_prepend(str(REPO_ROOT / "tests" / "plugins_example"))
    registry._entry_points.cache_clear()
    yield
    registry._entry_points.cache_clear()


def _load(tmp_path: Path, plugins: list[dict[str, Any]]) -> Any:
    app_dir = tmp_path / "app"
    app_dir.mkdir(exist_ok=True)
    (app_dir / "config.json").write_text(json.dumps({"plugins": plugins}))
    return load_gateway_config(app_dir, environ={})


def test_third_party_plugin_from_config_is_built_after_the_builtins(tmp_path: Path, example_installed: None) -> None:
    config = _load(tmp_path, [{"name": "example", "enabled": True, "config": {"tag": "x"}}])
    assert [(p.name, p.enabled, dict(p.config)) for p in config.plugins] == [("example", True, {"tag": "x"})]
    hooks: Hooks = create_app(config)[GATEWAY].hooks
    assert [p.name for p in hooks.plugins] == ["request-log", "metrics", "example"]
    assert hooks.plugins[-1].tag == "x"
    assert len(hooks.pre) == 1 and len(hooks.chunk) == 1


def test_plugin_config_is_checked_with_field_paths(tmp_path: Path, example_installed: None) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, [{"name": "example", "enabled": True, "config": {"tagg": "x"}}])
    assert err.value.path == "plugins[0].config.tagg" and "did you mean 'tag'" in err.value.message
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, [{"name": "example", "enabled": True, "config": {"tag": 3}}])
    assert err.value.path == "plugins[0].config.tag"
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, [{"name": "exampel", "enabled": True}])
    assert err.value.path == "plugins[0].name" and "did you mean 'example'" in err.value.message
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, [{"name": "example", "enabled": "yes"}])
    assert err.value.path == "plugins[0].enabled"


def test_go_plugins_we_lack_are_warnings(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        [
            {"name": "maxim", "enabled": True, "config": {"api_key": "x"}},
            {"name": "hello-world", "enabled": True, "path": "/plugins/hello.so"},
            {"name": "telemetry", "enabled": True, "config": {"push_gateway": {}}},
        ],
    )
    assert [p.name for p in config.plugins] == ["telemetry"]
    joined = "\n".join(config.warnings)
    assert "plugins[0]: Go Bifrost plugin 'maxim'" in joined  # (semantic_cache is implemented: tests/cache)
    assert "plugins[1]: Go Bifrost plugin 'hello-world'" in joined
    assert "plugins[1].path:" in joined
    assert "plugins[2].config.push_gateway:" in joined


def test_builtins_are_registry_rows_and_can_be_disabled(tmp_path: Path) -> None:
    config = _load(tmp_path, [{"name": "logging", "enabled": False}])
    hooks: Hooks = create_app(config)[GATEWAY].hooks
    assert [p.name for p in hooks.plugins] == ["metrics"]
    assert not hooks.pre and not hooks.post and not hooks.chunk  # no per-request stage but on_finish
