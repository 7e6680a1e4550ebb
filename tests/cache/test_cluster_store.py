"""runtime/cache/cluster_store.py: the cluster cache engine on a real Redis and a real PostgreSQL.

Two ClusterCacheStore objects on one Redis and one database are two gateway instances: what one stores,
deletes or clears, the other sees (exact entries at once through Redis, semantic ones and deletes through
LISTEN/NOTIFY). Waits are polls with generous bounds (a noisy machine); the measured delays are printed
(`pytest -s`) for the report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from harness.postgres import PostgresServer
from harness.redis import RedisServer, start_redis

from runtime.cache.cluster_store import ClusterCacheStore
from runtime.cache.store import CacheEntry
from runtime.config.model import PostgresSettings, RedisSettings

T = TypeVar("T")
DIM = 4
BOUND_S = 5.0  # "within about a second" is asserted as "within 5 s" (see tests' common rules)


def entry(n: int, *, vector: list[float] | None = None, ttl: float = 3600.0, **kw: Any) -> CacheEntry:
    now = time.time()
    fields: dict[str, Any] = {
        "id": f"req-{n}",
        "request_hash": f"h{n}",
        "params_hash": "p",
        "cache_key": "k",
        "virtual_key_id": None,
        "endpoint": "chat",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "created_at": now,
        "expires_at": now + ttl,
        "response": {"object": "chat.completion", "choices": [{"message": {"content": f"answer {n}"}}]},
        "prompt_text": f"question number {n}",
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "cost": 0.001,
        "embedding": vector,
    }
    fields.update(kw)
    return CacheEntry(**fields)


def axis(i: int, wobble: float = 0.0) -> list[float]:
    v = [0.0] * DIM
    v[i] = 1.0
    v[(i + 1) % DIM] = wobble
    return v


async def until(check: Callable[[], Awaitable[T]], bound: float = BOUND_S) -> tuple[T, float]:
    """Poll `check` until it returns something truthy; (it, seconds taken). Fails after `bound`."""
    started = time.monotonic()
    while True:
        value = await check()
        elapsed = time.monotonic() - started
        if value:
            return value, elapsed
        if elapsed > bound:
            raise AssertionError(f"not reached within {bound} s (last: {value!r})")
        await asyncio.sleep(0.02)


def pg_settings(server: PostgresServer, database: str) -> PostgresSettings:
    return PostgresSettings(host="127.0.0.1", port=server.port, user="bifrost", database=database)


def redis_settings(port: int, timeout_s: float = 1.0) -> RedisSettings:
    return RedisSettings(host="127.0.0.1", port=port, key_prefix="t:", timeout_s=timeout_s, connect_timeout_s=1.0)


Make = Callable[..., Awaitable[ClusterCacheStore]]


@pytest.fixture
async def make(
    postgres_server: PostgresServer, postgres_db: str, redis_server: RedisServer, redis_url: str
) -> AsyncIterator[Make]:
    """make(**store kwargs) -> an opened store (an "instance") on the test's database and Redis."""
    opened: list[ClusterCacheStore] = []

    async def build(redis_port: int | None = None, **kw: Any) -> ClusterCacheStore:
        params: dict[str, Any] = {"max_entries": 1000, "max_bytes": 10_000_000, "dimension": DIM}
        params.update(kw)
        store = ClusterCacheStore(
            pg_settings(postgres_server, postgres_db), redis_settings(redis_port or redis_server.port), **params
        )
        opened.append(store)
        await store.open()
        return store

    yield build
    for store in opened:
        await store.close()


