"""Lanes: concurrency bound, FIFO wait queue, drop-excess 429, timeout, slot hand-off on release."""

from __future__ import annotations

import asyncio

import pytest

from runtime.core.lanes import Lane
from runtime.errors import QueueFull, QueueTimeout


async def test_slots_are_taken_without_waiting_up_to_concurrency() -> None:
    lane = Lane("p", concurrency=2, buffer_size=0, drop_excess=True)
    assert lane.try_acquire() and lane.try_acquire()
    assert not lane.try_acquire()
    assert lane.in_flight == 2


async def test_full_queue_with_drop_excess_raises_queue_full_and_counts() -> None:
    lane = Lane("p", concurrency=1, buffer_size=1, drop_excess=True)
    await lane.acquire(1)
    waiter = asyncio.create_task(lane.acquire(5))
    await asyncio.sleep(0)
    assert lane.queued == 1
    with pytest.raises(QueueFull):
        await lane.acquire(5)
    assert lane.dropped == 1
    lane.release()
    await waiter  # the released slot went to the waiter
    assert lane.in_flight == 1 and lane.queued == 0
    lane.release()
    assert lane.in_flight == 0


async def test_without_drop_excess_a_full_queue_waits_until_timeout() -> None:
    lane = Lane("p", concurrency=1, buffer_size=0, drop_excess=False)
    await lane.acquire(1)
    with pytest.raises(QueueTimeout):
        await lane.acquire(0.05)
    assert lane.queued == 0, "a timed-out waiter must leave the queue"
    lane.release()
    assert lane.in_flight == 0


async def test_waiters_are_served_in_arrival_order() -> None:
    lane = Lane("p", concurrency=1, buffer_size=10, drop_excess=True)
    await lane.acquire(1)
    order: list[int] = []

    async def take(i: int) -> None:
        await lane.acquire(5)
        order.append(i)

    tasks = [asyncio.create_task(take(i)) for i in range(3)]
    await asyncio.sleep(0)
    for _ in range(3):
        lane.release()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    lane = Lane("p", concurrency=1, buffer_size=10, drop_excess=True)
    await lane.acquire(1)
    waiter = asyncio.create_task(lane.acquire(5))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    lane.release()
    assert lane.in_flight == 0 and lane.queued == 0
