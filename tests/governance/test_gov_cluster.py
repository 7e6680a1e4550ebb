"""Issue 11 item 5: budgets and rate limits hold across `--workers 2` (the embedded state.db) and across
two gateway instances sharing one real redis-server, and spend survives a restart.

Each counter is leased in slices (runtime/governance/ledger.py): under a burst, the total admitted never
exceeds the limit, and falls short of it by at most what the workers hold leased but unused (about one
slice and one request each). Those leftovers go back to the store after the idle period (or at a graceful
stop), so afterwards the store's counter equals what was really spent, and later requests get exactly the
rest of the limit. Prices are binary fractions, so every dollar sum below is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import openai
from fakes import FakeOpenAI, Reply
from harness import Gateway
from harness.config import make_config, openai_provider
from harness.process import StartGateway
from harness.redis import RedisServer

VK = "sk-bf-cluster-0001"
PRICE_OUT = 1 / 1024  # dollars per output token; input tokens are free, so worst case == actual cost
MAX_TOKENS = 16
COST = MAX_TOKENS * PRICE_OUT  # 1/64 dollar per request, reserved and settled alike
USAGE = {"prompt_tokens": 7, "completion_tokens": MAX_TOKENS, "total_tokens": 7 + MAX_TOKENS}
MESSAGES = [{"role": "user", "content": "hello"}]
LEASE_FRACTION = 16  # the ledger leases 1/16 of a limit at a time
IDLE_WAIT_S = 30.0  # bound on waiting for the idle return (the ledger's is 5 s, swept every 5 s)


def cluster_config(
    fake_url: str,
    *,
    budget_requests: int | None = None,
    requests_per_hour: int | None = None,
    redis: RedisServer | None = None,
) -> dict[str, Any]:
    provider = openai_provider(fake_url)
    provider["pricing_overrides"] = [
        {
            "model_pattern": "*",
            "match_type": "wildcard",
            "input_cost_per_token": 0.0,
            "output_cost_per_token": PRICE_OUT,
        }
    ]
    config = make_config({"openai": provider}, enforce_auth_on_inference=True)
    key: dict[str, Any] = {"id": "vk-cluster", "name": "cluster", "value": VK}
    governance: dict[str, Any] = {"virtual_keys": [key]}
    if budget_requests is not None:
        governance["budgets"] = [{"id": "b-cluster", "max_limit": budget_requests * COST, "reset_duration": "1d"}]
        key["budget_id"] = "b-cluster"
    if requests_per_hour is not None:
        governance["rate_limits"] = [
            {"id": "rl-cluster", "request_max_limit": requests_per_hour, "request_reset_duration": "1h"}
        ]
        key["rate_limit_id"] = "rl-cluster"
    config["governance"] = governance
    if redis is not None:
        config["shared_state"] = {"type": "redis", "config": {"addr": f"127.0.0.1:{redis.port}"}}
    return config


def most_stranded(limit: int, holders: int) -> int:
    """Requests a burst may fall short of `limit` by: each holder keeps at most one slice and one request
    leased but unused, and the store may keep less than one request."""
    return holders * (math.ceil(limit / LEASE_FRACTION) + 1) + 1


async def burst(gateways: Sequence[Gateway], n: int) -> tuple[int, list[openai.APIStatusError]]:
    """`n` concurrent requests spread over `gateways`; (admitted, refusals)."""
    clients = [g.async_client(api_key=VK, timeout=120.0) for g in gateways]
    try:

        async def one(i: int) -> Any:
            try:
                return await clients[i % len(clients)].chat.completions.create(
                    model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS
                )
            except openai.APIStatusError as err:
                return err

        results = await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        for client in clients:
            await client.close()
    refusals = [r for r in results if isinstance(r, openai.APIStatusError)]
    return n - len(refusals), refusals


def until_refused(gateways: Sequence[Gateway], most: int) -> tuple[int, openai.APIStatusError]:
    """Requests one after the other, alternating gateways, until one is refused; (admitted, refusal)."""
    clients = [g.client(api_key=VK) for g in gateways]
    try:
        for i in range(most + 1):
            try:
                clients[i % len(clients)].chat.completions.create(
                    model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS
                )
            except openai.APIStatusError as err:
                return i, err
    finally:
        for client in clients:
            client.close()
    raise AssertionError(f"{most + 1} requests in a row were admitted")


def sequential(gateways: Sequence[Gateway], n: int) -> int:
    """`n` requests one after the other, alternating gateways, all admitted; returns `n`."""
    clients = [g.client(api_key=VK) for g in gateways]
    try:
        for i in range(n):
            clients[i % len(clients)].chat.completions.create(
                model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS
            )
    finally:
        for client in clients:
            client.close()
    return n


def wait_for(read: Callable[[], float], expected: float, what: str) -> None:
    """Poll `read()` until it equals `expected` (bounded: IDLE_WAIT_S)."""
    deadline = time.monotonic() + IDLE_WAIT_S
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    assert value == expected, f"{what}: {value} after {IDLE_WAIT_S}s, expected {expected}"


def worker_pids(gateway: Gateway, attempts: int = 100) -> set[int]:
    """The worker processes answering GET /health over new connections (the kernel spreads them)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    pids: set[int] = set()
    for _ in range(attempts):
        with opener.open(gateway.url("/health"), timeout=10) as response:
            pids.add(int(json.load(response)["pid"]))
        if len(pids) > 1:
            break
    return pids


