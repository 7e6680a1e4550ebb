"""One breaker for every worker and instance: transitions travel through the shared-state store
(runtime/core/health_sync.py), so once one worker opened a breaker, the others skip the target too.

One request opens the primary's breaker in whichever worker takes it (its retries fail 3 times in a row,
and an opened breaker stops the retries); afterwards fresh connections, which the kernel spreads over
the workers, never reach the primary: the fake's counter stays at 3. Without sharing, each other worker
would try the primary (3 more attempts each) before opening its own breaker."""

from __future__ import annotations

import time
from pathlib import Path

from fakes import FakeOpenAI
from harness import StartGateway
from harness.redis import RedisServer

from .helpers import SERVER_ERROR, ask, chats, health_of, providers

FALLBACK = ["backup/gpt-4o-mini"]
PROPAGATION_S = 1.0  # the brief's bound: the embedded store polls every 50 ms, Redis pushes at once


def _config(primary: FakeOpenAI, backup: FakeOpenAI) -> dict[str, object]:
    config = providers(primary, backup, consecutive_failures=3, cooldown_seconds=60)
    config["providers"]["openai"]["network_config"]["max_retries"] = 5  # type: ignore[index]
    return config


def test_two_workers_share_one_breaker(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.always(SERVER_ERROR)
    gateway = start_gateway(_config(fake_openai, fake_openai_2), args=("--workers", "2"), app_dir=tmp_path / "w")
    assert ask(gateway, fallbacks=FALLBACK).startswith("fake-openai-2:")
    assert chats(fake_openai) == 3  # opened after 3 failures in a row; no retry past that
    time.sleep(PROPAGATION_S)
    for _ in range(20):
        assert ask(gateway, fallbacks=FALLBACK).startswith("fake-openai-2:")
    assert chats(fake_openai) == 3
    for _ in range(10):  # each view is one worker's (any of them): every one says open
        assert health_of(gateway)["models"]["gpt-4o-mini"]["state"] == "open"


def test_two_instances_share_one_breaker_through_redis(
    start_gateway: StartGateway,
    fake_openai: FakeOpenAI,
    fake_openai_2: FakeOpenAI,
    redis_server: RedisServer,
    redis_url: str,
    tmp_path: Path,
) -> None:
    fake_openai.always(SERVER_ERROR)
    config = _config(fake_openai, fake_openai_2)
    config["shared_state"] = {"type": "redis", "config": {"addr": f"127.0.0.1:{redis_server.port}"}}
    one = start_gateway(config, app_dir=tmp_path / "one")
    two = start_gateway(config, app_dir=tmp_path / "two")
    assert ask(one, fallbacks=FALLBACK).startswith("fake-openai-2:")
    assert chats(fake_openai) == 3
    time.sleep(PROPAGATION_S)
    assert health_of(two)["models"]["gpt-4o-mini"]["state"] == "open"
    for _ in range(10):
        assert ask(two, fallbacks=FALLBACK).startswith("fake-openai-2:")
    assert chats(fake_openai) == 3
    assert redis_url  # the fixture emptied Redis before the test
