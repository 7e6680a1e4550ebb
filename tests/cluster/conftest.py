"""Fixtures of the end-to-end cluster tests: `make_cluster` (N gateways + nginx, torn down after the test)
and `cluster_config` (the shared config file on the session's PostgreSQL and Redis)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from harness.postgres import PostgresServer
from harness.redis import RedisServer

from .kit import Cluster

MakeCluster = Callable[..., Cluster]
FAKE_KEY = "sk-fake-1"  # what env.OPENAI_API_KEY resolves to in every instance: fakes only


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeCluster]:
    """make_cluster(config, n, env=None) -> a started Cluster; every one is stopped in teardown (its
    gateways' and nginx's output printed when the test failed)."""
    made: list[Cluster] = []

    def make(config: Mapping[str, Any] | str, n: int, env: Mapping[str, str] | None = None) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(made)}", config, {"OPENAI_API_KEY": FAKE_KEY, **(env or {})})
        made.append(cluster)
        return cluster.start(n)

    yield make
    failed = any(getattr(getattr(request.node, f"rep_{when}", None), "failed", False) for when in ("setup", "call"))
    for cluster in made:
        with contextlib.suppress(Exception):
            cluster.stop()
        if failed:
            print(cluster.output())


def store_block(postgres: PostgresServer, database: str, **extra: Any) -> dict[str, Any]:
    """A Go Bifrost `config_store` / `logs_store` block on the test server's `database`."""
    return {"enabled": True, "type": "postgres", "config": {**postgres.settings(database), **extra}}


def shared_blocks(postgres: PostgresServer, database: str, redis: RedisServer, **redis_extra: Any) -> dict[str, Any]:
    """The three blocks every cluster instance shares: config store, log store (PostgreSQL), shared state (Redis)."""
    return {
        "config_store": store_block(postgres, database),
        "logs_store": store_block(postgres, database),
        "shared_state": {"type": "redis", "config": {"addr": f"127.0.0.1:{redis.port}", **redis_extra}},
    }
