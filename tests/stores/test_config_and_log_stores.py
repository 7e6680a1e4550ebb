"""The config store and the log store at their interfaces, against every engine in the tables.

A later engine (PostgreSQL) joins by being in CONFIG_STORE_ENGINES / LOG_STORE_ENGINES (and, for a
server engine, a fixture that starts the real server and names it in the config).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.config.load import ConfigError, load_gateway_config
from runtime.requestlog.filters import LogFilter, Page
from runtime.requestlog.record import COLUMNS
from runtime.stores import engines
from runtime.stores.config import ConfigStore
from runtime.stores.logs import LogReader, LogReadError, LogStore

DOC = {"providers": {"openai": {"keys": [{"name": "k", "value": "sk-1", "models": [], "weight": 1}]}}}


@pytest.fixture(params=sorted(engines.CONFIG_STORE_ENGINES))
def config_engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=sorted(engines.LOG_STORE_ENGINES))
def log_engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server_blocks(request: pytest.FixtureRequest) -> Callable[[str, str], dict[str, Any]]:
    """The config.json blocks that put `block` on `engine`: nothing for the embedded one; for PostgreSQL a
    fresh database on the session's real server (started only when a test asks for it)."""

    def blocks(block: str, engine: str) -> dict[str, Any]:
        if engine == "sqlite":
            return {}
        server = request.getfixturevalue("postgres_server")
        return {block: {"type": "postgres", "config": server.settings(server.new_database())}}

    return blocks


class ConfigStores:
    """Opens config stores the way start-up does (`engines.open_config_store`), closes them at the end."""

    def __init__(self) -> None:
        self.opened: list[ConfigStore] = []

    async def open(self, app_dir: Path) -> ConfigStore:
        store = await engines.open_config_store(load_gateway_config(app_dir, environ={}))
        self.opened.append(store)
        return store

    async def close(self) -> None:
        for store in self.opened:
            close = getattr(store, "close", None)
            if close is not None:
                await close()


@pytest.fixture
async def config_stores() -> AsyncIterator[ConfigStores]:
    stores = ConfigStores()
    yield stores
    await stores.close()


# -- config store ----------------------------------------------------------------------------------
async def test_apply_persists_and_validates(
    config_engine: str, tmp_path: Path, server_blocks: Any, config_stores: ConfigStores
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({**DOC, **server_blocks("config_store", config_engine)}))
    store = await config_stores.open(tmp_path)
    assert isinstance(store, ConfigStore)
    new, result = await store.apply(lambda raw: raw["providers"]["openai"].update(models=["gpt-4o"]) or "done")
    assert result == "done"
    assert list(new.providers["openai"].models) == ["gpt-4o"]
    assert store.current is new
    again = await config_stores.open(tmp_path)  # what a restart (or another instance) reads
    assert again.raw["providers"]["openai"]["models"] == ["gpt-4o"]

    def bad(raw: dict[str, Any]) -> None:
        raw["providers"]["openai"]["keys"][0]["weight"] = -1

    with pytest.raises(ConfigError, match=r"providers\.openai\.keys\[0\]\.weight"):
        await store.apply(bad)
    assert store.current is new  # nothing applied
    assert (await config_stores.open(tmp_path)).raw["providers"]["openai"]["keys"][0]["weight"] == 1


async def test_changes_reports_what_another_instance_applied(
    config_engine: str, tmp_path: Path, server_blocks: Any, config_stores: ConfigStores
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({**DOC, **server_blocks("config_store", config_engine)}))
    watcher, writer = await config_stores.open(tmp_path), await config_stores.open(tmp_path)
    feed = watcher.changes()
    waiting = asyncio.ensure_future(anext(feed))  # the feed is listening before the edit is made
    await asyncio.sleep(0.5)
    await writer.apply(lambda raw: raw["providers"]["openai"].update(models=["seen"]))
    seen = await asyncio.wait_for(waiting, 30)
    assert list(seen.providers["openai"].models) == ["seen"]
    await feed.aclose()  # type: ignore[attr-defined]


# -- log store -------------------------------------------------------------------------------------
def _row(i: int) -> tuple[Any, ...]:
    base: dict[str, Any] = {c: None for c in COLUMNS}
    base.update(id=f"r{i}", ts_ms=int(time.time() * 1000), endpoint="chat", provider="openai", model="m", status=200)
    base.update(stream=0, latency_us=1000, overhead_us=10, input=b'{"q":1}', output=b'{"a":1}', ingress="openai")
    return tuple(base[c] for c in COLUMNS)


def _log_store(engine: str, app_dir: Path, blocks: dict[str, Any] | None = None) -> LogStore:
    if blocks:
        (app_dir / "config.json").write_text(json.dumps(blocks))
    config = load_gateway_config(app_dir, environ={})
    store: LogStore = engines.load(engines.LOG_STORE_ENGINES, engine).from_config(config)
    return store


async def test_rows_written_are_read_back(log_engine: str, tmp_path: Path, server_blocks: Any) -> None:
    store = _log_store(log_engine, tmp_path, server_blocks("logs_store", log_engine))
    writer = store.writer
    batches: list[int] = []
    writer.listeners.append(lambda rows: batches.append(len(rows)))
    await writer.start()
    for i in range(25):
        writer.submit(_row(i))
    await writer.close()  # drains what is buffered
    assert (writer.written, writer.dropped, writer.failed, writer.pending) == (25, 0, 0, 0)
    assert sum(batches) == 25
    reader: LogReader = store.reader()
    try:
        assert reader.available()
        page = await reader.list(LogFilter(), Page(limit=10))
        assert page["total"] == 25 and len(page["items"]) == 10 and page["has_more"]
        record = await reader.get("r3")
        assert record is not None and record["input"] == {"q": 1}
        assert await reader.get("nope") is None
        last = await reader.last_rowid()
        assert [row[0] for _, row in await reader.tail(last - 2)] == ["r23", "r24"]
        assert (await reader.stats(LogFilter()))["count"] == 25
        assert (await reader.facets())["providers"] == ["openai"]
    finally:
        await reader.close()


async def test_a_store_that_cannot_be_read_raises_the_stores_error(log_engine: str, tmp_path: Path) -> None:
    if log_engine != "sqlite":
        pytest.skip("a file engine only")
    (tmp_path / "logs.db").write_bytes(b"this is not a database" * 100)
    reader = _log_store(log_engine, tmp_path).reader()
    try:
        with pytest.raises(LogReadError):  # not aiosqlite's: nothing above the store imports the driver
            await reader.list(LogFilter(), Page())
    finally:
        await reader.close()
