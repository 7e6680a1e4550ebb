"""Shared fixtures: fake providers, a config pointing at them, and the gateway as a real process.

    def test_x(fake_openai, start_gateway):
        gw = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))
        with gw.client() as client: ...

Every gateway a test starts is stopped (SIGTERM, then SIGKILL of its process group) in teardown;
when the test failed, the gateway's stdout/stderr are printed so the failure shows why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeAzure, FakeOpenAI
from fakes.native import FakeAnthropic
from harness import Gateway, StartGateway, make_config, openai_provider
from harness.postgres import PostgresServer, server_directory, start_postgres
from harness.process import spawn
from harness.redis import RedisServer, start_redis

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(getattr(request.node, f"rep_{when}", None), "failed", False) for when in ("setup", "call"))


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(name="fake-openai").start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_openai_2() -> Iterator[FakeOpenAI]:
    """A second, independent OpenAI-compatible upstream (for fallbacks), key sk-fake-2."""
    fake = FakeOpenAI(keys=("sk-fake-2",), name="fake-openai-2").start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_azure() -> Iterator[FakeAzure]:
    fake = FakeAzure().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the session (tests/harness/redis.py); fails when it is not installed."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied: each test starts from no keys."""
    assert redis_server.command("FLUSHALL").startswith(b"+OK")
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (tests/harness/postgres.py); fails when it is not installed."""
    directory = server_directory()  # not under tmp_path_factory: see the harness
    server = start_postgres(directory / "cluster")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server, owned by the role `bifrost`; its name.
    `postgres_server.settings(name)` is the `config` of a store block pointing at it."""
    return postgres_server.new_database()


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    path = tmp_path / "app"
    path.mkdir()
    return path


@pytest.fixture
def start_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartGateway]:
    """Factory: start_gateway(config=None, *, env=None, args=(), app_dir=None) -> Gateway (healthy)."""
    started: list[Gateway] = []

    def start(
        config: Mapping[str, Any] | str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        app_dir: Path | None = None,
    ) -> Gateway:
        directory = app_dir or tmp_path / f"app{len(started)}"
        gateway = spawn(directory, config=config, env=env, args=args)
        started.append(gateway)
        gateway.wait_healthy()
        return gateway

    yield start

    failed = _failed(request)
    for gateway in started:
        if gateway.running():
            with contextlib.suppress(Exception):
                gateway.stop(timeout=15)
        gateway.kill()  # leftovers: forked workers share the gateway's process group
        if failed:
            print(gateway.output())


@pytest.fixture
def gateway(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> Gateway:
    """A gateway whose provider "openai" is the fake OpenAI (one key, sk-fake-1)."""
    return start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))
