"""Issue 14 item 3: what governance does when the shared-state store (a real redis-server) goes down
mid-load and comes back, through real gateway processes and the official SDKs (docs/failure-policy.md).

- fail_closed (the default): once the local lease is used up, a governed request is refused with 503
  `governance_unavailable` in its ingress's own error shape, naming neither the store nor a secret, and
  without waiting for the store; after the restart, counting resumes.
- fail_open: every request of the load is served; what was spent while Redis was down is owed and added
  to the counter once Redis answers again, so the counter ends equal to the requests served.
- Either way no request hangs (each is bounded, the slowest is reported), and /health shows the shared
  store down, then up.

Redis is stopped with SHUTDOWN SAVE and started again on the same port from its dump: a restart keeps
the data, so the counter can be compared with what was served.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from fakes import FakeOpenAI
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from harness import Gateway
from harness.config import make_config, openai_provider
from harness.process import StartGateway
from harness.redis import RedisServer, start_redis

from runtime.config.load import ConfigError
from runtime.config.model import SharedStateConfig
from runtime.config.shared_state import parse_shared_state
from runtime.core.context import RequestContext
from runtime.errors import GatewayError
from runtime.governance import ledger as ledger_module
from runtime.governance.limits import BudgetAndRateLimits
from runtime.governance.model import Caller, RateLimit
from runtime.stores.shared import SharedStateError
from runtime.stores.shared_redis import RedisSharedState
from runtime.stores.shared_sqlite import SQLiteSharedState

VK = "sk-bf-policy-0001"
MESSAGES = [{"role": "user", "content": "hello"}]
REQUEST_BOUND_S = 10.0  # no request of the load may take longer (the store timeout here is 1 s)
POLL_S = 10.0  # bound on waiting for a state change (recovery, idle return)
IDLE_WAIT_S = 30.0  # the ledger returns idle leases after 5 s, swept every 5 s


def policy_config(fake_url: str, redis: RedisServer, policy: str, limit: int) -> dict[str, Any]:
    config = make_config({"openai": openai_provider(fake_url)}, enforce_auth_on_inference=True)
    config["governance"] = {
        "rate_limits": [{"id": "rl-policy", "request_max_limit": limit, "request_reset_duration": "1h"}],
        "virtual_keys": [{"id": "vk-policy", "name": "policy", "value": VK, "rate_limit_id": "rl-policy"}],
    }
    config["shared_state"] = {
        "type": "redis",
        "failure_policy": policy,
        "config": {"addr": f"127.0.0.1:{redis.port}", "context_timeout": "1s", "dial_timeout": "500ms"},
    }
    return config


def get_json(gw: Gateway, path: str) -> tuple[int, dict[str, Any]]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(gw.url(path), timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def shared_state_view(gw: Gateway) -> dict[str, Any]:
    status, body = get_json(gw, "/health")
    assert status == 200  # liveness, whatever the stores say
    view: dict[str, Any] = body["stores"]["shared_state"]
    view["overall"] = body["status"]
    return view


def metrics_text(gw: Gateway) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(gw.url("/metrics"), timeout=10) as response:
        return str(response.read().decode())


def wait_state(gw: Gateway, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + POLL_S
    view = shared_state_view(gw)
    while view["state"] != state and time.monotonic() < deadline:
        time.sleep(0.1)
        view = shared_state_view(gw)
    assert view["state"] == state, view
    return view


def counter(redis: RedisServer) -> float:
    keys = redis.keys("bifrost:c:0:0:gov:rl:rl-policy:requests:*")
    assert len(keys) <= 1, keys
    value = redis.get(keys[0]) if keys else None
    return float(value) if value is not None else 0.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    """A redis-server of this test only: it is stopped and restarted (the session's is shared)."""
    server = start_redis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


def chat(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=8)  # type: ignore[arg-type]


class Load:
    """`workers` threads sending governed chat requests back to back until stopped; each result kept."""

    def __init__(self, gw: Gateway, workers: int) -> None:
        self.gw = gw
        self.results: list[tuple[float, float, int]] = []  # (start, seconds, status)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]
        self._lock = threading.Lock()

    def _run(self) -> None:
        with self.gw.client(api_key=VK, timeout=60.0) as client:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    chat(client)
                    status = 200
                except openai.APIStatusError as err:
                    status = err.status_code
                except openai.APIConnectionError:
                    status = -1
                with self._lock:
                    self.results.append((start, time.monotonic() - start, status))

    def count(self) -> int:
        with self._lock:
            return len(self.results)

    def wait_more(self, n: int) -> None:
        target = self.count() + n
        deadline = time.monotonic() + 60
        while self.count() < target:
            assert time.monotonic() < deadline, "the load stalled"
            time.sleep(0.02)

    def wait_until(self, done: Any) -> None:
        """Until `done(results)` holds (bounded); results are (start, seconds, status) in finishing order."""
        deadline = time.monotonic() + 60
        while True:
            with self._lock:
                if self.results and done(self.results):
                    return
            assert time.monotonic() < deadline, "the load never reached the expected state"
            time.sleep(0.02)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_BOUND_S * 3)
        assert not any(thread.is_alive() for thread in self._threads), "a request of the load never finished"


