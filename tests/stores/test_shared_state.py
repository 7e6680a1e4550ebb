"""The shared-state store, at its interface, against every engine in ENGINES.

The cross-process tests are the `--workers 2` case: separate OS processes, each with its own event
loop and its own store instance on the same database, racing on one counter. Every engine of
SHARED_STATE_ENGINES runs every test here: "sqlite" on a file in a temp dir, "redis" on a real
redis-server (tests/stores/conftest.py), so both are held to one set of semantics.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime.stores.engines import SHARED_STATE_ENGINES, open_shared_state_engine
from runtime.stores.shared import SharedState, Subscription

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("shared_worker.py")
ENGINES = sorted(SHARED_STATE_ENGINES)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def location(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """Where the engine keeps its state: a file (sqlite) or the test session's emptied Redis (redis)."""
    if engine == "redis":
        return str(request.getfixturevalue("redis_url"))
    return tmp_path / "state.db"


@pytest.fixture
async def store(engine: str, location: Path | str) -> AsyncIterator[SharedState]:
    s = await open_shared_state_engine(engine, location)
    yield s
    await s.close()


def _spawn(engine: str, path: Path | str, go: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(WORKER), engine, str(path), str(go), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def _run_together(engine: str, path: Path | str, tmp_path: Path, jobs: list[tuple[str, ...]]) -> list[list[str]]:
    """Start one process per job, release them at once, return each one's output lines after "ready"."""
    go = tmp_path / "go"
    procs = [_spawn(engine, path, go, *job) for job in jobs]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
        go.touch()
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            outputs.append(out.split())
        return outputs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# -- the interface ---------------------------------------------------------------------------------
async def test_the_engine_implements_the_protocol(store: SharedState) -> None:
    assert isinstance(store, SharedState)


async def test_incr_returns_the_new_total_exactly(store: SharedState) -> None:
    assert await store.incr("a") == 1
    assert await store.incr("a", 41) == 42
    assert await store.total("a") == 42
    assert await store.total("never") == 0
    assert await store.incr("cost", 0.25) == 0.25
    assert await store.incr("cost", 0.5) == 0.75
    assert await store.incr("a", -2) == 40  # settlement gives back what a reservation over-took


async def test_windows_roll_over(store: SharedState) -> None:
    # A 0.5 s window; the increments land in one window when they run within it. Generous margins:
    # retry the pair if it straddled a boundary, then wait out at least one whole window.
    for _ in range(20):
        start = time.time()
        a = await store.incr("w", 1, window_s=0.5)
        b = await store.incr("w", 1, window_s=0.5)
        if int(start * 2) == int(time.time() * 2):  # both in the same window
            assert b == a + 1
            break
    else:
        pytest.fail("never managed two increments inside one 0.5 s window")
    await asyncio.sleep(0.6)
    assert await store.incr("w", 1, window_s=0.5) == 1  # a new window starts from zero
    assert await store.incr("w", 5, window_s=None) == 5  # the unwindowed counter of the same key is separate


async def test_reserve_never_goes_past_the_limit(store: SharedState) -> None:
    assert await store.reserve("r", 3, limit=10)
    assert await store.reserve("r", 7, limit=10)
    assert not await store.reserve("r", 1, limit=10)
    assert await store.total("r") == 10
    assert not await store.reserve("fresh", 11, limit=10)  # more than the limit even when empty
    assert await store.total("fresh") == 0
    assert await store.reserve("r", -4, limit=10)  # giving back always fits
    assert await store.reserve("r", 4, limit=10)
    assert not await store.reserve("r", 0.5, limit=10)


async def test_reserve_in_a_window(store: SharedState) -> None:
    assert await store.reserve("rw", 1, limit=1, window_s=3600)
    assert not await store.reserve("rw", 1, limit=1, window_s=3600)
    assert await store.reserve("rw", 1, limit=1, window_s=None)  # another window size, another counter


async def test_key_value_and_ttl(store: SharedState) -> None:
    assert await store.get("k") is None
    await store.set("k", "v1")
    assert await store.get("k") == "v1"
    await store.set("k", "v2", ttl_s=0.3)
    assert await store.get("k") == "v2"
    await asyncio.sleep(0.5)
    assert await store.get("k") is None  # expired on read, before any sweep
    assert not await store.delete("k")  # an expired key did not exist
    await store.set("k", "v3", ttl_s=60)
    await store.set("k", "v4")  # a set without ttl makes it permanent again
    assert await store.delete("k")
    assert not await store.delete("k")
    assert await store.get("k") is None
    await store.set("unicode", "prix 10 € ✓")
    assert await store.get("unicode") == "prix 10 € ✓"


async def test_publish_reaches_subscribers_of_the_channel(store: SharedState) -> None:
    sub = await store.subscribe("ch")
    other = await store.subscribe("other")
    assert isinstance(sub, Subscription)
    await store.publish("ch", "one")
    await store.publish("other", "x")
    await store.publish("ch", "two")
    got = [await asyncio.wait_for(sub.__anext__(), 10) for _ in range(2)]
    assert got == ["one", "two"]
    assert await asyncio.wait_for(other.__anext__(), 10) == "x"
    await sub.close()
    await other.close()
    with pytest.raises(StopAsyncIteration):
        await sub.__anext__()


async def test_a_subscription_sees_nothing_from_before_it(store: SharedState) -> None:
    await store.publish("late", "old")
    sub = await store.subscribe("late")
    await store.publish("late", "new")
    assert await asyncio.wait_for(sub.__anext__(), 10) == "new"
    await sub.close()


async def test_close_ends_subscriptions(engine: str, location: Path | str) -> None:
    s = await open_shared_state_engine(engine, location)
    sub = await s.subscribe("c")
    await s.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(sub.__anext__(), 10)
    await s.close()  # idempotent


async def test_the_first_use_opens_the_store(engine: str, location: Path | str) -> None:
    from runtime.stores.engines import build_shared_state_at

    s = build_shared_state_at(engine, location)
    try:
        # Several first calls at once open it once (a worker's first requests can arrive together).
        assert sorted(await asyncio.gather(*(s.incr("lazy") for _ in range(10)))) == list(range(1, 11))
    finally:
        await s.close()
    with pytest.raises(RuntimeError, match="closed"):
        await s.get("lazy")


async def test_data_survives_a_new_instance(engine: str, location: Path | str) -> None:
    first = await open_shared_state_engine(engine, location)
    await first.incr("persist", 7)
    await first.set("kp", "v", ttl_s=600)
    await first.close()
    second = await open_shared_state_engine(engine, location)
    try:
        assert await second.total("persist") == 7
        assert await second.get("kp") == "v"
    finally:
        await second.close()


# -- across processes (--workers 2) ----------------------------------------------------------------
def test_two_processes_incrementing_one_counter_lose_nothing(engine: str, location: Path | str, tmp_path: Path) -> None:
    outputs = _run_together(engine, location, tmp_path, [("incr", "shared", "2000"), ("incr", "shared", "2000")])
    last_seen = [json.loads(out[0]) for out in outputs]
    assert max(last_seen) == 4000  # whoever finished last saw the exact total
    assert all(2000 <= n <= 4000 for n in last_seen)

    async def check() -> None:
        s = await open_shared_state_engine(engine, location)
        try:
            assert await s.total("shared") == 4000
        finally:
            await s.close()

    asyncio.run(check())


def test_two_processes_reserving_never_exceed_the_limit(engine: str, location: Path | str, tmp_path: Path) -> None:
    jobs = [("reserve", "budget", "1500", "1000"), ("reserve", "budget", "1500", "1000")]
    outputs = _run_together(engine, location, tmp_path, jobs)
    granted = [json.loads(out[0]) for out in outputs]
    assert sum(granted) == 1000, granted  # exactly the limit: 3,000 attempts, 1,000 granted

    async def check() -> None:
        s = await open_shared_state_engine(engine, location)
        try:
            assert await s.total("budget") == 1000
        finally:
            await s.close()

    asyncio.run(check())


def test_publish_in_one_process_reaches_a_subscriber_in_another(
    engine: str, location: Path | str, tmp_path: Path
) -> None:
    messages = [f"m{i}" for i in range(20)]
    jobs = [("subscribe", "news", str(len(messages))), ("publish", "news", *messages)]
    outputs = _run_together(engine, location, tmp_path, jobs)
    assert [json.loads(line) for line in outputs[0]] == messages


async def test_sweep_removes_expired_rows(db_path: Path) -> None:  # the SQLite engine's own sweep
    from runtime.stores.shared_sqlite import SQLiteSharedState

    s = SQLiteSharedState(db_path, event_retention_s=0.0)
    await s.open()
    try:
        await s.set("gone", "v", ttl_s=0.05)
        await s.set("kept", "v")
        await s.incr("old", 1, window_s=0.05)
        await s.publish("c", "m")
        await asyncio.sleep(0.2)
        await s.sweep()
        import sqlite3

        db = sqlite3.connect(db_path)
        try:
            assert db.execute("SELECT key FROM kv").fetchall() == [("kept",)]
            assert db.execute("SELECT count(*) FROM counters").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM events").fetchone() == (0,)
        finally:
            db.close()
    finally:
        await s.close()


def test_the_database_file_is_private(db_path: Path) -> None:  # the SQLite engine's file
    async def go() -> None:
        s = await open_shared_state_engine("sqlite", db_path)
        await s.close()

    asyncio.run(go())
    assert db_path.stat().st_mode & 0o777 == 0o600