async def sql(server: PostgresServer, database: str, query: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(server.dsn(database))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def test_exact_put_on_a_is_a_hit_on_b(make: Make, redis_server: RedisServer) -> None:
    a, b = await make(dimension=None), await make(dimension=None)
    a.put(entry(1))
    found, took = await until(lambda: b.get("h1", time.time()))
    print(f"\nexact: stored on A, a hit on B after {took * 1000:.0f} ms")
    assert found.id == "req-1" and found.response["choices"][0]["message"]["content"] == "answer 1"
    assert found.cost == 0.001 and found.prompt_tokens == 5
    assert "h1" in b._recent  # remembered: the next lookup is memory only
    assert redis_server.keys("t:cache:*") == ["t:cache:h1"]
    ttl_ms = int(redis_server.command("PTTL", "t:cache:h1").decode().strip().lstrip(":"))
    assert 3_500_000 < ttl_ms <= 3_600_000  # the entry's TTL as PX


async def test_semantic_put_on_a_is_nearest_on_b_and_loaded_by_a_new_instance(make: Make) -> None:
    a, b = await make(), await make()
    await a.ready()
    await b.ready()
    assert await b.nearest("p", axis(0), 0.9, time.time()) is None
    a.put(entry(1, vector=axis(0)))
    (found, similarity), took = await until(lambda: b.nearest("p", axis(0, 0.05), 0.9, time.time()))
    print(f"\nsemantic: stored on A, nearest on B after {took * 1000:.0f} ms")
    assert found.id == "req-1" and similarity > 0.99
    assert await b.nearest("other-params", axis(0), 0.9, time.time()) is None
    assert await b.nearest("p", axis(2), 0.9, time.time()) is None
    c = await make()  # a third instance, started later: loads the table at open
    await asyncio.wait_for(c.ready(), BOUND_S)
    hit = await c.nearest("p", axis(0), 0.9, time.time())
    assert hit is not None and hit[0].id == "req-1"


async def test_delete_clear_on_a_reach_b_memory_redis_and_postgres(
    make: Make, postgres_server: PostgresServer, postgres_db: str, redis_server: RedisServer
) -> None:
    a, b = await make(), await make()
    await a.ready()
    await b.ready()
    a.put(entry(1, vector=axis(0)))
    a.put(entry(2, vector=axis(1), cache_key="other"))
    a.put(entry(3))
    a.put(entry(4, vector=axis(2)))
    await until(lambda: b.nearest("p", axis(2), 0.9, time.time()))
    for h in ("h1", "h2", "h3"):  # B now holds them in memory
        await until(lambda h=h: b.get(h, time.time()))  # type: ignore[misc]
    assert "h3" in b._recent

    started = time.monotonic()
    assert await a.delete("req-3") is True
    await until(lambda: _gone(b, "h3"))
    print(f"\ndelete on A: out of B's memory {(time.monotonic() - started) * 1000:.0f} ms after it began")
    assert await b.get("h3", time.time()) is None  # not in Redis either
    assert await sql(postgres_server, postgres_db, "SELECT 1 FROM bifrost_cache_entries WHERE id = 'req-3'") == []
    assert await a.delete("req-3") is False

    assert await a.delete_by_cache_key("other") == 1
    await until(lambda: _none(b.nearest("p", axis(1), 0.9, time.time())))
    assert await b.get("h2", time.time()) is None
    assert "t:cache:h2" not in redis_server.keys("t:cache:*")

    assert await a.find("req-1") is not None
    assert await a.clear() >= 2
    await until(lambda: _none(b.nearest("p", axis(0), 0.9, time.time())))
    await until(lambda: _none(b.nearest("p", axis(2), 0.9, time.time())))
    assert await b.get("h1", time.time()) is None and await b.get("h4", time.time()) is None
    assert not b._recent and not b._sem
    assert redis_server.keys("t:cache:*") == []
    assert await sql(postgres_server, postgres_db, "SELECT 1 FROM bifrost_cache_entries") == []
    assert await a.find("req-1") is None


async def _gone(store: ClusterCacheStore, request_hash: str) -> bool:
    return request_hash not in store._recent and request_hash not in store._sem


async def _none(value: Awaitable[Any]) -> bool:
    return (await value) is None


async def test_list_find_and_stats_see_every_instance(make: Make) -> None:
    a, b = await make(dimension=None), await make(dimension=None)
    a.put(entry(1, prompt_text="what is the capital of France", created_at=time.time() - 5))
    b.put(entry(2, prompt_text="100% of the wobble_value", model="claude-x"))
    (listed, total), _ = await until(lambda: _listed(a, None))
    assert total == 2 and [e.id for e in listed] == ["req-2", "req-1"]  # newest first
    assert (await b.list("FRANCE", 10, 0))[1] == 1
    assert [e.id for e in (await a.list("100%", 10, 0))[0]] == ["req-2"]  # % and _ are literal
    assert (await a.list("100_", 10, 0))[1] == 0
    assert [e.id for e in (await a.list(None, 1, 1))[0]] == ["req-1"]
    found = await a.find("req-2")
    assert found is not None and found.model == "claude-x" and found.response["object"] == "chat.completion"
    stats, took = await until(lambda: _stats(b, 2))
    print(f"\nstats on B count both instances' entries after {took * 1000:.0f} ms")
    assert stats.bytes > 0 and stats.write_errors == 0


async def _listed(store: ClusterCacheStore, search: str | None) -> tuple[list[CacheEntry], int] | None:
    listed = await store.list(search, 10, 0)
    return listed if listed[1] == 2 else None


async def _stats(store: ClusterCacheStore, entries: int) -> Any:
    stats = store.stats()
    return stats if stats.entries == entries else None


async def test_hits_are_counted_in_postgres(make: Make, postgres_server: PostgresServer, postgres_db: str) -> None:
    a, b = await make(dimension=None), await make(dimension=None)
    e = entry(1)
    a.put(e)
    found, _ = await until(lambda: b.get("h1", time.time()))
    b.touch(found, time.time())
    a.touch(e, time.time())
    rows, _ = await until(
        lambda: sql(postgres_server, postgres_db, "SELECT hits FROM bifrost_cache_entries WHERE hits = 2")
    )
    assert rows[0]["hits"] == 2  # both instances' hits add up


async def test_ttl_and_caps_are_swept_cluster_wide(
    make: Make, postgres_server: PostgresServer, postgres_db: str, redis_server: RedisServer
) -> None:
    a, b = await make(max_entries=3), await make(max_entries=3)
    await a.ready()
    await b.ready()
    a.put(entry(0, vector=axis(3), ttl=0.5))
    await until(lambda: b.nearest("p", axis(3), 0.9, time.time()))
    await asyncio.sleep(0.6)  # the short entry expires
    assert await b.nearest("p", axis(3), 0.9, time.time()) is None  # never served at or after expiry
    assert await b.get("h0", time.time()) is None
    for n in range(1, 6):
        a.put(entry(n, vector=axis(0, n / 100), created_at=time.time() + n))
    await until(lambda: _count(postgres_server, postgres_db, 6))  # every row written
    deleted = await a.sweep(time.time())
    assert deleted == 1 + 2  # the expired row, then the 2 least recently used past max_entries=3
    rows = await sql(postgres_server, postgres_db, "SELECT id FROM bifrost_cache_entries ORDER BY id")
    assert [r["id"] for r in rows] == ["req-3", "req-4", "req-5"]
    assert a.evicted == 2
    await until(lambda: _gone(b, "h1"))  # the eviction reached B's memory
    assert "h2" not in b._sem and "h3" in b._sem
    assert sorted(redis_server.keys("t:cache:*")) == ["t:cache:h3", "t:cache:h4", "t:cache:h5"]
    assert await b.sweep(time.time()) == 0  # nothing left to do


async def _count(server: PostgresServer, database: str, n: int) -> bool:
    return len(await sql(server, database, "SELECT 1 FROM bifrost_cache_entries")) == n


async def test_one_sweeper_at_a_time(make: Make, postgres_server: PostgresServer, postgres_db: str) -> None:
    a, b = await make(max_entries=1, dimension=None), await make(max_entries=1, dimension=None)
    for n in range(1, 4):
        a.put(entry(n, created_at=time.time() + n))
    await until(lambda: _count(postgres_server, postgres_db, 3))
    conn = await asyncpg.connect(postgres_server.dsn(postgres_db))
    try:
        async with conn.transaction():  # another instance mid-sweep holds the lock
            await conn.execute("SELECT pg_advisory_xact_lock($1)", 0x6266_6361_6368_6502)
            assert await b.sweep(time.time()) == 0
        assert await b.sweep(time.time()) == 2
    finally:
        await conn.close()


async def test_redis_down_lookups_miss_in_bounded_time_and_writes_are_counted(
    make: Make, tmp_path: Path, redis_server: RedisServer
) -> None:
    own = start_redis(tmp_path / "redis")
    try:
        a = await make(redis_port=own.port, dimension=None, retry_window_s=0.3)
        a.put(entry(1))
        await until(lambda: _redis_has(own, "t:cache:h1"))
        own.stop()
        a._recent.clear()  # forget it: the lookup must go to Redis
        started = time.monotonic()
        assert await a.get("h1", time.time()) is None
        first = time.monotonic() - started
        started = time.monotonic()
        assert await a.get("h1", time.time()) is None
        second = time.monotonic() - started
        print(f"\nRedis stopped: a lookup missed in {first * 1000:.1f} ms, the next in {second * 1000:.2f} ms")
        assert first < 1.0 + 2.0  # bounded by the Redis timeout (1 s here), with room for a slow machine
        assert a.status.state == "down" and "redis 127.0.0.1" in (a.status.error or "")
        a.put(entry(2))
        await until(lambda: _write_errors(a))
        assert a.status.view()["state"] == "down"
    finally:
        own.stop()


async def _redis_has(server: RedisServer, key: str) -> bool:
    return key in server.keys("t:cache:*")


async def _write_errors(store: ClusterCacheStore) -> bool:
    return store.stats().write_errors > 0


async def test_redis_blackhole_lookup_is_bounded(make: Make, tmp_path: Path) -> None:
    """A Redis that accepts connections but never answers (SIGSTOP): the lookup still ends, as a miss."""
    import os
    import signal

    own = start_redis(tmp_path / "redis")
    try:
        a = await make(redis_port=own.port, dimension=None)
        os.kill(own.proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        assert await a.get("h9", time.time()) is None
        took = time.monotonic() - started
        print(f"\nRedis frozen: the lookup missed after {took * 1000:.0f} ms (timeout 1 s)")
        assert took < 1.0 + 2.0
        os.kill(own.proc.pid, signal.SIGCONT)
    finally:
        own.stop()


async def test_postgres_down_semantic_from_memory_then_restart_catches_up(
    make: Make, postgres_server: PostgresServer, postgres_db: str
) -> None:
    a, b = await make(), await make()
    counted = await make(dimension=None, retry_window_s=0.3)
    await a.ready()
    await b.ready()
    a.put(entry(1, vector=axis(0)))
    a.put(entry(2, vector=axis(1)))
    await until(lambda: b.nearest("p", axis(1), 0.9, time.time()))
    await asyncio.to_thread(postgres_server.stop)
    try:
        found = await b.nearest("p", axis(0, 0.01), 0.9, time.time())  # served from memory
        assert found is not None and found[0].id == "req-1"
        assert await b.get("h1", time.time()) is not None  # exact: memory / Redis, no PostgreSQL
        a.put(entry(3, vector=axis(2)))  # queued and retried: it is written once the server is back
        counted.put(entry(9))  # a short retry window: dropped and counted
        await until(lambda: _write_errors(counted))
        await until(lambda: _down(b))
        started = time.monotonic()
        with pytest.raises(Exception, match=r"postgres 127\.0\.0\.1"):
            await b.list(None, 10, 0)
        assert time.monotonic() - started < 10
        assert (await b.find("req-1")) is not None  # from memory while the server is away
    finally:
        await asyncio.to_thread(postgres_server.start)
    (hit, _), took = await until(lambda: b.nearest("p", axis(2), 0.9, time.time()), bound=15)
    print(f"\nPostgreSQL restarted: B has A's entry stored meanwhile after {took:.1f} s")
    assert hit.id == "req-3"
    # B missed nothing: a delete on A after the restart still reaches it
    assert await a.delete("req-1") is True
    await until(lambda: _gone(b, "h1"))
    await until(lambda: _up(b))


async def _down(store: ClusterCacheStore) -> bool:
    return store.status.state == "down"


async def _up(store: ClusterCacheStore) -> bool:
    return store.status.state == "up"


async def test_catch_up_after_a_lost_listening_connection(
    make: Make, postgres_server: PostgresServer, postgres_db: str
) -> None:
    """B's LISTEN connection is killed; what A writes and deletes meanwhile reaches B on reconnection."""
    a, b = await make(), await make(reconnect_s=2.0)  # B stays away while A writes
    await a.ready()
    await b.ready()
    a.put(entry(1, vector=axis(0)))
    await until(lambda: b.nearest("p", axis(0), 0.9, time.time()))
    assert b._listener is not None and b.catch_ups == 0
    pid = b._listener.get_server_pid()
    await sql(postgres_server, postgres_db, "SELECT pg_terminate_backend($1)", pid)
    await a.delete("req-1")
    a.put(entry(2, vector=axis(1)))
    await until(lambda: b.nearest("p", axis(1), 0.9, time.time()))
    await until(lambda: _gone(b, "h1"))
    assert b.catch_ups >= 1


async def test_unreachable_postgres_at_open_is_not_an_error(redis_server: RedisServer, redis_url: str) -> None:
    from harness.process import free_port

    store = ClusterCacheStore(
        PostgresSettings(host="127.0.0.1", port=free_port(), user="bifrost", database="nope", password="s3cret-pw"),
        redis_settings(redis_server.port),
        max_entries=10,
        max_bytes=1_000_000,
        dimension=DIM,
    )
    try:
        started = time.monotonic()
        await store.open()
        assert time.monotonic() - started < 15
        assert store.status.state == "down" and "s3cret" not in str(store.status.view())
        assert await store.nearest("p", axis(0), 0.9, time.time()) is None
        store.put(entry(1, vector=axis(0)))
        hit, _ = await until(lambda: store.get("h1", time.time()))  # exact works without PostgreSQL
        assert hit.id == "req-1"
    finally:
        await store.close()


def test_build_cache_picks_the_cluster_store_only_with_redis_and_postgres(tmp_path: Path) -> None:
    from runtime.cache.sqlite_store import SqliteCacheStore
    from runtime.config.model import GatewayConfig, SharedStateConfig, StoresConfig
    from runtime.plugins.registry import build_cache

    pg = PostgresSettings(host="127.0.0.1", port=5432, database="bifrost")
    redis = SharedStateConfig(type="redis", redis=redis_settings(6379))
    cache = {"dimension": 1, "ttl": 60}
    cluster = GatewayConfig(app_dir=tmp_path, shared_state=redis, stores=StoresConfig(config=pg))
    store = build_cache(cache, cluster).store
    assert isinstance(store, ClusterCacheStore) and store.dimension is None
    assert store.status.view()["engine"] == "postgres+redis" and store.status.state == "standby"
    for config in (
        GatewayConfig(app_dir=tmp_path, shared_state=redis),  # no PostgreSQL config store
        GatewayConfig(app_dir=tmp_path, stores=StoresConfig(config=pg)),  # no Redis shared state
        GatewayConfig(app_dir=tmp_path, shared_state=SharedStateConfig(type="sqlite"), stores=StoresConfig(config=pg)),
    ):
        assert isinstance(build_cache(cache, config).store, SqliteCacheStore)


async def test_text_postgres_cannot_hold_is_stored_repaired(make: Make) -> None:
    """A NUL character or a lone surrogate in a prompt, key or model (client input) must not fail the
    batch it is written in (PostgreSQL TEXT refuses both): stored with U+FFFD instead."""
    a = await make(dimension=None)
    a.put(entry(1, prompt_text="nul \x00 and \ud800 here", cache_key="key\x00", model="m\udfff"))
    a.put(entry(2, response={"content": "nul \x00 in the answer"}))
    (listed, total), _ = await until(lambda: _listed(a, None))
    assert total == 2 and a.stats().write_errors == 0
    stored = {e.id: e for e in listed}
    assert stored["req-1"].prompt_text == "nul \ufffd and \ufffd here"
    assert stored["req-2"].response == {"content": "nul \x00 in the answer"}  # JSON escapes it: kept exactly
    assert (await a.list("nul \x00", 10, 0))[1] == 1
    assert await a.delete_by_cache_key("key\x00") == 1


async def test_instances_starting_together_migrate_once(
    make: Make, postgres_server: PostgresServer, postgres_db: str
) -> None:
    from runtime.stores.status import Monitored

    stores = await asyncio.gather(*(make(dimension=None) for _ in range(3)))
    rows = await sql(postgres_server, postgres_db, "SELECT version, name FROM bifrost_cache_migrations")
    assert [(r["version"], r["name"]) for r in rows] == [(1, "m001_entries")]
    offered = await sql(postgres_server, postgres_db, "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    for store in stores:
        assert isinstance(store, Monitored) and store.status.state == "up"
        assert store.pgvector_available is bool(offered)  # detected; the server-side search is not built


async def test_a_row_postgres_refuses_costs_only_itself(
    make: Make, postgres_server: PostgresServer, postgres_db: str
) -> None:
    """Values no store can hold never reach a batch (put refuses them, never raises); and should
    PostgreSQL still refuse one row for its data, the rows batched with it are written alone."""
    from runtime.cache.cluster_store import _row

    a = await make(dimension=None)
    a.put(entry(1, cost=10**400))  # not a float8, not JSON: not stored, not raised into the request
    assert await a.get("h1", time.time()) is None
    a.put(entry(2, prompt_tokens=2**40))  # clamped to PostgreSQL's INTEGER
    bad = list(_row(entry(3), "{}", None))
    bad[12] = "not a number"  # prompt_tokens: refused by the driver
    a._pg_ops.append(tuple(bad))
    a.put(entry(4))
    await until(lambda: _write_errors(a))
    await until(lambda: _count(postgres_server, postgres_db, 2))
    rows = await sql(postgres_server, postgres_db, "SELECT id, prompt_tokens FROM bifrost_cache_entries ORDER BY id")
    assert [(r["id"], r["prompt_tokens"]) for r in rows] == [("req-2", 2**31 - 1), ("req-4", 5)]
    assert a.stats().write_errors == 1