def test_fail_closed_refuses_with_503_in_every_ingress_shape_then_recovers(
    own_redis: RedisServer, fake_openai: FakeOpenAI, start_gateway: StartGateway
) -> None:
    gw = start_gateway(policy_config(fake_openai.url, own_redis, "fail_closed", 2000))
    served = 0
    with Load(gw, workers=3) as load:
        load.wait_more(20)
        assert shared_state_view(gw)["state"] == "up"
        own_redis.shutdown()
        down_at = load.count()
        # The local lease (1/16 of the limit, plus what was refilled ahead) serves on, then refusals.
        load.wait_until(lambda results: results[-1][2] == 503)
        served_from_lease = sum(1 for _, _, status in load.results[down_at:] if status == 200)
        view = wait_state(gw, "down")
        assert view["overall"] == "degraded" and view["engine"] == "redis" and view["failures"] >= 1
        assert str(own_redis.port) in view["target"]  # where (host:port/db), never a password
        assert 'bifrost_store_up{store="shared_state"} 0.0' in metrics_text(gw)
        assert 'bifrost_store_up{store="config"} 1.0' in metrics_text(gw)

        timings: dict[str, float] = {}
        with gw.client(api_key=VK) as client:
            t = time.monotonic()
            with pytest.raises(openai.APIStatusError) as chat_err:
                chat(client)
            timings["openai"] = time.monotonic() - t
            t = time.monotonic()
            with pytest.raises(openai.APIStatusError) as responses_err:
                client.responses.create(model="openai/gpt-4o-mini", input="hi")
            timings["responses"] = time.monotonic() - t
        refusal = chat_err.value
        assert refusal.status_code == 503
        assert refusal.body["type"] == "governance_unavailable"  # type: ignore[index]
        assert refusal.body["code"] == "governance_unavailable"  # type: ignore[index]
        raw = refusal.response.text + responses_err.value.response.text
        assert str(own_redis.port) not in raw and "127.0.0.1" not in raw and VK not in raw
        assert responses_err.value.status_code == 503
        assert responses_err.value.body["code"] == "governance_unavailable"  # type: ignore[index]
        with anthropic.Anthropic(base_url=gw.base_url + "/anthropic", api_key=VK, max_retries=0) as ac:
            t = time.monotonic()
            with pytest.raises(anthropic.APIStatusError) as anthropic_err:
                ac.messages.create(model="openai/gpt-4o-mini", max_tokens=8, messages=MESSAGES)  # type: ignore[arg-type]
            timings["anthropic"] = time.monotonic() - t
        assert anthropic_err.value.status_code == 503
        anthropic_body = anthropic_err.value.body
        assert isinstance(anthropic_body, dict) and anthropic_body["type"] == "error"
        assert "cannot be checked" in anthropic_body["error"]["message"]
        options = types.HttpOptions(
            base_url=gw.base_url + "/genai", timeout=30_000, retry_options=types.HttpRetryOptions(attempts=1)
        )
        with genai.Client(api_key=VK, http_options=options) as gc:
            t = time.monotonic()
            with pytest.raises(genai_errors.APIError) as genai_err:
                gc.models.generate_content(model="openai/gpt-4o-mini", contents="hello")
            timings["genai"] = time.monotonic() - t
        assert genai_err.value.code == 503
        assert "cannot be checked" in (genai_err.value.message or "")

        own_redis.start()
        at_restart = load.count()
        # The store is retried after the latch (about 1 s): counting resumes.
        load.wait_until(lambda results: len(results) > at_restart and results[-1][2] == 200)
        load.wait_more(20)
        view = wait_state(gw, "up")
        assert view["overall"] == "ok"
        assert 'bifrost_store_up{store="shared_state"} 1.0' in metrics_text(gw)
    statuses = {status for _, _, status in load.results}
    slowest = max(seconds for _, seconds, _ in load.results)
    refused = sum(1 for _, _, status in load.results if status == 503)
    served = sum(1 for _, _, status in load.results if status == 200)
    print(
        f"fail_closed: {len(load.results)} requests, {served_from_lease} served from the lease after Redis "
        f"stopped, {refused} refused, slowest {slowest:.3f}s; the four shapes refused in {timings}"
    )
    assert statuses == {200, 503}
    assert slowest < REQUEST_BOUND_S and max(timings.values()) < REQUEST_BOUND_S
    assert served_from_lease <= 2 * (2000 // 16) + 3  # a lease, one refill ahead, the requests in flight
    # Refused requests spent nothing: once idle leases are back, the counter is exactly what was served.
    deadline = time.monotonic() + IDLE_WAIT_S
    while counter(own_redis) != served and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counter(own_redis) == served


def test_fail_open_serves_through_a_redis_restart_and_records_what_was_owed(
    own_redis: RedisServer, fake_openai: FakeOpenAI, start_gateway: StartGateway
) -> None:
    limit = 2000  # leases of 125: the outage below outlasts the local lease
    gw = start_gateway(policy_config(fake_openai.url, own_redis, "fail_open", limit))
    with Load(gw, workers=4) as load:
        load.wait_more(20)
        own_redis.shutdown()
        down_at = load.count()
        load.wait_more(300)  # well past the local lease (125 + refill): many served without Redis
        view = wait_state(gw, "down")
        assert view["overall"] == "degraded"
        served_down = load.count() - down_at
        own_redis.start()
        load.wait_more(50)
        wait_state(gw, "up")
        load.wait_more(20)
    statuses = {status for _, _, status in load.results}
    slowest = max(seconds for _, seconds, _ in load.results)
    print(
        f"fail_open: {len(load.results)} requests, {served_down}+ while Redis was down, "
        f"slowest {slowest:.3f}s, statuses {sorted(statuses)}"
    )
    assert statuses == {200}  # every request served
    assert slowest < REQUEST_BOUND_S
    assert served_down > 2 * (limit // 16)  # more than any lease could cover: owed amounts were needed
    served = len(load.results)
    # Owed requests are added once Redis answers, and unused leases go back when idle: the counter in
    # the restarted Redis ends equal to the requests served, none lost, none twice.
    deadline = time.monotonic() + IDLE_WAIT_S
    while counter(own_redis) != served and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counter(own_redis) == served


async def test_redis_engine_reconnects_its_pool_and_subscriber_after_a_restart(own_redis: RedisServer) -> None:
    """The engine under health_sync and the ledger: after Redis restarts, commands work again without a
    new store object, the subscription is re-established by the reader, and `status` follows."""
    store = RedisSharedState(own_redis.url, timeout_s=1.0, connect_timeout_s=0.5)
    try:
        sub = await store.subscribe("breakers")
        await store.publish("breakers", "one")
        async with asyncio.timeout(5):
            assert await anext(sub) == "one"
        assert store.status.state == "up"
        own_redis.shutdown()
        with pytest.raises(SharedStateError):
            await store.incr("k")
        assert store.status.state == "down" and "127.0.0.1" in (store.status.error or "")
        own_redis.start()
        deadline = time.monotonic() + POLL_S
        received = None
        while received is None:  # the reader resubscribes within its retry delay; publish until heard
            assert time.monotonic() < deadline, "no notification after the restart"
            try:
                await store.publish("breakers", "again")
                async with asyncio.timeout(0.5):
                    received = await anext(sub)
            except Exception:
                await asyncio.sleep(0.2)
        assert received == "again"
        assert await store.incr("k") == 1
        assert store.status.state == "up"
        await sub.close()
    finally:
        await store.close()


# -- the ledger in-process: a real SQLite store, and a Redis address that never answers ------------------


class Blackhole:
    """A TCP server that accepts and never answers: a stalled store (each operation hits its timeout)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while await reader.read(65536):
                pass
        finally:
            writer.close()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def __aexit__(self, *_exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def price(provider: str, model: str) -> tuple[float, float]:
    return (0.0, 1 / 1024)


def make_ctx(caller: Caller, n: list[int] = [0]) -> RequestContext:  # noqa: B006 (a counter on purpose)
    n[0] += 1
    ctx = RequestContext(f"policy-{n[0]}", "chat")
    ctx.caller = caller
    ctx.body = {"model": "openai/gpt-4o-mini", "messages": MESSAGES, "max_tokens": 8}
    ctx.input_raw = b"{}"
    return ctx


def governed_caller(limit: int = 160) -> Caller:
    rl = RateLimit("rl-unit", request_max_limit=limit, request_reset_duration="1h")
    return Caller("vk-unit", rate_limits=(rl,))


async def test_an_idle_request_lease_goes_back_to_the_store(tmp_path: Path) -> None:
    """Request holds are settled at the end of the request: before, their pool never became idle (it
    counted every request as still in flight), so its unused lease was only returned at shutdown."""
    store = SQLiteSharedState(tmp_path / "state.db")
    clock = Clock(1_800_000_000.0)
    limits = BudgetAndRateLimits(store, price, clock=clock, idle_return_s=5)
    try:
        caller = governed_caller(160)  # leases of 10
        for _ in range(3):
            ctx = make_ctx(caller)
            await limits.pre_hook(ctx)
            ctx.status = 200
            limits.on_finish(ctx)
        pool = limits.ledger._pools["rl:rl-unit:requests"]
        assert await store.total(pool.key) >= 10  # leased, mostly unused
        clock.now += 6
        await limits.ledger.return_idle()
        assert await store.total(pool.key) == 3  # exactly what was spent
    finally:
        await limits.close()
        await store.close()


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
async def test_a_stalled_store_costs_one_timeout_then_decisions_are_immediate(
    policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_module, "LATCH_S", 60.0)  # the latch outlasts this test on a slow machine
    async with Blackhole() as port:
        store = RedisSharedState(f"127.0.0.1:{port}", timeout_s=0.5, connect_timeout_s=0.5)
        limits = BudgetAndRateLimits(store, price, failure_policy=policy)
        try:
            caller = governed_caller()
            timings = []
            outcomes = []
            for _ in range(5):
                ctx = make_ctx(caller)
                started = time.monotonic()
                try:
                    await limits.pre_hook(ctx)
                    outcomes.append("admitted")
                    ctx.status = 200
                    limits.on_finish(ctx)
                except GatewayError as err:
                    outcomes.append(f"{err.status} {err.type}")
                timings.append(time.monotonic() - started)
            print(f"{policy}: decisions took {[round(t, 3) for t in timings]} s (store timeout 0.5 s)")
            expected = "admitted" if policy == "fail_open" else "503 governance_unavailable"
            assert outcomes == [expected] * 5
            # One store operation timed out (the first decision); the next four never asked the store.
            assert limits.ledger.store_failures == 1
            assert store.status.state == "down" and "no answer within 0.5 s" in (store.status.error or "")
            if policy == "fail_open":
                # Five requests owed. The rolling window's anchor was never read, so they wait keyed by the
                # second they were admitted in (their window is computed when the store answers).
                assert 1 <= limits.ledger.owed <= 2
                assert sum(amount for _, amount in limits.ledger._owed.values()) == 5
        finally:
            await asyncio.wait_for(limits.close(), 5)  # closing with the store down never hangs
            await store.close()


def test_failure_policy_is_parsed_with_its_default_and_checked() -> None:
    redis = {"type": "redis", "config": {"addr": "127.0.0.1:6379"}}
    parsed = parse_shared_state(redis, {})
    assert parsed is not None and parsed.failure_policy == "fail_closed"  # hard ceilings by default
    parsed = parse_shared_state({**redis, "failure_policy": "fail_open"}, {})
    assert parsed is not None and parsed.failure_policy == "fail_open" and parsed.type == "redis"
    # The embedded engine follows it too, even with the block switched off.
    assert parse_shared_state({"failure_policy": "fail_open"}, {}) == SharedStateConfig("sqlite", None, "fail_open")
    assert parse_shared_state({**redis, "enabled": False, "failure_policy": "fail_open"}, {}) == SharedStateConfig(
        "sqlite", None, "fail_open"
    )
    assert parse_shared_state({**redis, "enabled": False}, {}) is None
    with pytest.raises(ConfigError) as err:
        parse_shared_state({**redis, "failure_policy": "fail_sometimes"}, {})
    assert "shared_state.failure_policy" in str(err.value) and "fail_closed, fail_open" in str(err.value)


async def test_a_lease_that_cannot_be_returned_is_kept_and_returned_once_redis_is_back(
    own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_module, "LATCH_S", 0.0)  # retried as soon as asked (the sweep's pace here)
    store = RedisSharedState(own_redis.url, timeout_s=1.0, connect_timeout_s=0.5)
    clock = Clock(time.time())
    limits = BudgetAndRateLimits(store, price, clock=clock, idle_return_s=5)
    try:
        ctx = make_ctx(governed_caller(160))  # leases of 10
        await limits.pre_hook(ctx)
        ctx.status = 200
        limits.on_finish(ctx)
        pool = limits.ledger._pools["rl:rl-unit:requests"]
        leased = await store.total(pool.key)
        assert leased >= 10
        own_redis.shutdown()
        clock.now += 6
        await limits.ledger.return_idle()  # Redis is down: nothing raised, the lease is kept
        assert pool.avail == leased - 1
        own_redis.start()
        await limits.ledger.return_idle()  # the next sweep returns it
        assert pool.avail == 0 and await store.total(pool.key) == 1
    finally:
        await limits.close()
        await store.close()
