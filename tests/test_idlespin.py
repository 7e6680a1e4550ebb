"""The idle spin (runtime/http/idlespin.py): bounded, adaptive, and off when it would spend a CPU quota."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import aiohttp
import pytest

from bifrost_cli.sizing import InstanceInfo
from bifrost_cli.startup import IDLE_SPIN_ENV, idle_spin_us
from runtime.config.load import ConfigError
from runtime.http.idlespin import COOL_OFF, GROW_START_NS, IdleSpin

US = 1000


class Clock:
    def __init__(self) -> None:
        self.now = 10**12

    def __call__(self) -> int:
        return self.now


class Loop:
    """Records call_soon; run() plays what is ready, like one loop iteration."""

    def __init__(self) -> None:
        self.ready: list[Any] = []

    def call_soon(self, fn: Any) -> None:
        self.ready.append(fn)

    def run(self) -> int:
        ready, self.ready = self.ready, []
        for fn in ready:
            fn()
        return len(ready)


def make(longest_us: int = 200, cpu: Clock | None = None) -> tuple[IdleSpin, Loop, Clock]:
    """A spin on a fake loop and clock; its thread's CPU clock is the wall clock (the core is ours) unless
    `cpu` is given."""
    loop, clock = Loop(), Clock()
    return IdleSpin(loop, longest_us, clock, cpu or clock), loop, clock  # type: ignore[arg-type]


def test_spins_only_until_the_window_ends() -> None:
    spin, loop, clock = make(200)
    spin.answered()
    assert loop.run() == 1  # armed: the loop polls instead of sleeping
    clock.now += 150 * US
    assert loop.run() == 1  # still inside the window: one more poll queued
    clock.now += 60 * US
    assert loop.run() == 1  # past it: the tick ends the spin and queues nothing
    assert loop.ready == []


def test_one_tick_queued_however_often_it_is_armed() -> None:
    spin, loop, clock = make(200)
    for _ in range(5):
        spin.answered()
        clock.now += 1 * US
    assert len(loop.ready) == 1


def test_sparse_traffic_shrinks_the_window_to_nothing() -> None:
    spin, loop, clock = make(200)
    for _ in range(20):
        clock.now += 50_000 * US  # a request every 50 ms: spinning never catches one
        spin.arrived()
        loop.run()
        clock.now += 300 * US
        loop.run()
        spin.answered()
        clock.now += 300 * US
        loop.run()
    assert spin.window == 0
    clock.now += 50_000 * US
    spin.arrived()
    assert loop.ready == []  # no spin at all now


def test_close_traffic_grows_the_window_back() -> None:
    spin, _loop, clock = make(200)
    spin.window = 0
    windows = []
    for _ in range(6):
        spin.answered()
        clock.now += 40 * US  # the next request 40 µs after the last answer
        spin.arrived()
        windows.append(spin.window)
    assert windows[0] == GROW_START_NS
    assert windows == sorted(windows)
    assert windows[-1] == 200 * US


def test_a_contended_core_stops_the_spin_for_a_while() -> None:
    cpu = Clock()  # the thread's CPU clock: it advances only when we say the thread ran
    spin, loop, clock = make(200, cpu)
    spin.answered()
    clock.now += 100 * US
    cpu.now += 30 * US  # 30 µs of CPU in 100 µs of wall: another process had the core
    loop.run()
    clock.now += 150 * US
    cpu.now += 20 * US
    loop.run()  # the window is over: the spin ends and finds it was starved
    assert loop.ready == []
    for _ in range(COOL_OFF - 1):
        clock.now += 40 * US
        spin.arrived()
        spin.answered()
        assert loop.ready == []  # no spinning while cooling off
    clock.now += 40 * US
    spin.arrived()  # the last request of the cool-off: it does not spin on arrival...
    assert loop.ready == []
    spin.answered()
    assert len(loop.ready) == 1  # ...and then the spin tries again


def test_an_uncontended_spin_keeps_spinning() -> None:
    spin, loop, clock = make(200)
    spin.answered()
    clock.now += 250 * US
    loop.run()  # ended; CPU kept pace with the wall clock
    clock.now += 40 * US
    spin.arrived()
    assert len(loop.ready) == 1


def test_env_beats_the_profile_and_a_quota_turns_it_off() -> None:
    free = InstanceInfo(cpus=2, memory_bytes=None, cpu_source="t", memory_source="t")
    quota = dataclasses.replace(free, cpu_quota=1.5)
    assert idle_spin_us(200, free, {}) == 200
    assert idle_spin_us(200, quota, {}) == 0
    assert idle_spin_us(200, quota, {IDLE_SPIN_ENV: "50"}) == 50
    assert idle_spin_us(200, free, {IDLE_SPIN_ENV: "0"}) == 0
    for bad in ("-1", "1.5", "abc", "10001"):
        with pytest.raises(ConfigError) as err:
            idle_spin_us(200, free, {IDLE_SPIN_ENV: bad})
        assert IDLE_SPIN_ENV in str(err.value)


def test_a_gateway_with_the_spin_on_answers_and_then_stops_spinning(tmp_path: Any) -> None:
    """End to end through the real app: answers are unchanged, and once traffic stops the loop sleeps
    again (no tick left queued forever)."""
    from runtime.app import create_app
    from runtime.config.load import load_gateway_config
    from runtime.config.model import Tuning

    (tmp_path / "config.json").write_text('{"client": {"enable_logging": false}}')
    config = load_gateway_config(tmp_path, tuning=Tuning(idle_spin_us=200))

    async def main() -> None:
        app = create_app(config)
        assert any("_spinning" in m.__qualname__ for m in app.middlewares)  # the spin is armed per request
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(3):
                    async with session.post(
                        f"http://127.0.0.1:{port}/v1/chat/completions",
                        json={"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}]},
                    ) as resp:
                        assert resp.status == 200, await resp.text()
                        body = await resp.json()
                        assert body["choices"][0]["message"]["content"]
            await asyncio.sleep(0.05)  # far longer than the window: the spin has ended
            loop = asyncio.get_running_loop()
            handles = getattr(loop, "_ready", None)
            if handles is not None:  # the default loop exposes its ready queue
                assert not any("IdleSpin" in repr(h) for h in handles)
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_spin_off_installs_the_plain_middleware(tmp_path: Any) -> None:
    from runtime.app import create_app
    from runtime.config.load import load_gateway_config

    (tmp_path / "config.json").write_text('{"client": {"enable_logging": false}}')
    app = create_app(load_gateway_config(tmp_path))
    assert not any("_spinning" in m.__qualname__ for m in app.middlewares)
