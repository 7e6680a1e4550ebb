"""Engine selection: config.json's `config_store` / `logs_store` blocks (Go Bifrost's names) and the
app wiring that builds every store from the tables of runtime/stores/engines.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from runtime.app import create_app
from runtime.config.load import load_gateway_config
from runtime.http.keys import CONFIG_STORE, LOG_STORE, SHARED_STATE
from runtime.stores.config import ConfigStore
from runtime.stores.engines import CONFIG_STORE_ENGINES, LOG_STORE_ENGINES, SHARED_STATE_ENGINES, engine_name
from runtime.stores.shared import SharedState

POSTGRES = {"host": "db", "port": "5432", "user": "u", "password": "p", "db_name": "b", "ssl_mode": "disable"}


def load(tmp_path: Path, doc: dict[str, Any]) -> Any:
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return load_gateway_config(tmp_path, environ={})


def test_every_table_has_the_embedded_engine() -> None:
    for table in (CONFIG_STORE_ENGINES, LOG_STORE_ENGINES, SHARED_STATE_ENGINES):
        assert "sqlite" in table


@pytest.mark.parametrize("block", ["config_store", "logs_store"])
def test_an_engine_we_lack_loads_on_the_embedded_one_with_a_warning(tmp_path: Path, block: str) -> None:
    config = load(tmp_path, {block: {"enabled": True, "type": "postgres", "config": POSTGRES}})
    assert engine_name(config, block) == "sqlite"
    (warning,) = [w for w in config.warnings if w.startswith(f"{block}.type:")]
    assert "'postgres' engine is not available in this version yet" in warning
    assert "embedded 'sqlite' engine is used" in warning


@pytest.mark.parametrize("block", ["config_store", "logs_store"])
def test_a_disabled_block_or_the_embedded_engine_loads_with_a_warning(tmp_path: Path, block: str) -> None:
    off = load(tmp_path, {block: {"enabled": False, "type": "postgres", "config": POSTGRES}})
    assert engine_name(off, block) == "sqlite"
    embedded = load(tmp_path, {block: {"enabled": True, "type": "sqlite", "config": {"path": "x.db"}}})
    assert engine_name(embedded, block) == "sqlite"
    assert any(w.startswith(f"{block}:") for w in embedded.warnings)  # its config (a path) has no effect


async def test_the_app_builds_and_closes_every_store(tmp_path: Path) -> None:
    config = load(tmp_path, {"client": {"enable_logging": True}})
    app = create_app(config)
    assert isinstance(app[CONFIG_STORE], ConfigStore)
    assert isinstance(app[SHARED_STATE], SharedState)
    assert app[LOG_STORE].writer is not None
    async with TestClient(TestServer(app)) as client:
        shared = client.app[SHARED_STATE]
        assert (await client.get("/health")).status == 200
        assert not (tmp_path / "state.db").exists()  # unused: not even opened
        assert await shared.incr("started") == 1  # the first use opens it
        assert (tmp_path / "state.db").exists()
    with pytest.raises(RuntimeError, match="closed"):  # closed by cleanup_ctx at shutdown
        await shared.incr("after close")


async def test_no_log_store_when_logging_is_off(tmp_path: Path) -> None:
    app = create_app(load(tmp_path, {"client": {"enable_logging": False}}))
    assert LOG_STORE not in app