def redis_counter(redis: RedisServer, name: str) -> float:
    """The ledger's counter of `name` (e.g. `budget:b-cluster`) in its one current window."""
    keys = redis.keys(f"bifrost:c:0:0:gov:{name}:*")
    assert len(keys) <= 1, keys
    value = redis.get(keys[0]) if keys else None
    return float(value) if value is not None else 0.0


def state_db_counter(app_dir: Path, name: str) -> float:
    with contextlib.closing(sqlite3.connect(app_dir / "state.db", timeout=10)) as db:
        rows = db.execute("SELECT value FROM counters WHERE key LIKE ?", (f"gov:{name}:%",)).fetchall()
    assert len(rows) <= 1, rows
    return float(rows[0][0]) if rows else 0.0


async def test_two_workers_share_one_budget_through_state_db(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    n = 32
    fake_openai.always(Reply(usage=USAGE, delay=0.02))
    app = tmp_path / "workers"
    gateway = start_gateway(cluster_config(fake_openai.url, budget_requests=n), args=("--workers", "2"), app_dir=app)
    assert len(await asyncio.to_thread(worker_pids, gateway)) == 2
    ok, refusals = await burst([gateway], 120)
    print(f"burst admitted {ok} of a budget for {n}")
    assert n - most_stranded(n, 2) <= ok <= n, ok
    assert {r.status_code for r in refusals} == {402}
    assert len(fake_openai.requests_to("/chat/completions")) == ok, "refused requests never went upstream"
    # Idle return: the unused leases of both workers go back; the counter is then the spend alone ...
    await asyncio.to_thread(wait_for, lambda: state_db_counter(app, "budget:b-cluster"), ok * COST, "state.db")
    # ... and the rest of the budget is there for whichever worker asks: exactly n in all.
    more, refusal = await asyncio.to_thread(until_refused, [gateway], n)
    assert ok + more == n and refusal.status_code == 402
    assert "b-cluster" in str(refusal.body)


async def test_two_gateways_share_one_budget_through_redis(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    n = 32
    fake_openai.always(Reply(usage=USAGE, delay=0.02))
    config = cluster_config(fake_openai.url, budget_requests=n, redis=redis_server)
    one = start_gateway(config, app_dir=tmp_path / "one")
    two = start_gateway(config, app_dir=tmp_path / "two")
    # A few requests on each: both lease ahead of need, so Redis holds more than the spend until the
    # idle return hands the leftovers back.
    early = await asyncio.to_thread(sequential, [one, two], 6)
    assert redis_counter(redis_server, "budget:b-cluster") > early * COST
    await asyncio.to_thread(wait_for, lambda: redis_counter(redis_server, "budget:b-cluster"), early * COST, "Redis")
    ok, refusals = await burst([one, two], 120)
    print(f"burst admitted {ok} of a budget for {n - early}")
    ok += early
    assert n - most_stranded(n, 2) <= ok <= n, ok
    assert {r.status_code for r in refusals} == {402}
    assert len(fake_openai.requests_to("/chat/completions")) == ok
    assert not (one.app_dir / "state.db").exists() and not (two.app_dir / "state.db").exists()
    await asyncio.to_thread(wait_for, lambda: redis_counter(redis_server, "budget:b-cluster"), ok * COST, "Redis")
    more, refusal = await asyncio.to_thread(until_refused, [one, two], n)
    assert ok + more == n and refusal.status_code == 402
    for gateway in (one, two):
        assert gateway.stop() == 0
    assert redis_counter(redis_server, "budget:b-cluster") == n * COST  # the close path returned nothing extra


async def test_two_gateways_share_one_rate_limit_through_redis(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    limit = 24
    fake_openai.always(Reply(usage=USAGE, delay=0.02))
    config = cluster_config(fake_openai.url, requests_per_hour=limit, redis=redis_server)
    one = start_gateway(config, app_dir=tmp_path / "one")
    two = start_gateway(config, app_dir=tmp_path / "two")
    ok, refusals = await burst([one, two], 80)
    print(f"burst admitted {ok} of a limit of {limit}")
    assert limit - most_stranded(limit, 2) <= ok <= limit, ok
    assert {r.status_code for r in refusals} == {429}
    assert all(r.response.headers.get("retry-after") for r in refusals)
    await asyncio.to_thread(wait_for, lambda: redis_counter(redis_server, "rl:rl-cluster:requests"), float(ok), "Redis")
    more, refusal = await asyncio.to_thread(until_refused, [one, two], limit)
    assert ok + more == limit and refusal.status_code == 429


def test_spend_persists_across_a_restart_with_redis(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    n, spent = 64, 5  # a slice is 4 requests: after 5, 3 more stay leased
    fake_openai.always(Reply(usage=USAGE))
    config = cluster_config(fake_openai.url, budget_requests=n, redis=redis_server)
    first = start_gateway(config, app_dir=tmp_path / "first")
    with first.client(api_key=VK) as client:
        for _ in range(spent):
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=MAX_TOKENS)
    assert redis_counter(redis_server, "budget:b-cluster") > spent * COST  # a slice is leased ahead of need
    assert first.stop() == 0
    # The close path handed the unused lease back: Redis holds exactly the spend.
    assert redis_counter(redis_server, "budget:b-cluster") == spent * COST
    # A new process (another app dir: nothing local survives) sees the spend and admits only the rest.
    second = start_gateway(config, app_dir=tmp_path / "second")
    more, refusal = until_refused([second], n)
    assert more == n - spent and refusal.status_code == 402


def test_the_bench_governed_target_runs_the_built_in_governance(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """`bifrost-gov` (bench/targets/bifrost.py) measures the real plugin: its config.json makes the virtual
    key mandatory, and the key the load generator sends is admitted and charged to its key and team."""
    from bench.governance_plugin import VIRTUAL_KEY
    from bench.targets.bifrost import write_config

    fake_openai.always(Reply(usage=USAGE))
    app = tmp_path / "bench-gov"
    app.mkdir()
    config = json.loads(
        Path(write_config(str(app), fake_openai.url, logging=True, profile=None, governance=True)).read_text()
    )
    config["providers"]["openai"]["keys"][0]["value"] = "sk-fake-1"  # the fake's key
    gateway = start_gateway(config, app_dir=app)
    with gateway.client(api_key="sk-bench-not-a-secret") as client:  # the load generator's default key
        try:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
        except openai.AuthenticationError:
            pass
        else:
            raise AssertionError("the governed target answered a request without its virtual key")
    with gateway.client(api_key=VIRTUAL_KEY) as client:
        raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    assert int(raw.headers["x-ratelimit-remaining-requests"]) > 10**8  # its rate limit counted the request
    rows = gateway.log.wait_rows(2)
    assert [r["virtual_key_id"] for r in rows if r["status"] == 200] == ["bench-key"]
    assert len(fake_openai.requests_to("/chat/completions")) == 1
