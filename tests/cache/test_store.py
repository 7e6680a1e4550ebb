"""runtime/cache/sqlite_store.py: the embedded cache engine, on a real SQLite file in tmp_path."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.cache.sqlite_store import SqliteCacheStore
from runtime.cache.store import CacheEntry

T0 = 1_700_000_000.0


def entry(n: int, **kw: Any) -> CacheEntry:
    fields: dict[str, Any] = {
        "id": f"req-{n}",
        "request_hash": f"h{n}",
        "params_hash": "p",
        "cache_key": "k",
        "virtual_key_id": None,
        "endpoint": "chat",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "created_at": T0 + n,
        "expires_at": T0 + 3600,
        "response": {"object": "chat.completion", "choices": [{"message": {"content": f"answer {n}"}}]},
        "prompt_text": f"question number {n}",
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "cost": 0.001,
    }
    fields.update(kw)
    return CacheEntry(**fields)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "app" / "cache.db"


@pytest.fixture
async def make(db: Path) -> AsyncIterator[Callable[..., Any]]:
    """Open stores on `db` (defaults: roomy caps, exact mode); every store is closed at the end."""
    stores: list[SqliteCacheStore] = []

    async def open_store(path: Path | None = None, **kw: Any) -> SqliteCacheStore:
        args: dict[str, Any] = {"max_entries": 1000, "max_bytes": 10_000_000, "dimension": None, "clock": lambda: T0}
        args.update(kw)
        store = SqliteCacheStore(path or db, **args)
        await store.open()
        stores.append(store)
        return store

    yield open_store
    for store in stores:
        await store.close()


def rows(db: Path, sql: str = "SELECT request_hash FROM cache_entries ORDER BY request_hash") -> list[Any]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute(sql)]
    finally:
        conn.close()


async def test_put_get_and_replace(make: Callable[..., Any]) -> None:
    store = await make()
    assert await store.get("h1", T0) is None
    e1 = entry(1)
    store.put(e1)
    assert await store.get("h1", T0) is e1  # visible at once, before any write
    assert e1.size > 0
    replacement = entry(1, id="req-1b", response={"answer": "new"})
    store.put(replacement)
    assert await store.get("h1", T0) is replacement
    assert await store.find("req-1") is None and await store.find("req-1b") is replacement
    assert store.stats().entries == 1 and store.stats().bytes == replacement.size


async def test_ttl_expiry_on_get_and_by_sweep(make: Callable[..., Any], db: Path) -> None:
    store = await make()
    store.put(entry(1, expires_at=T0 + 10))
    store.put(entry(2, expires_at=T0 + 20))
    store.put(entry(3, expires_at=T0 + 1000))
    assert await store.get("h1", T0 + 9.9) is not None
    assert await store.get("h1", T0 + 10) is None  # never served at or after expires_at
    assert store.stats().expired == 1
    assert store.sweep(T0 + 25) == 1  # h2
    assert await store.get("h3", T0 + 25) is not None
    st = store.stats()
    assert (st.entries, st.expired, st.evicted) == (1, 2, 0)
    await store.close()
    assert rows(db) == ["h3"]  # the sweep's delete reached the file too


async def test_lru_eviction_by_entries_counts_hits(make: Callable[..., Any], db: Path) -> None:
    store = await make(max_entries=3)
    for n in (1, 2, 3):
        store.put(entry(n))
    e1 = await store.get("h1", T0)
    store.touch(e1, T0 + 5)  # h1 is now the most recently used: h2 goes first
    store.put(entry(4))
    assert await store.get("h2", T0) is None
    assert [await store.get(h, T0) is not None for h in ("h1", "h3", "h4")] == [True, True, True]
    assert store.stats().evicted == 1 and store.stats().entries == 3
    assert (e1.hits, e1.last_hit_at) == (1, T0 + 5)
    await store.close()
    assert rows(db) == ["h1", "h3", "h4"]
    assert rows(db, "SELECT hits FROM cache_entries WHERE request_hash = 'h1'") == [1]


async def test_lru_eviction_by_bytes_and_oversized_entry(make: Callable[..., Any], tmp_path: Path) -> None:
    probe = entry(1)
    (await make(path=tmp_path / "probe.db")).put(probe)
    cap = probe.size * 3 + probe.size // 2  # room for three entries of this size, not four
    store = await make(max_bytes=cap)
    for n in (1, 2, 3, 4):
        store.put(entry(n))
    assert store.stats().bytes <= cap and store.stats().entries == 3
    assert await store.get("h1", T0) is None and await store.get("h4", T0) is not None
    assert store.stats().evicted == 1
    store.put(entry(9, prompt_text="x" * cap))  # alone bigger than the cap: not stored, nothing evicted
    assert await store.get("h9", T0) is None and store.stats().entries == 3


async def test_delete_by_id_by_key_and_clear_reach_the_file(make: Callable[..., Any], db: Path) -> None:
    store = await make()
    store.put(entry(1, cache_key="a"))
    store.put(entry(2, cache_key="a"))
    store.put(entry(3, cache_key="b"))
    store.put(entry(4, cache_key="b"))
    assert await store.delete("req-1") is True
    assert await store.delete("req-1") is False
    assert await store.delete_by_cache_key("a") == 1
    assert await store.get("h2", T0) is None and await store.get("h3", T0) is not None
    await store.close()
    assert rows(db) == ["h3", "h4"]
    again = await make()
    assert await again.clear() == 2
    assert again.stats().entries == 0
    await again.close()
    assert rows(db) == []


async def test_list_newest_first_search_and_paging(make: Callable[..., Any]) -> None:
    store = await make()
    for n in range(1, 21):
        store.put(entry(n, model="gpt-4o" if n % 2 else "claude-3", cache_key=f"key-{n}"))
    page, total = await store.list(None, 5, 0)
    assert total == 20 and [e.id for e in page] == ["req-20", "req-19", "req-18", "req-17", "req-16"]
    page, total = await store.list(None, 5, 18)
    assert [e.id for e in page] == ["req-2", "req-1"]
    page, total = await store.list("CLAUDE", 100, 0)  # model, case-insensitive
    assert total == 10 and all(e.model == "claude-3" for e in page)
    page, total = await store.list("Question Number 1", 100, 0)  # prompt text: 1, 10..19
    assert total == 11
    page, total = await store.list("key-7", 100, 0)  # cache key
    assert [e.id for e in page] == ["req-7"]
    page, total = await store.list("req-12", 100, 0)  # id
    assert [e.id for e in page] == ["req-12"]
    page, total = await store.list(None, 10_000, -5)  # bounded limit, offset floored at 0
    assert len(page) == 20 and total == 20


def vec(*xs: float) -> list[float]:
    return [*xs, *([0.0] * (8 - len(xs)))]


async def test_nearest_threshold_params_filter_and_expiry(make: Callable[..., Any]) -> None:
    store = await make(dimension=8)
    await store.ready()
    store.put(entry(1, params_hash="p1", embedding=vec(1, 0)))
    store.put(entry(2, params_hash="p1", embedding=vec(0, 1)))
    store.put(entry(3, params_hash="p2", embedding=vec(1, 0.05)))
    store.put(entry(4, params_hash="p1", embedding=vec(1, 0.3), expires_at=T0 + 5))
    found = await store.nearest("p1", vec(1, 0.02), 0.9, T0)
    assert found is not None and found[0].id == "req-1" and found[1] == pytest.approx(1.0, abs=2e-3)
    assert (await store.nearest("p2", vec(1, 0), 0.9, T0))[0].id == "req-3"  # type: ignore[index]
    assert await store.nearest("p3", vec(1, 0), 0.1, T0) is None  # other parameters: never
    assert await store.nearest("p1", vec(1, 0), float("nan"), T0) is None  # no threshold: no match
    assert await store.nearest("p1", vec(1, -1), 0.9, T0) is None  # best is req-1 at 0.707 < threshold
    found = await store.nearest("p1", vec(1, -1), 0.7, T0)
    assert found is not None and found[0].id == "req-1" and found[1] == pytest.approx(0.7071, abs=3e-3)
    found = await store.nearest("p1", vec(1, 0.3), 0.5, T0)
    assert found is not None and found[0].id == "req-4"
    found = await store.nearest("p1", vec(1, 0.3), 0.5, T0 + 5)  # expired: the next best, and dropped
    assert found is not None and found[0].id == "req-1"
    assert await store.get("h4", T0) is None
    await store.delete("req-1")
    found = await store.nearest("p1", vec(1, 0.02), 0.9, T0)
    assert found is None
    assert store.stats().entries == 2


async def test_restart_serves_stored_entries(make: Callable[..., Any], db: Path) -> None:
    store = await make(dimension=8)
    await store.ready()
    store.put(entry(1, params_hash="p1", embedding=vec(1, 0), cost=0.25, upstream_ms=812.5))
    store.put(entry(2, params_hash="p1", embedding=vec(0, 1)))
    store.put(entry(3, expires_at=T0 - 1))  # already expired: not loaded
    await store.close()

    again = await make(dimension=8)
    got = await again.get("h1", T0)
    assert got is not None and got.response == entry(1).response and got.cost == 0.25 and got.upstream_ms == 812.5
    assert got.prompt_text == "question number 1" and got.size > 0
    assert await again.get("h3", T0) is None
    await again.ready()  # the index is built in the background
    found = await again.nearest("p1", vec(0.1, 1), 0.9, T0)
    assert found is not None and found[0].id == "req-2"
    exact_only = await make(dimension=None, path=db.parent / "cache.db")  # same file, exact mode
    assert await exact_only.get("h2", T0) is not None


async def test_close_flushes_queued_writes(make: Callable[..., Any], db: Path) -> None:
    store = await make()
    for n in range(50):
        store.put(entry(n))
    await store.close()  # at once: nothing was written by the background flush yet
    assert len(rows(db)) == 50


async def test_shared_file_read_through_poll_and_tombstones(make: Callable[..., Any]) -> None:
    a = await make(shared_file=True, dimension=8)
    b = await make(shared_file=True, dimension=8)
    await a.ready()
    await b.ready()
    a.put(entry(1, params_hash="p1", embedding=vec(1, 0)))
    await a.close()  # written (close flushes); a second worker's file view
    a = await make(shared_file=True, dimension=8)
    got = await b.get("h1", T0)  # not in b's memory: read from the file
    assert got is not None and got.id == "req-1"
    assert await b.get("h1", T0) is got  # now from memory
    assert await b.get("nope", T0) is None

    a.put(entry(2, params_hash="p1", embedding=vec(0, 1)))
    await a._flush()
    assert await b.nearest("p1", vec(0, 1), 0.9, T0) is None  # b has not polled yet
    await b.poll()
    found = await b.nearest("p1", vec(0, 1), 0.9, T0)
    assert found is not None and found[0].id == "req-2"

    assert await a.delete("req-2") is True
    await a._flush()
    await b.poll()  # a's tombstone removes it from b's memory too
    assert await b.nearest("p1", vec(0, 1), 0.9, T0) is None and await b.find("req-2") is None
    await a.clear()
    await a._flush()
    await b.poll()
    assert b.stats().entries == 0


async def test_write_errors_are_counted_not_raised(make: Callable[..., Any], db: Path) -> None:
    store = await make(busy_timeout_ms=50)
    locker = sqlite3.connect(db, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        store.put(entry(1))
        await store._flush()
        assert store.stats().write_errors == 1
        assert await store.get("h1", T0) is not None  # still served from memory
        locker.execute("ROLLBACK")
    finally:
        locker.close()
    store.put(entry(2))
    await store.close()
    assert rows(db) == ["h2"]
    assert store.stats().write_errors == 1


async def test_queue_full_drops_and_counts(make: Callable[..., Any]) -> None:
    store = await make(queue_capacity=3)
    for n in range(5):
        store.put(entry(n))
    assert store.stats().write_errors == 2 and store.stats().entries == 5
    assert await store.delete("req-0")  # admin deletes are always queued


async def test_background_writer_persists_without_close(make: Callable[..., Any], db: Path) -> None:
    store = await make()
    store.put(entry(1))
    for _ in range(100):
        if rows(db):
            break
        await asyncio.sleep(0.05)
    assert rows(db) == ["h1"]


async def test_open_fails_cleanly_on_a_file_that_is_not_a_database(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database, " * 100)
    store = SqliteCacheStore(db, max_entries=10, max_bytes=10_000, dimension=None)
    with pytest.raises(sqlite3.DatabaseError):
        await store.open()
    await store.close()  # again: harmless


async def test_files_are_private(make: Callable[..., Any], db: Path) -> None:
    store = await make()
    store.put(entry(1))
    await store._flush()
    assert db.stat().st_mode & 0o777 == 0o600
    assert db.parent.stat().st_mode & 0o777 == 0o700


async def test_damaged_rows_are_skipped_at_open(make: Callable[..., Any], db: Path) -> None:
    store = await make()
    store.put(entry(1))
    store.put(entry(2))
    await store.close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE cache_entries SET response = 'not json {' WHERE request_hash = 'h1'")
    conn.close()
    again = await make()
    assert await again.get("h1", T0) is None and await again.get("h2", T0) is not None


async def test_unusable_embedding_is_stored_for_exact_lookups_only(make: Callable[..., Any]) -> None:
    store = await make(dimension=8)
    await store.ready()
    e = entry(1, embedding=[1.0, 2.0])  # wrong dimension
    store.put(e)
    assert e.embedding is None and await store.get("h1", T0) is e
    assert await store.nearest("p", vec(1, 2), 0.0, T0) is None
    store.put(entry(2, embedding=vec(float("nan"), 1)))
    assert await store.get("h2", T0) is not None and await store.nearest("p", vec(0, 1), 0.0, T0) is None


def test_exact_mode_loads_neither_numpy_nor_usearch(tmp_path: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from runtime.cache.sqlite_store import SqliteCacheStore\n"
        "async def main():\n"
        f"    s = SqliteCacheStore(Path({str(tmp_path / 'c.db')!r}), max_entries=5, max_bytes=10**6, dimension=None)\n"
        "    await s.open()\n"
        "    await s.close()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in ('numpy', 'usearch') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]"
