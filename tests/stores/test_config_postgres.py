"""The PostgreSQL config store against a real server: seeding, edits from two instances, the change feed,
secrets at rest, and a server that stops and comes back. Two store objects on one database stand for two
gateway instances."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fakes import FakeOpenAI
from harness import Gateway, StartGateway
from harness.postgres import PostgresServer
from harness.redis import RedisServer

from runtime.config.load import ConfigError, load_gateway_config
from runtime.config.model import GatewayConfig
from runtime.stores import config_postgres, engines
from runtime.stores.config import ConfigWriteError
from runtime.stores.config_postgres import ConfigStoreOpenError, PostgresConfigStore

KEY = "sk-live-provider-secret-0001"
VK = "sk-bf-shared-0001"


def _doc(server: PostgresServer, db: str, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "config_store": {"enabled": True, "type": "postgres", "config": server.settings(db)},
        "governance": {
            "rate_limits": [{"id": "r", "request_max_limit": 6, "request_reset_duration": "1m"}],
            "virtual_keys": [{"id": "vk", "name": "shared", "value": VK, "is_active": True, "rate_limit_id": "r"}],
        },
        "providers": {"openai": {"keys": [{"name": "k1", "value": KEY, "models": [], "weight": 1}]}},
    }
    doc.update(extra)
    return doc


def _config(directory: Path, doc: dict[str, Any], env: dict[str, str] | None = None) -> GatewayConfig:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(doc))
    return load_gateway_config(directory, environ=env or {})


@pytest.fixture
async def opened() -> AsyncIterator[Callable[[GatewayConfig], Any]]:
    stores: list[PostgresConfigStore] = []

    async def open_(config: GatewayConfig) -> PostgresConfigStore:
        store = await engines.open_config_store(config)
        assert isinstance(store, PostgresConfigStore)
        stores.append(store)
        return store

    yield open_
    for store in stores:
        await store.close()


async def _row(server: PostgresServer, db: str) -> asyncpg.Record:
    conn = await asyncpg.connect(server.dsn(db))
    try:
        row = await conn.fetchrow("SELECT document::text AS document, version, seed_hash FROM bifrost_config_document")
        assert row is not None
        return row
    finally:
        await conn.close()


def _models(store: PostgresConfigStore) -> list[str]:
    return list(store.current.providers["openai"].models)


# -- seeding -------------------------------------------------------------------------------------------
async def test_first_start_seeds_later_starts_keep_api_edits(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path, opened: Any
) -> None:
    doc = _doc(postgres_server, postgres_db)
    store = await opened(_config(tmp_path / "a", doc))
    assert store.version == 1 and "openai" in store.current.providers
    assert store.current.governance is not None and store.current.governance.virtual_keys[0].id == "vk"
    # The bootstrap blocks are in `raw` (from the start-up file) but never in the database.
    assert store.raw["config_store"]["type"] == "postgres"
    row = await _row(postgres_server, postgres_db)
    assert "config_store" not in json.loads(row["document"])
    assert "password" not in row["document"]

    await store.apply(lambda raw: raw["providers"]["openai"].update(models=["gpt-4o"]))
    # A restart with the same file: the database wins (the edit persists).
    again = await opened(_config(tmp_path / "b", doc))
    assert again.version == 2 and _models(again) == ["gpt-4o"]
    # An operator edits the file: the file wins, as a new version.
    edited = _doc(postgres_server, postgres_db, client={"max_request_body_size_mb": 20})
    third = await opened(_config(tmp_path / "c", edited))
    assert third.version == 3 and _models(third) == [] and third.current.client.max_request_body_size_mb == 20
    # The bootstrap blocks do not count: the same document with other pool sizes is "unchanged".
    moved = _doc(postgres_server, postgres_db, client={"max_request_body_size_mb": 20})
    moved["config_store"]["config"]["max_open_conns"] = 4
    fourth = await opened(_config(tmp_path / "d", moved))
    assert fourth.version == 3


async def test_concurrent_first_starts_seed_once(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path, opened: Any
) -> None:
    doc = _doc(postgres_server, postgres_db)
    configs = [_config(tmp_path / f"i{i}", doc) for i in range(4)]
    stores = await asyncio.gather(*(opened(c) for c in configs))
    assert {s.version for s in stores} == {1}
    migrations = postgres_server.psql("SELECT count(*) FROM bifrost_config_migrations", postgres_db)
    assert migrations == str(len(config_postgres.MIGRATIONS))
    assert postgres_server.psql("SELECT version FROM bifrost_config_document", postgres_db) == "1"


# -- editing from two instances ------------------------------------------------------------------------
async def test_an_edit_on_one_instance_reaches_the_other_feed(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path, opened: Any
) -> None:
    doc = _doc(postgres_server, postgres_db)
    a = await opened(_config(tmp_path / "a", doc))
    b = await opened(_config(tmp_path / "b", doc))
    feed = b.changes()
    first = asyncio.ensure_future(anext(feed))
    await asyncio.sleep(0.5)  # the feed is listening
    latencies = []
    try:
        for i in range(3):
            started = time.perf_counter()
            await a.apply(lambda raw, i=i: raw["providers"]["openai"].update(models=[f"m{i}"]))
            seen = await asyncio.wait_for(first if i == 0 else anext(feed), 5)
            latencies.append(time.perf_counter() - started)
            assert list(seen.providers["openai"].models) == [f"m{i}"]
            assert b.version == a.version == 2 + i
    finally:
        await feed.aclose()  # type: ignore[attr-defined]
    print(f"edit on A -> config on B: {', '.join(f'{x * 1000:.1f} ms' for x in latencies)}")
    assert b.status.state == "up"


async def test_concurrent_edits_from_two_instances_lose_nothing(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path, opened: Any
) -> None:
    doc = _doc(postgres_server, postgres_db)
    a = await opened(_config(tmp_path / "a", doc))
    b = await opened(_config(tmp_path / "b", doc))

    def add(model: str) -> Callable[[dict[str, Any]], None]:
        return lambda raw: raw["providers"]["openai"].setdefault("models", []).append(model)

    await asyncio.gather(*(store.apply(add(f"{n}{i}")) for i in range(10) for n, store in (("a", a), ("b", b))))
    final = await opened(_config(tmp_path / "c", doc))
    assert sorted(_models(final)) == sorted(f"{n}{i}" for i in range(10) for n in "ab")
    assert final.version == 21


async def test_an_invalid_edit_writes_nothing(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path, opened: Any
) -> None:
    a = await opened(_config(tmp_path / "a", _doc(postgres_server, postgres_db)))
    before = await _row(postgres_server, postgres_db)
    with pytest.raises(ConfigError, match=r"providers\.openai\.keys\[0\]\.weight"):
        await a.apply(lambda raw: raw["providers"]["openai"]["keys"][0].update(weight=-1))
    assert await _row(postgres_server, postgres_db) == before
    assert a.version == 1


async def test_an_invalid_stored_document_is_skipped_by_the_feed(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path, opened: Any, caplog: pytest.LogCaptureFixture
) -> None:
    a = await opened(_config(tmp_path / "a", _doc(postgres_server, postgres_db)))
    postgres_server.psql(
        "UPDATE bifrost_config_document SET version = 2, "
        "document = jsonb_set(document, '{providers,openai,keys,0,weight}', '-1')",
        postgres_db,
    )
    assert await a.refresh() is None and await a.refresh() is None
    assert a.version == 1 and "openai" in a.current.providers
    assert len([r for r in caplog.records if "version 2 cannot be used" in r.getMessage()]) == 1


# -- secrets at rest -----------------------------------------------------------------------------------
async def test_secrets_are_encrypted_at_rest_and_the_key_cannot_change(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path, opened: Any
) -> None:
    doc = _doc(postgres_server, postgres_db, admin={"token": "admin-token-secret-1"})
    doc["encryption_key"] = "env.BIFROST_KEY"
    env = {"BIFROST_KEY": "a long passphrase for the test"}
    a = await opened(_config(tmp_path / "a", doc, env))
    await a.apply(
        lambda raw: raw["governance"]["virtual_keys"].append({"id": "vk2", "name": "n2", "value": "sk-bf-second-0002"})
    )
    row = await _row(postgres_server, postgres_db)
    for secret in (KEY, VK, "sk-bf-second-0002", "admin-token-secret-1", env["BIFROST_KEY"]):
        assert secret not in row["document"]
    assert row["document"].count("enc:v1:") == 4
    meta = postgres_server.psql("SELECT string_agg(value, ' ') FROM bifrost_config_meta", postgres_db)
    assert env["BIFROST_KEY"] not in meta
    # Another instance with the key reads the secrets back.
    b = await opened(_config(tmp_path / "b", doc, env))
    assert b.current.providers["openai"].keys[0].value == KEY
    assert b.raw["governance"]["virtual_keys"][1]["value"] == "sk-bf-second-0002"
    # A wrong key, or none, is refused at open, naming the problem and no secret.
    with pytest.raises(ConfigStoreOpenError, match="cannot be changed") as wrong:
        await opened(_config(tmp_path / "c", doc, {"BIFROST_KEY": "another passphrase"}))
    assert not wrong.value.retryable and "another passphrase" not in str(wrong.value)
    plain = dict(doc)
    plain.pop("encryption_key")
    with pytest.raises(ConfigStoreOpenError, match="no encryption_key is configured"):
        await opened(_config(tmp_path / "d", plain))


async def test_a_key_set_later_encrypts_what_was_plain(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path, opened: Any, caplog: pytest.LogCaptureFixture
) -> None:
    doc = _doc(postgres_server, postgres_db)
    await opened(_config(tmp_path / "a", doc))
    assert any("stored as plain text" in r.getMessage() for r in caplog.records)
    assert KEY in (await _row(postgres_server, postgres_db))["document"]
    keyed = dict(doc, encryption_key="env.K")
    store = await opened(_config(tmp_path / "b", keyed, {"K": "passphrase two"}))
    row = await _row(postgres_server, postgres_db)
    assert KEY not in row["document"] and VK not in row["document"]
    assert store.current.providers["openai"].keys[0].value == KEY
    assert store.version == 2  # the API-side document kept (the file did not change), now encrypted


# -- the server going away -----------------------------------------------------------------------------
async def test_server_down_apply_fails_in_bounded_time_and_the_feed_reconnects(
    postgres_server: PostgresServer, postgres_db: str, tmp_path: Path, opened: Any
) -> None:
    doc = _doc(postgres_server, postgres_db)
    a = await opened(_config(tmp_path / "a", doc))
    b = await opened(_config(tmp_path / "b", doc))
    feed = b.changes()
    pending = asyncio.ensure_future(anext(feed))
    await asyncio.sleep(0.5)
    await asyncio.to_thread(postgres_server.stop)
    try:
        started = time.monotonic()
        with pytest.raises(ConfigWriteError) as info:
            await a.apply(lambda raw: raw["providers"]["openai"].update(models=["lost"]))
        took = time.monotonic() - started
        assert took < config_postgres.WRITE_TIMEOUT_S + 5  # bounded (generous: a noisy machine)
        assert f"127.0.0.1:{postgres_server.port}/{postgres_db}" in str(info.value)
        assert a.status.state == "down" and a.version == 1
    finally:
        await asyncio.to_thread(postgres_server.start)
    # The feed reconnects on its own; an edit made after the restart reaches it.
    deadline = time.monotonic() + 30
    while True:
        try:
            await a.apply(lambda raw: raw["providers"]["openai"].update(models=["back"]))
            break
        except ConfigWriteError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    try:
        seen = await asyncio.wait_for(pending, 20)
        assert list(seen.providers["openai"].models) == ["back"]
    finally:
        await feed.aclose()  # type: ignore[attr-defined]
    assert a.status.state == "up" and b.status.state == "up"


async def test_server_down_at_open_is_retryable_and_names_no_secret(tmp_path: Path) -> None:
    from harness.process import free_port

    settings = {"host": "127.0.0.1", "port": str(free_port()), "user": "bifrost", "password": "pg-secret-pw"}
    settings.update(db_name="bifrost", ssl_mode="disable")
    doc = {"config_store": {"enabled": True, "type": "postgres", "config": settings}}
    with pytest.raises(ConfigStoreOpenError) as info:
        await engines.open_config_store(_config(tmp_path, doc))
    assert info.value.retryable and "pg-secret-pw" not in str(info.value)
    assert f"127.0.0.1:{settings['port']}/bifrost" in str(info.value)


# -- real gateway processes on one database ----------------------------------------------------------
def _api(gateway: Gateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(gateway.url(path), data=data, method=method)
    request.add_header("content-type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _issue_example(server: PostgresServer, db: str, redis: RedisServer, fake_url: str) -> dict[str, Any]:
    """The issue's example file (two instances, same file), pointed at the test servers and the fake OpenAI,
    plus an encryption key."""
    store = {"enabled": True, "type": "postgres", "config": server.settings(db)}
    return {
        "config_store": store,
        "logs_store": store,
        "shared_state": {"type": "redis", "config": {"addr": f"127.0.0.1:{redis.port}"}},
        "governance": {
            "rate_limits": [{"id": "r", "request_max_limit": 6, "request_reset_duration": "1m"}],
            "virtual_keys": [{"id": "vk", "name": "shared", "value": VK, "is_active": True, "rate_limit_id": "r"}],
        },
        "providers": {
            "openai": {
                "keys": [{"name": "k1", "value": "env.OPENAI_API_KEY", "models": [], "weight": 1}],
                "network_config": {"base_url": fake_url, "default_request_timeout_in_seconds": 30},
            }
        },
        "encryption_key": "env.BIFROST_TEST_KEY",
    }


GATEWAY_ENV = {"OPENAI_API_KEY": "sk-fake-1", "BIFROST_TEST_KEY": "gateway test passphrase"}


def test_a_gateway_serves_the_database_document(
    postgres_server: PostgresServer,
    postgres_db: str,
    redis_server: RedisServer,
    fake_openai: FakeOpenAI,
    start_gateway: StartGateway,
    tmp_path: Path,
) -> None:
    doc = _issue_example(postgres_server, postgres_db, redis_server, fake_openai.url)
    fake_openai.keys.add("sk-literal-second-0002")  # the key the API adds below, read back decrypted
    first = start_gateway(doc, env=GATEWAY_ENV, app_dir=tmp_path / "a")
    status, created = _api(
        first,
        "POST",
        "/api/providers",
        {
            "name": "second",
            "custom_provider_config": {"base_provider_type": "openai"},
            "keys": [{"name": "k2", "value": "sk-literal-second-0002", "models": [], "weight": 1}],
            "network_config": {"base_url": fake_openai.url},
        },
    )
    assert status == 201, created
    first.stop()
    # The file is unchanged, so a new instance runs the database's document (with the API's edit).
    second = start_gateway(doc, env=GATEWAY_ENV, app_dir=tmp_path / "b")
    status, providers = _api(second, "GET", "/api/providers")
    assert status == 200 and {"openai", "second"} <= {p["name"] for p in providers["providers"]}
    client = second.client(default_headers={"x-bf-vk": VK})
    try:
        answer = client.chat.completions.create(
            model="second/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        client.close()
    assert answer.choices[0].message.content
    row = postgres_server.psql("SELECT document::text FROM bifrost_config_document", postgres_db)
    assert "sk-literal-second-0002" not in row and VK not in row and "env.OPENAI_API_KEY" in row
    assert "config_store" not in row and "encryption_key" not in row


def test_an_admin_edit_on_one_gateway_is_live_on_the_other(
    postgres_server: PostgresServer,
    postgres_db: str,
    redis_server: RedisServer,
    fake_openai: FakeOpenAI,
    start_gateway: StartGateway,
    tmp_path: Path,
) -> None:
    doc = _issue_example(postgres_server, postgres_db, redis_server, fake_openai.url)
    a = start_gateway(doc, env=GATEWAY_ENV, app_dir=tmp_path / "a")
    b = start_gateway(doc, env=GATEWAY_ENV, app_dir=tmp_path / "b", args=("--workers", "2"))
    assert _api(b, "GET", "/api/providers/third")[0] == 404
    started = time.monotonic()
    status, created = _api(
        a,
        "POST",
        "/api/providers",
        {
            "name": "third",
            "custom_provider_config": {"base_provider_type": "openai"},
            "keys": [{"name": "k3", "value": "sk-literal-third-0003", "models": [], "weight": 1}],
            "network_config": {"base_url": fake_openai.url},
        },
    )
    assert status == 201, created
    # B runs two workers: both must have it (each follows the feed); poll until a few answers in a row agree.
    hits, deadline = 0, time.monotonic() + 5
    while hits < 6:
        assert time.monotonic() < deadline, "the edit did not reach instance B in 5 s"
        hits = hits + 1 if _api(b, "GET", "/api/providers/third")[0] == 200 else 0
        time.sleep(0.01)
    print(f"admin edit on A -> live on B: {(time.monotonic() - started) * 1000:.0f} ms")
    assert "config changed in postgres" in b.output()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_postgres_down_at_start_exits_non_zero_with_the_reason(tmp_path: Path, workers: str) -> None:
    from harness.process import free_port, run_to_exit

    settings = {"host": "127.0.0.1", "port": str(free_port()), "user": "bifrost", "password": "pg-secret-pw"}
    settings.update(db_name="bifrost", ssl_mode="disable")
    doc = {"config_store": {"enabled": True, "type": "postgres", "config": settings}}
    code, out, err = run_to_exit(
        tmp_path / "app", config=doc, env={"BIFROST_STORE_RETRY_S": "1"}, args=("--workers", workers), timeout=60
    )
    assert code != 0
    assert "cannot open the config store" in err and f"127.0.0.1:{settings['port']}/bifrost" in err
    assert "attempt 1" in err
    assert "pg-secret-pw" not in out + err


def test_admin_edit_with_the_server_down_is_a_503_and_shutdown_does_not_hang(
    postgres_server: PostgresServer, postgres_db: str, start_gateway: StartGateway, tmp_path: Path
) -> None:
    doc = {"config_store": {"enabled": True, "type": "postgres", "config": postgres_server.settings(postgres_db)}}
    gateway = start_gateway(doc, app_dir=tmp_path / "a")
    postgres_server.stop()
    try:
        started = time.monotonic()
        status, body = _api(gateway, "PUT", "/api/client", {"max_request_body_size_mb": 9})
        took = time.monotonic() - started
        assert status == 503, body
        assert body["error"]["code"] == "config_write_failed"
        assert f"127.0.0.1:{postgres_server.port}/{postgres_db}" in body["error"]["message"]
        assert took < config_postgres.WRITE_TIMEOUT_S + 10
        assert _api(gateway, "GET", "/api/client")[1]["max_request_body_size_mb"] != 9  # nothing applied
        started = time.monotonic()
        assert gateway.stop(timeout=40) == 0
        print(
            f"admin edit with PostgreSQL down: 503 in {took * 1000:.0f} ms; shutdown {time.monotonic() - started:.1f} s"
        )
    finally:
        postgres_server.start()
