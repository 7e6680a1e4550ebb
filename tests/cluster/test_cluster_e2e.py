"""Issue 14 end to end: several gateway processes with the SAME config file (each its own app dir, started
by the systemd unit's command line) behind the packaged nginx.conf, on a real PostgreSQL (config and log
stores) and a real Redis (shared state). Fakes and the built-in mock provider only; loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fakes import FakeOpenAI, Reply
from harness.config import make_config, openai_provider
from harness.postgres import PostgresServer
from harness.process import REPO_ROOT, StartGateway, gateway_env
from harness.redis import RedisServer, start_redis

from .conftest import MakeCluster, shared_blocks
from .kit import EXAMPLE, Cluster, Outcome, forwarded, restart_redis

EXAMPLE_VK = "sk-bf-shared-0001"  # the example file's virtual key
MOCK = {"model": "mock/mock-chat", "messages": [{"role": "user", "content": "hi"}]}
VK = "sk-bf-cluster-e2e-0001"
PRICE_OUT = 1 / 1024  # dollars per output token; input free: a request's worst case == its actual cost
MAX_TOKENS = 16
COST = MAX_TOKENS * PRICE_OUT
USAGE = {"prompt_tokens": 7, "completion_tokens": MAX_TOKENS, "total_tokens": 7 + MAX_TOKENS}
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}], "max_tokens": MAX_TOKENS}
LEASE_FRACTION = 16  # the ledger leases 1/16 of a limit at a time (docs/governance-limits.md)


def most_stranded(limit: int, holders: int) -> int:
    """How far below `limit` a burst may stop: each holder keeps at most one slice and one request leased
    but unused until its idle return (docs/governance-limits.md)."""
    return holders * (math.ceil(limit / LEASE_FRACTION) + 1) + 1


def priced_config(fake_url: str, **governance: Any) -> dict[str, Any]:
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
    config["governance"] = governance
    return config


def log_ids(postgres: PostgresServer, database: str) -> set[str]:
    """Request ids in the shared log table (none while the table does not exist yet)."""
    try:
        out = postgres.psql("SELECT id FROM bifrost_logs", database)
    except RuntimeError as exc:
        if "does not exist" in str(exc):
            return set()
        raise
    return set(out.split()) if out else set()


def wait_rows(postgres: PostgresServer, database: str, wanted: set[str], timeout: float = 20.0) -> set[str]:
    """Poll the log table until every id in `wanted` is there (bounded); the ids still missing."""
    deadline = time.monotonic() + timeout
    missing = wanted - log_ids(postgres, database)
    while missing and time.monotonic() < deadline:
        time.sleep(0.2)
        missing = wanted - log_ids(postgres, database)
    return missing


# -- (a) the issue's example, exactly as written ---------------------------------------------------------
async def test_the_issue_example_holds_its_rate_limit_across_two_instances(
    make_cluster: MakeCluster, postgres_server: PostgresServer, redis_server: RedisServer, redis_url: str
) -> None:
    # The file names database `bifrost` on 127.0.0.1:5432 and Redis on 127.0.0.1:6379: start from an
    # empty `bifrost` database, and relay those ports to the test servers (kit.Forwarder says why).
    postgres_server.psql("DROP DATABASE IF EXISTS bifrost WITH (FORCE)")
    postgres_server.psql("CREATE DATABASE bifrost OWNER bifrost")
    with forwarded([(5432, postgres_server.port), (6379, redis_server.port)]):
        cluster = make_cluster(EXAMPLE.read_text(), 2)  # the file's text, byte for byte
        outcomes = await cluster.load(8, concurrency=1, api_key=EXAMPLE_VK, body=MOCK)
        statuses = [o.status for o in outcomes]
        print(f"the example through nginx, one request at a time: {statuses}")
        first = statuses.count(200)
        # 6 requests a minute, whichever instance answers: never a 7th; the others are 429 request_limited.
        assert first <= 6 and statuses.count(429) == 8 - first, outcomes
        assert {o.code for o in outcomes if o.status == 429} == {"request_limited"}, outcomes
        # Each instance leases slices of the limit; one may hold an unused slice when the other runs out
        # (docs/governance-limits.md), so a request may be refused on one instance while the other still
        # holds its last slice. Idle slices go back to Redis within ~10 s, and then exactly the rest of
        # the 6 is admitted, on either instance.
        more: list[Outcome] = []
        deadline = time.monotonic() + 20.0
        while first + len([o for o in more if o.status == 200]) < 6 and time.monotonic() < deadline:
            more += await cluster.load(1, concurrency=1, api_key=EXAMPLE_VK, body=MOCK)
            await asyncio.sleep(0.5)
        later = await cluster.load(3, concurrency=1, api_key=EXAMPLE_VK, body=MOCK)
        admitted = first + sum(o.status == 200 for o in more)
        print(f"first burst {first}, admitted in all {admitted}; then {[o.status for o in later]}")
        assert admitted == 6 and {o.status for o in more} <= {200, 429}
        assert [o.status for o in later] == [429, 429, 429]
        assert cluster.nginx is not None
        used = Counter(await asyncio.to_thread(cluster.nginx.wait_log_lines, 8))
        assert set(used) == {f"127.0.0.1:{g.port}" for g in cluster.instances}, used  # both instances served
        # Both instances log into the one PostgreSQL table.
        ok_ids = {o.request_id for o in [*outcomes, *more] if o.status == 200 and o.request_id}
        assert len(ok_ids) == 6
        missing = await asyncio.to_thread(wait_rows, postgres_server, "bifrost", ok_ids)
        assert not missing, missing
        cluster.stop()  # while the relays still run: the instances' last flushes go through them


# -- (b) one budget, three instances, concurrent load ------------------------------------------------------
@pytest.mark.timeout(180)
async def test_a_budget_holds_across_three_instances_under_concurrent_load(
    make_cluster: MakeCluster,
    fake_openai: FakeOpenAI,
    postgres_server: PostgresServer,
    postgres_db: str,
    redis_server: RedisServer,
    redis_url: str,
) -> None:
    n = 30  # the budget pays for exactly n requests
    fake_openai.always(Reply(usage=USAGE, delay=0.02))
    config = priced_config(
        fake_openai.url,
        budgets=[{"id": "b-shared", "max_limit": n * COST, "reset_duration": "1d"}],
        virtual_keys=[{"id": "vk-e2e", "name": "e2e", "value": VK, "budget_id": "b-shared"}],
    )
    config.update(shared_blocks(postgres_server, postgres_db, redis_server))
    cluster = make_cluster(config, 3)
    outcomes = await cluster.load(3 * n, concurrency=12, api_key=VK, body=CHAT)
    ok = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status != 200]
    print(f"budget for {n} requests over 3 instances, 90 sent 12 at a time: {len(ok)} admitted")
    # Reserved before going upstream, at the worst case: never more than the budget, whatever the instance;
    # short of it by at most the slices the three instances hold leased (docs/governance-limits.md).
    assert n - most_stranded(n, 3) <= len(ok) <= n, len(ok)
    assert {o.status for o in refused} == {402} and {o.code for o in refused} == {"budget_exceeded"}
    assert len(fake_openai.requests_to("/chat/completions")) == len(ok), "a refused request went upstream"
    # The spend every instance logged to the shared table is within the budget too.
    ok_ids = {o.request_id for o in ok if o.request_id}
    assert not await asyncio.to_thread(wait_rows, postgres_server, postgres_db, ok_ids)
    spent = float(postgres_server.psql("SELECT coalesce(sum(cost), 0) FROM bifrost_logs", postgres_db))
    assert spent <= n * COST + 1e-9, spent


# -- (d) an admin change on one instance is live on the others ----------------------------------------------
async def test_a_virtual_key_created_on_one_instance_authenticates_on_the_others(
    make_cluster: MakeCluster,
    postgres_server: PostgresServer,
    postgres_db: str,
    redis_server: RedisServer,
    redis_url: str,
) -> None:
    config = make_config({}, enforce_auth_on_inference=True)
    config["governance"] = {"virtual_keys": [{"id": "vk-seed", "name": "seed", "value": VK}]}
    config.update(shared_blocks(postgres_server, postgres_db, redis_server))
    cluster = make_cluster(config, 3)
    a, others = cluster.instances[0], cluster.instances[1:]
    async with aiohttp.ClientSession(trust_env=False) as session:
        for gateway in others:  # the key does not exist yet anywhere
            status = await _chat_status(session, gateway.base_url, "sk-bf-not-yet-created")
            assert status == 401
        async with session.post(a.url("/api/governance/virtual-keys"), json={"name": "made-on-a"}) as response:
            assert response.status == 201, await response.text()
            created = (await response.json())["virtual_key"]["value"]
        delays = await asyncio.gather(*(_until_admitted(session, g.base_url, created) for g in others))
    print(f"virtual key created on A, first admitted on B and C after {[round(d * 1000) for d in delays]} ms")
    assert all(d < 5.0 for d in delays), delays  # the issue asks for 1 s; the bound is loose (shared machine)


async def _chat_status(session: aiohttp.ClientSession, base_url: str, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}"}
    async with session.post(base_url + "/v1/chat/completions", json=MOCK, headers=headers) as response:
        await response.read()
        return response.status


async def _until_admitted(session: aiohttp.ClientSession, base_url: str, key: str, bound: float = 5.0) -> float:
    """Seconds until `key` is admitted on the instance at `base_url` (polled every 20 ms), or `bound`."""
    started = time.monotonic()
    while time.monotonic() - started < bound:
        status = await _chat_status(session, base_url, key)
        if status == 200:
            return time.monotonic() - started
        assert status == 401, status
        await asyncio.sleep(0.02)
    return bound


# -- (e) a killed instance: nginx routes around it, no completed request loses its log row ---------------------
def _load_config(fake: FakeOpenAI, postgres: PostgresServer, database: str, redis: RedisServer) -> dict[str, Any]:
    fake.always(Reply(delay=0.03))
    config = make_config({"openai": openai_provider(fake.url)})
    config.update(shared_blocks(postgres, database, redis))
    return config


async def _after(delay: float, action: Any) -> None:
    await asyncio.sleep(delay)
    await asyncio.to_thread(action)


CONCURRENCY = 6
PLAIN = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.timeout(180)
async def test_killing_an_instance_mid_load_loses_no_completed_request_log(
    make_cluster: MakeCluster,
    fake_openai: FakeOpenAI,
    postgres_server: PostgresServer,
    postgres_db: str,
    redis_server: RedisServer,
    redis_url: str,
) -> None:
    cluster = make_cluster(_load_config(fake_openai, postgres_server, postgres_db, redis_server), 3)
    outcomes, _ = await asyncio.gather(
        cluster.load(200, concurrency=CONCURRENCY, body=PLAIN), _after(1.0, lambda: cluster.kill(0))
    )
    failed = [o for o in outcomes if o.status != 200]
    ok_ids = {o.request_id for o in outcomes if o.status == 200 and o.request_id}
    print(f"SIGKILL of 1 of 3 instances mid-load: {len(ok_ids)} ok, {len(failed)} failed: {failed}")
    assert len(ok_ids) == len(outcomes) - len(failed)
    # Only requests in flight on the killed instance may fail (nginx never resends a POST it sent).
    assert len(failed) <= CONCURRENCY and all(o.status == 502 for o in failed), failed
    assert cluster.nginx is not None
    served = await asyncio.to_thread(cluster.nginx.wait_served, ok_ids)
    killed = f"127.0.0.1:{cluster.instances[0].port}"
    by_killed = sum(served[rid] == killed for rid in ok_ids)
    # systemd's Restart=on-failure brings the instance back on the same app dir, whose spool holds the
    # rows the killed process had accepted but not written (docs/logs-store.md).
    await asyncio.to_thread(cluster.restart, 0)
    # The issue: "killing one instance mid-load loses no log row of a completed request": every request
    # answered 200, by any instance (the killed one included), has its row in the shared table.
    missing = await asyncio.to_thread(wait_rows, postgres_server, postgres_db, ok_ids)
    print(f"{by_killed} answered by the killed instance; {len(missing)} of {len(ok_ids)} without a log row")
    assert by_killed > 0  # the kill landed mid-load: the instance had answered requests
    assert not missing, {rid: served[rid] for rid in missing}


@pytest.mark.timeout(180)
async def test_a_sigterm_mid_load_loses_no_log_row_and_the_documented_drain_no_request(
    make_cluster: MakeCluster,
    fake_openai: FakeOpenAI,
    postgres_server: PostgresServer,
    postgres_db: str,
    redis_server: RedisServer,
    redis_url: str,
) -> None:
    cluster = make_cluster(_load_config(fake_openai, postgres_server, postgres_db, redis_server), 3)
    # A bare SIGTERM under load: the instance drains what it accepted and flushes its log.
    outcomes, _ = await asyncio.gather(
        cluster.load(150, concurrency=CONCURRENCY, body=PLAIN), _after(1.0, lambda: cluster.term(1))
    )
    failed = [o for o in outcomes if o.status != 200]
    print(f"bare SIGTERM of 1 of 3 instances mid-load: {len(outcomes) - len(failed)} ok, {len(failed)} failed")
    assert cluster.instances[1].exit_code == 0
    # A POST nginx wrote on a keep-alive connection the stopping instance was closing at that instant is
    # not re-sent (nginx cannot know it was not read): at most the requests in flight, as 502.
    assert len(failed) <= CONCURRENCY and all(o.status == 502 for o in failed), failed
    ok_ids = {o.request_id for o in outcomes if o.status == 200}
    missing = await asyncio.to_thread(wait_rows, postgres_server, postgres_db, ok_ids)
    assert not missing, f"{len(missing)} requests answered 200 have no log row"
    # The documented drain (docs/cluster.md): out of nginx's list first (reload), then SIGTERM: no client
    # sees an error at all. (The reload's old nginx workers close their idle keep-alive connections to
    # clients; a request written on one at that instant was never read, and a client retries it as the
    # official SDKs do.)
    remaining = cluster.instances[2]

    async def drain_and_stop() -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(cluster.reload, [cluster.instances[0].port])
        await asyncio.to_thread(remaining.stop)

    outcomes, _ = await asyncio.gather(
        cluster.load(150, concurrency=CONCURRENCY, body=PLAIN, retry_disconnects=True), drain_and_stop()
    )
    statuses = Counter(o.status for o in outcomes)
    print(f"documented drain (reload, then SIGTERM) mid-load: {statuses}")
    assert statuses == {200: 150}, [o for o in outcomes if o.status != 200]
    assert remaining.exit_code == 0
    missing = await asyncio.to_thread(wait_rows, postgres_server, postgres_db, {o.request_id for o in outcomes})
    assert not missing, f"{len(missing)} requests answered 200 have no log row"


# -- (c) one cache for every instance ------------------------------------------------------------------------
async def test_an_answer_cached_through_one_instance_is_a_hit_on_another(
    make_cluster: MakeCluster,
    fake_openai: FakeOpenAI,
    postgres_server: PostgresServer,
    postgres_db: str,
    redis_server: RedisServer,
    redis_url: str,
) -> None:
    config = make_config({"openai": openai_provider(fake_openai.url)})
    config["plugins"] = [{"name": "semantic_cache", "enabled": True, "config": {"dimension": 1, "ttl": "1h"}}]
    config.update(shared_blocks(postgres_server, postgres_db, redis_server))
    cluster = make_cluster(config, 2)
    a, b = cluster.instances
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "cache me once"}]}
    headers = {"x-bf-cache-key": "e2e"}
    probe = {**headers, "x-bf-cache-no-store": "true"}  # a miss on B must not store its own entry
    async with aiohttp.ClientSession(trust_env=False) as session:
        async with session.post(a.url("/v1/chat/completions"), json=body, headers=headers) as first:
            assert first.status == 200 and first.headers["x-bf-cache"] == "miss"
            stored = await first.json()
        # The store is written in the background (never awaited by the request): poll B, bounded.
        deadline = time.monotonic() + 5.0
        misses = 0
        while True:
            async with session.post(b.url("/v1/chat/completions"), json=body, headers=probe) as second:
                assert second.status == 200
                verdict, hit_id = second.headers["x-bf-cache"], second.headers.get("x-bf-cache-id")
                answer = await second.json()
            if verdict == "hit-direct" or time.monotonic() > deadline:
                break
            misses += 1
            await asyncio.sleep(0.05)
    assert verdict == "hit-direct"
    assert hit_id == first.headers["x-request-id"] and answer["choices"] == stored["choices"]
    upstream = len(fake_openai.requests_to("/chat/completions"))
    print(f"cache: stored through A, hit on B after {misses} misses on B; upstream calls {upstream}")
    assert upstream == 1 + misses  # the hit never reached the provider


# -- (f) Redis restarted, PostgreSQL stopped, under load ------------------------------------------------------
FINISH_BOUND_S = 20.0  # every request of the load ends (answered or refused) within this: no hang on a store


@pytest.mark.timeout(240)
@pytest.mark.parametrize("policy", [None, "fail_open"])
async def test_redis_restarted_and_postgres_stopped_mid_load_no_request_hangs(
    policy: str | None,
    make_cluster: MakeCluster,
    fake_openai: FakeOpenAI,
    postgres_server: PostgresServer,
    postgres_db: str,
    tmp_path: Path,
) -> None:
    redis = start_redis(tmp_path / "redis-f")  # its own server: this test kills and restarts it
    try:
        fake_openai.always(Reply(usage=USAGE, delay=0.02))
        config = priced_config(
            fake_openai.url,
            budgets=[{"id": "b-f", "max_limit": 1000.0, "reset_duration": "1d"}],
            # Slices of 30 requests (1/16): the load below needs new leases from Redis while it is down.
            rate_limits=[{"id": "r-f", "request_max_limit": 480, "request_reset_duration": "1h"}],
            virtual_keys=[{"id": "vk-f", "name": "f", "value": VK, "budget_id": "b-f", "rate_limit_id": "r-f"}],
        )
        config.update(shared_blocks(postgres_server, postgres_db, redis, context_timeout="1s", dial_timeout="500ms"))
        if policy is not None:
            config["shared_state"]["failure_policy"] = policy
        cluster = make_cluster(config, 2)

        # Redis goes away for 1 s and comes back empty (no persistence), mid-load.
        def bounce() -> None:
            nonlocal redis
            redis = restart_redis(redis, down_s=1.0)

        outcomes, _ = await asyncio.gather(
            cluster.load(300, concurrency=CONCURRENCY, api_key=VK, body=CHAT, pause_s=0.01), _after(0.5, bounce)
        )
        statuses = Counter(o.status for o in outcomes)
        slowest = max(o.elapsed_s for o in outcomes)
        print(f"Redis restarted mid-load ({policy or 'fail_closed'}): {statuses}, slowest {slowest:.2f} s")
        assert 0 not in statuses, [o.error for o in outcomes if o.status == 0]
        assert slowest < FINISH_BOUND_S
        if policy == "fail_open":  # docs/failure-policy.md: admitted and served, the spend owed
            assert statuses == {200: 300}, Counter(o.code for o in outcomes if o.status != 200)
        else:  # the default, fail_closed: refused 503 governance_unavailable at once (a local lease serves)
            assert set(statuses) <= {200, 503}, Counter(o.code for o in outcomes if o.status != 200)
            assert {o.code for o in outcomes if o.status == 503} <= {"governance_unavailable"}
        after = await _until_all_ok(cluster, VK)
        print(f"after Redis returned: all ok again within {after:.2f} s")

        # PostgreSQL stops mid-load: inference never waits on it (config is in memory, log rows are
        # buffered); when it returns the buffered rows are written.
        def pg_down() -> None:
            postgres_server.stop()

        try:
            outcomes, _ = await asyncio.gather(
                cluster.load(150, concurrency=CONCURRENCY, api_key=VK, body=CHAT, pause_s=0.01), _after(0.5, pg_down)
            )
        finally:
            if postgres_server.proc is None:
                postgres_server.start()
        statuses = Counter(o.status for o in outcomes)
        slowest = max(o.elapsed_s for o in outcomes)
        print(f"PostgreSQL stopped mid-load: {statuses}, slowest {slowest:.2f} s")
        assert statuses == {200: 150}, [o for o in outcomes if o.status != 200][:5]
        assert slowest < FINISH_BOUND_S
        ids = {o.request_id for o in outcomes}
        missing = await asyncio.to_thread(wait_rows, postgres_server, postgres_db, ids, 30.0)
        assert not missing, f"{len(missing)} rows buffered during the outage were not written after it"
    finally:
        redis.stop()


async def _until_all_ok(cluster: Cluster, key: str, bound: float = 15.0) -> float:
    """Seconds until 10 requests in a row succeed through nginx (bounded)."""
    started = time.monotonic()
    while time.monotonic() - started < bound:
        outcomes = await cluster.load(10, concurrency=2, api_key=key, body=CHAT)
        if all(o.status == 200 for o in outcomes):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"requests still failing {bound} s after the store returned")


# -- docs/cluster.md "Sizing": the PostgreSQL connections an instance opens stay within the formula ---------------
async def test_postgres_connections_stay_within_the_sizing_formula(
    make_cluster: MakeCluster,
    fake_openai: FakeOpenAI,
    postgres_server: PostgresServer,
    postgres_db: str,
    redis_server: RedisServer,
    redis_url: str,
) -> None:
    c = l_ = 3  # max_open_conns of the config and logs stores
    config = make_config({"openai": openai_provider(fake_openai.url)})
    config["plugins"] = [{"name": "semantic_cache", "enabled": True, "config": {"dimension": 1, "ttl": "1h"}}]
    config.update(shared_blocks(postgres_server, postgres_db, redis_server))
    config["config_store"]["config"]["max_open_conns"] = c
    config["logs_store"]["config"]["max_open_conns"] = l_
    cluster = make_cluster(config, 2)
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    outcomes = await cluster.load(60, concurrency=12, body=body)
    assert {o.status for o in outcomes} == {200}
    async with aiohttp.ClientSession(trust_env=False) as session:
        for gateway in cluster.instances:  # the readers' pool opens on the first /api/logs
            for _ in range(6):
                async with session.get(gateway.url("/api/logs?limit=5")) as response:
                    assert response.status == 200
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{postgres_db}' AND usename = 'bifrost'"
    opened = int(postgres_server.psql(sql))
    formula = (2 * c + l_ + 3) * 1 * 2  # (2C + L + 3) x workers per instance x instances
    print(f"PostgreSQL connections of 2 single-worker instances: {opened} (formula bound {formula})")
    assert 0 < opened <= formula


# -- docs/cluster.md "Moving over": bifrost migrate, then the cluster serves what the single machine had ------
@pytest.mark.timeout(180)
async def test_moving_a_single_machine_over_with_bifrost_migrate(
    make_cluster: MakeCluster,
    start_gateway: StartGateway,
    fake_openai: FakeOpenAI,
    postgres_server: PostgresServer,
    postgres_db: str,
    redis_server: RedisServer,
    redis_url: str,
    tmp_path: Path,
) -> None:
    # The single machine: embedded stores; a virtual key made through the API, and three logged requests.
    file_config = make_config({"openai": openai_provider(fake_openai.url)}, enforce_auth_on_inference=True)
    file_config["governance"] = {"virtual_keys": [{"id": "vk-file", "name": "file", "value": VK}]}
    old = start_gateway(file_config, app_dir=tmp_path / "old")
    async with aiohttp.ClientSession(trust_env=False) as session:
        async with session.post(old.url("/api/governance/virtual-keys"), json={"name": "made-by-api"}) as made:
            assert made.status == 201, await made.text()
            api_key = (await made.json())["virtual_key"]["value"]
        old_ids = set()
        for _ in range(3):
            headers = {"Authorization": f"Bearer {api_key}"}
            async with session.post(old.url("/v1/chat/completions"), json=PLAIN, headers=headers) as response:
                assert response.status == 200
                old_ids.add(response.headers["x-request-id"])
    assert old.stop() == 0  # SIGTERM: logs.db flushed
    # The cluster's file: the same document plus the blocks that say where config now lives.
    cluster_file = tmp_path / "cluster.json"
    cluster_file.write_text(json.dumps({**file_config, **shared_blocks(postgres_server, postgres_db, redis_server)}))
    done = subprocess.run(
        [sys.executable, "-m", "bifrost_cli", "migrate", "--app-dir", str(old.app_dir), "--to", str(cluster_file)],
        capture_output=True,
        text=True,
        env=gateway_env(),
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
    cluster = make_cluster(cluster_file.read_text(), 2)
    async with aiohttp.ClientSession(trust_env=False) as session:
        for gateway in cluster.instances:
            # The API-made key (never in the file) came over, and works on every instance ...
            assert await _chat_status(session, gateway.base_url, api_key) == 200
            # ... and every instance's log pages show the single machine's requests.
            async with session.get(gateway.url("/api/logs?limit=100")) as response:
                assert response.status == 200
                listed = {item["id"] for item in (await response.json())["items"]}
            assert old_ids <= listed, old_ids - listed


# -- docs/cluster.md "Checking that it works": /health per store, /ready and draining -------------------------
async def test_health_lists_every_shared_store_and_drain_flips_ready(
    make_cluster: MakeCluster,
    fake_openai: FakeOpenAI,
    postgres_server: PostgresServer,
    postgres_db: str,
    redis_server: RedisServer,
    redis_url: str,
) -> None:
    config = make_config({"openai": openai_provider(fake_openai.url)}, enforce_auth_on_inference=True)
    config["governance"] = {
        "rate_limits": [{"id": "r-h", "request_max_limit": 100, "request_reset_duration": "1m"}],
        "virtual_keys": [{"id": "vk-h", "name": "h", "value": VK, "rate_limit_id": "r-h"}],
    }
    config["plugins"] = [{"name": "semantic_cache", "enabled": True, "config": {"dimension": 1, "ttl": "1h"}}]
    config.update(shared_blocks(postgres_server, postgres_db, redis_server))
    cluster = make_cluster(config, 2)
    outcomes = await cluster.load(4, concurrency=2, api_key=VK, body=CHAT)  # every store gets used once
    assert {o.status for o in outcomes} == {200}
    target = f"127.0.0.1:{postgres_server.port}/{postgres_db}"
    async with aiohttp.ClientSession(trust_env=False) as session:
        for gateway in cluster.instances:  # one cacheable request each: the cache connects on first use
            headers = {"Authorization": f"Bearer {VK}", "x-bf-cache-key": "health"}
            async with session.post(gateway.url("/v1/chat/completions"), json=CHAT, headers=headers) as response:
                assert response.status == 200
        for gateway in cluster.instances:
            async with session.get(gateway.url("/health")) as response:
                assert response.status == 200
                stores = (await response.json())["stores"]
            assert stores["config"]["engine"] == "postgres" and stores["config"]["target"] == target
            assert stores["logs"]["engine"] == "postgres" and stores["logs"]["target"] == target
            assert stores["shared_state"]["engine"] == "redis"
            assert stores["shared_state"]["target"] == f"127.0.0.1:{redis_server.port}/0"
            assert stores["cache"] is not None
            assert all(s["state"] in ("up", "standby") for s in stores.values() if s), stores
        a, b = cluster.instances
        # Draining A: its /ready turns 503 (a load balancer with active checks takes it out), B's stays 200,
        # and A still serves what reaches it.
        async with session.post(a.url("/api/drain"), json={}) as response:
            assert response.status in (200, 202, 204), await response.text()
        for gateway, expected in ((a, 503), (b, 200)):
            async with session.get(gateway.url("/ready")) as response:
                assert response.status == expected
        assert await _chat_status(session, a.base_url, VK) == 200
        async with session.delete(a.url("/api/drain")) as response:
            assert response.status in (200, 202, 204)
        async with session.get(a.url("/ready")) as response:
            assert response.status == 200
    # The tables docs/cluster.md says appear in the database (the log and cache stores make theirs on their
    # first connection, in the background: polled, bounded).
    documented = {"bifrost_config_migrations", "bifrost_config_document", "bifrost_config_meta", "bifrost_logs"}
    documented |= {"bifrost_logs_default", "bifrost_logs_pairs", "bifrost_logs_migrations"}
    documented |= {"bifrost_cache_entries", "bifrost_cache_tombstones", "bifrost_cache_migrations"}
    sql = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    deadline = time.monotonic() + 10.0
    tables = set(postgres_server.psql(sql, postgres_db).split())
    while not documented <= tables and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        tables = set(postgres_server.psql(sql, postgres_db).split())
    assert documented <= tables, documented - tables


# -- docs/cluster.md "nginx": the UI's live feed through nginx shows every instance's requests ---------------
async def test_the_live_feed_through_nginx_shows_every_instance(
    make_cluster: MakeCluster,
    fake_openai: FakeOpenAI,
    postgres_server: PostgresServer,
    postgres_db: str,
    redis_server: RedisServer,
    redis_url: str,
) -> None:
    config = make_config({"openai": openai_provider(fake_openai.url)})
    config.update(shared_blocks(postgres_server, postgres_db, redis_server))
    cluster = make_cluster(config, 2)
    wanted: set[str] = set()
    seen: set[str] = set()
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.ws_connect(cluster.url.replace("http", "ws") + "/ws") as ws,
    ):
        for gateway in cluster.instances:  # one request straight to each instance, whichever the feed is on
            async with session.post(gateway.url("/v1/chat/completions"), json=PLAIN) as response:
                assert response.status == 200
                wanted.add(response.headers["x-request-id"])
        deadline = time.monotonic() + 10.0
        while not wanted <= seen and time.monotonic() < deadline:
            with contextlib.suppress(asyncio.TimeoutError):
                message = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                if message.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(message.data)
                    seen |= {item.get("id") for item in data.get("items", [])}
    assert wanted <= seen, f"the feed missed {wanted - seen}"
