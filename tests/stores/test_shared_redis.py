"""What only the Redis shared-state engine has: a key prefix, a network (that fails, stalls and drops
connections), a password, and one pub/sub connection per store. The interface itself is pinned for
both engines by test_shared_state.py. Every wait on the store is wrapped in a generous outer bound, so
a hang fails the test instead of stalling the suite; no assertion is about how fast anything is."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime.stores.shared import SharedStateError
from runtime.stores.shared_redis import RedisSharedState
from tests.stores.conftest import RedisServer, free_port, start_redis

HANG = 30  # seconds: only a hang takes this long


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisSharedState]:
    s = RedisSharedState(redis_url)
    await s.open()
    yield s
    await s.close()


async def _next(sub: object) -> str:
    return await asyncio.wait_for(sub.__anext__(), HANG)  # type: ignore[attr-defined]


async def test_a_key_prefix_keeps_gateways_on_one_redis_apart(redis_url: str, redis_server: RedisServer) -> None:
    a = RedisSharedState(redis_url, key_prefix="gw-a:")
    b = RedisSharedState(redis_url, key_prefix="gw-b:")
    try:
        assert await a.incr("spend", 5) == 5
        assert await b.incr("spend", 1) == 1
        await a.set("k", "a")
        assert await b.get("k") is None
        sub_b = await b.subscribe("changes")
        sub_sync = await b.subscribe("sync")
        await a.publish("changes", "for a only")
        await b.publish("sync", "done")
        assert await _next(sub_sync) == "done"  # one connection, in order: "changes" was read before this
        assert sub_b.queue.empty()
        await sub_b.close()
        await sub_sync.close()
    finally:
        await a.close()
        await b.close()
    keys = redis_server.command("KEYS", "*").decode()
    assert "gw-a:c:0:0:spend" in keys and "gw-b:c:0:0:spend" in keys and "gw-a:kv:k" in keys


async def test_window_keys_expire_in_redis_and_forever_keys_do_not(
    store: RedisSharedState, redis_server: RedisServer
) -> None:
    await store.incr("w", 1, window_s=60)
    await store.reserve("r", 1, limit=5, window_s=60)
    await store.incr("forever", 1)
    for pattern in ("bifrost:c:60000:*:w", "bifrost:c:60000:*:r"):
        (key,) = [
            line for line in redis_server.command("KEYS", pattern).decode().split("\r\n") if line.startswith("bif")
        ]
        ttl = int(redis_server.command("PTTL", key).decode().strip(":\r\n"))
        assert 0 < ttl <= 120_000  # the rest of its window plus one more: never a key that lives forever
    assert redis_server.command("PTTL", "bifrost:c:0:0:forever").startswith(b":-1")


async def test_integer_and_fractional_amounts_mix_on_one_counter(store: RedisSharedState) -> None:
    assert await store.incr("mix", 1) == 1
    assert await store.incr("mix", 0.5) == 1.5
    assert await store.incr("mix", 1) == 2.5  # INCRBY refuses a fraction: the engine adds it as a float
    assert await store.reserve("mix", 2, limit=5)
    assert not await store.reserve("mix", 1, limit=5)
    assert await store.total("mix") == 4.5
    assert await store.incr("big", 2**53 + 1) == 2**53 + 1  # integers stay exact
    # The same in a window (INCRBY inside MULTI/EXEC with its PEXPIREAT).
    assert await store.incr("wmix", 0.25, window_s=3600) == 0.25
    assert await store.incr("wmix", 2, window_s=3600) == 2.25
    assert await store.total("wmix", window_s=3600) == 2.25


async def test_pub_sub_across_two_clients(redis_url: str) -> None:
    one, two, three = (RedisSharedState(redis_url) for _ in range(3))
    try:
        sub_one = await one.subscribe("config")
        sub_two = await two.subscribe("config")
        again = await two.subscribe("config")  # a second subscriber of a channel the store already has
        await three.publish("config", "reload")
        assert [await _next(sub_one), await _next(sub_two), await _next(again)] == ["reload"] * 3
        await sub_two.close()  # the other subscriber of that store keeps receiving
        await three.publish("config", "again")
        assert await _next(again) == "again"
        assert await _next(sub_one) == "again"
    finally:
        for s in (one, two, three):
            await s.close()


async def test_a_slow_subscriber_loses_messages_instead_of_blocking(redis_url: str) -> None:
    s = RedisSharedState(redis_url, queue_size=3)
    try:
        slow = await s.subscribe("busy")
        sync = await s.subscribe("sync")
        for i in range(10):
            await s.publish("busy", f"m{i}")
        await s.publish("sync", "done")
        assert await _next(sync) == "done"  # the reader went past all ten without waiting for `slow`
        assert [await _next(slow) for _ in range(3)] == ["m0", "m1", "m2"]
        assert slow.dropped == 7
    finally:
        await s.close()


async def test_a_subscription_survives_a_dropped_connection(
    store: RedisSharedState, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    sub = await store.subscribe("live")
    assert redis_server.command("CLIENT", "KILL", "TYPE", "pubsub").startswith(b":1")
    # The reader notices, reconnects and subscribes again; what is published meanwhile is lost
    # (at-most-once), so publish until one arrives.
    got = None
    for i in range(HANG * 10):
        await store.publish("live", f"after-{i}")
        try:
            got = await asyncio.wait_for(sub.__anext__(), 0.1)
            break
        except TimeoutError:
            continue
    assert got is not None and got.startswith("after-")
    assert any("reading notifications failed" in r.getMessage() for r in caplog.records)
    await sub.close()


async def test_no_server_is_a_store_error_not_a_hang() -> None:
    s = RedisSharedState(f"redis://127.0.0.1:{free_port()}/0", timeout_s=1.0, connect_timeout_s=1.0)
    try:
        with pytest.raises(SharedStateError, match=r"Redis at 127\.0\.0\.1:\d+/0: connecting failed"):
            await asyncio.wait_for(s.open(), HANG)
        with pytest.raises(SharedStateError):  # the lazy open of the first operation says the same
            await asyncio.wait_for(s.incr("x"), HANG)
    finally:
        await s.close()


async def test_a_server_that_never_answers_is_a_store_error_not_a_hang() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # take the connection and the command, never answer

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    s = RedisSharedState(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    try:
        with pytest.raises(SharedStateError, match=r"no answer within 0\.5 s"):
            await asyncio.wait_for(s.incr("x"), HANG)
    finally:
        await s.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_stalled_server_is_a_store_error_and_the_store_recovers(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "stalled")
    s = RedisSharedState(server.url, timeout_s=0.5)
    try:
        assert await s.incr("n") == 1
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(SharedStateError, match="no answer"):
                await asyncio.wait_for(s.incr("n"), HANG)
            with pytest.raises(SharedStateError):
                await asyncio.wait_for(s.reserve("n", 1, limit=10), HANG)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        # The timed-out calls dropped their connections; new ones work. The stalled INCRBY may or may
        # not have counted: the caller was told it failed, never that it succeeded.
        assert await asyncio.wait_for(s.incr("n"), HANG) in (2, 3, 4)
    finally:
        await s.close()
        server.stop()


async def test_the_password_is_never_in_an_error_or_a_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = start_redis(tmp_path / "auth", "--requirepass", "right-pass-7Qx")
    try:
        wrong = RedisSharedState(server.url, password="wrong-pass-9Zk")
        with pytest.raises(SharedStateError) as raised:
            await asyncio.wait_for(wrong.open(), HANG)
        await wrong.close()
        assert "wrong-pass-9Zk" not in str(raised.value) and "wrong-pass-9Zk" not in repr(wrong)
        in_url = RedisSharedState(f"redis://:wrong-pass-9Zk@127.0.0.1:{server.port}/0")
        with pytest.raises(SharedStateError) as raised:
            await asyncio.wait_for(in_url.incr("x"), HANG)
        await in_url.close()
        assert "wrong-pass-9Zk" not in str(raised.value)
        right = RedisSharedState(server.url, password="right-pass-7Qx")
        try:
            assert await right.incr("x") == 1
            assert "right-pass-7Qx" not in repr(right)
        finally:
            await right.close()
    finally:
        server.stop()
    assert not [r for r in caplog.records if "pass-" in r.getMessage()]


async def test_closed_store_refuses_work(redis_url: str) -> None:
    s = RedisSharedState(redis_url)
    await s.close()
    with pytest.raises(RuntimeError, match="closed"):
        await s.incr("x")
