"""Engine selection: config.json's `config_store` / `logs_store` blocks (Go Bifrost's names) and the
app wiring that builds every store from the tables of runtime/stores/engines.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from runtime.app import create_app
from runtime.config.load import ConfigError, load_gateway_config
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
def test_postgres_is_selected_by_go_bifrosts_block(tmp_path: Path, block: str) -> None:
    config = load(tmp_path, {block: {"enabled": True, "type": "postgres", "config": POSTGRES}})
    assert engine_name(config, block) == "postgres"
    settings = config.stores.config if block == "config_store" else config.stores.logs
    assert (settings.host, settings.port, settings.user, settings.database) == ("db", 5432, "u", "b")
    assert "password" not in repr(settings)  # the password never reaches a repr or a log line
    assert not [w for w in config.warnings if w.startswith(block)]


@pytest.mark.parametrize("block", ["config_store", "logs_store"])
@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"port": "x"}, "config.port", "port number"),
        ({"port": "70000"}, "config.port", "1-65535"),
        ({"ssl_mode": "sometimes"}, "config.ssl_mode", "expected one of"),
        ({"max_open_conns": 1}, "config.max_open_conns", "2 or more"),
        ({"hots": "x"}, "config.hots", "unknown field"),
        ({"host": None}, "config.host", "required"),
    ],
)
def test_postgres_settings_errors_name_their_path(
    tmp_path: Path, block: str, change: dict[str, Any], path: str, message: str
) -> None:
    conf = {k: v for k, v in {**POSTGRES, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=message) as info:
        load(tmp_path, {block: {"type": "postgres", "config": conf}})
    assert info.value.path == f"{block}.{path}"


def test_a_password_from_the_environment_is_never_in_an_error(tmp_path: Path) -> None:
    conf = {**POSTGRES, "password": "env.PG_PASSWORD", "port": "env.PG_PORT"}
    (tmp_path / "config.json").write_text(json.dumps({"config_store": {"type": "postgres", "config": conf}}))
    with pytest.raises(ConfigError) as info:
        load_gateway_config(tmp_path, environ={"PG_PASSWORD": "hunter2-secret", "PG_PORT": "hunter2-secret"})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("block", ["config_store", "logs_store"])
def test_a_disabled_block_or_the_embedded_engine_loads_with_a_warning(tmp_path: Path, block: str) -> None:
    off = load(tmp_path, {block: {"enabled": False, "type": "postgres", "config": POSTGRES}})
    assert engine_name(off, block) == "sqlite"
    embedded = load(tmp_path, {block: {"enabled": True, "type": "sqlite", "config": {"path": "x.db"}}})
    assert engine_name(embedded, block) == "sqlite"
    assert any(w.startswith(f"{block}.config.path:") for w in embedded.warnings)  # our files live in the app dir


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


# -- shared_state: our block (Go Bifrost has none), Go's redis_config field names ------------------
def load_env(tmp_path: Path, doc: dict[str, Any], environ: dict[str, str]) -> Any:
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return load_gateway_config(tmp_path, environ=environ)


def redis_doc(**config: Any) -> dict[str, Any]:
    return {"shared_state": {"type": "redis", "config": {"addr": "127.0.0.1:6379", **config}}}


def test_shared_state_is_embedded_unless_a_block_selects_redis(tmp_path: Path) -> None:
    from runtime.stores.engines import build_shared_state
    from runtime.stores.shared_sqlite import SQLiteSharedState

    for doc in ({}, {"shared_state": {"type": "sqlite"}}, {"shared_state": {"enabled": False, "type": "redis"}}):
        config = load(tmp_path, {**doc, "providers": {}})
        assert config.shared_state is None or config.shared_state.type == "sqlite"
        assert isinstance(build_shared_state(config), SQLiteSharedState)


def test_the_redis_block_takes_go_redis_config_fields(tmp_path: Path) -> None:
    from runtime.stores.engines import build_shared_state
    from runtime.stores.shared_redis import RedisSharedState

    doc = redis_doc(
        addr="env.REDIS_ADDR",
        username="env.REDIS_USER",
        password="env.REDIS_PASSWORD",
        db=2,
        pool_size=8,
        dial_timeout="500ms",
        read_timeout="2s",
        write_timeout="4s",
        context_timeout="1m",
        key_prefix="team-a:",
        min_idle_conns=2,
        conn_max_idle_time="5m",
    )
    environ = {"REDIS_ADDR": "[::1]:6380", "REDIS_USER": "gw", "REDIS_PASSWORD": "pw-from-env"}
    config = load_env(tmp_path, doc, environ)
    r = config.shared_state.redis
    assert (r.host, r.port, r.username, r.password, r.db, r.key_prefix) == (
        "::1",
        6380,
        "gw",
        "pw-from-env",
        2,
        "team-a:",
    )
    assert (r.connect_timeout_s, r.socket_timeout_s, r.timeout_s, r.max_connections) == (0.5, 4.0, 60.0, 8)
    assert "pw-from-env" not in repr(config.shared_state)
    assert sorted(w.split(":")[0] for w in config.warnings if w.startswith("shared_state")) == [
        "shared_state.config.conn_max_idle_time",
        "shared_state.config.min_idle_conns",
    ]  # Go's idle-pool fields load, with a warning: they have no effect here
    store = build_shared_state(config)
    assert isinstance(store, RedisSharedState)
    assert (store.where, store.key_prefix) == ("::1:6380/2", "team-a:")
    assert "pw-from-env" not in repr(store)


@pytest.mark.parametrize(
    ("doc", "path", "message"),
    [
        (redis_doc(adress="x"), "shared_state.config.adress", "did you mean 'addr'"),
        ({"shared_state": {"type": "redis", "confg": {}}}, "shared_state.confg", "unknown field"),
        ({"shared_state": {"type": "memcached"}}, "shared_state.type", "unknown engine 'memcached'"),
        ({"shared_state": {"type": "redis"}}, "shared_state.config", "is required"),
        ({"shared_state": {"type": "redis", "config": {}}}, "shared_state.config.addr", "is required"),
        ({"shared_state": {"type": "sqlite", "config": {"path": "x"}}}, "shared_state.config.path", "unknown field"),
        (redis_doc(addr="localhost"), "shared_state.config.addr", "expected host:port"),
        (redis_doc(db="one"), "shared_state.config.db", "expected an integer"),
        (redis_doc(pool_size=0), "shared_state.config.pool_size", "must be 1 or more"),
        (redis_doc(context_timeout="3 sec"), "shared_state.config.context_timeout", "expected a duration"),
        (redis_doc(dial_timeout="0s"), "shared_state.config.dial_timeout", "greater than zero"),
        (redis_doc(key_prefix="a b"), "shared_state.config.key_prefix", "spaces"),
    ],
)
def test_a_bad_shared_state_block_names_the_field(tmp_path: Path, doc: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, doc)
    assert raised.value.path == path
    assert message in str(raised.value)


def test_shared_state_env_references_hide_their_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_env(tmp_path, redis_doc(password="env.REDIS_PASSWORD"), {})
    assert missing.value.path == "shared_state.config.password"
    assert "environment variable REDIS_PASSWORD is not set" in str(missing.value)
    with pytest.raises(ConfigError) as bad:
        load_env(tmp_path, redis_doc(addr="env.REDIS_ADDR"), {"REDIS_ADDR": "secret-host-without-port"})
    assert bad.value.path == "shared_state.config.addr"
    assert "env.REDIS_ADDR (value hidden)" in str(bad.value) and "secret-host" not in str(bad.value)
    with pytest.raises(ConfigError) as url:  # a URL with a password in it is refused without echoing it
        load(tmp_path, redis_doc(addr="redis://u:hunter2@db:6379"))
    assert "hunter2" not in str(url.value)
    with pytest.raises(ConfigError, match="is not read here"):  # numbers never come from the environment
        load_env(tmp_path, redis_doc(db="env.REDIS_DB"), {"REDIS_DB": "1"})


async def test_two_gateways_configured_for_redis_share_one_counter(tmp_path: Path, redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    apps = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        apps.append(create_app(load(tmp_path / name, {**redis_doc(addr=f"127.0.0.1:{port}"), "providers": {}})))
    async with TestClient(TestServer(apps[0])) as one, TestClient(TestServer(apps[1])) as two:
        assert await one.app[SHARED_STATE].incr("spend", 3) == 3
        assert await two.app[SHARED_STATE].incr("spend", 4) == 7
        assert not (tmp_path / "one" / "state.db").exists()  # nothing embedded was opened
