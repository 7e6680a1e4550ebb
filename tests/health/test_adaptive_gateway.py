"""`load_balancing: "adaptive"` in a real gateway: a provider's traffic moves away from a slow key and
back once it is fast again (shares of requests, counted by the fake per key; never timings)."""

from __future__ import annotations

import time

from fakes import FakeOpenAI, Reply
from fakes.recorder import RecordedRequest
from harness import StartGateway, custom_provider, make_config, openai_provider
from harness.config import key

from .helpers import ask, health_of

WINDOW_S = 4.0


def _share_of_b(fake: FakeOpenAI, gateway: object, n: int) -> float:
    before = sum(1 for r in fake.requests if r.bearer == "sk-b")
    for _ in range(n):
        ask(gateway)  # type: ignore[arg-type]
    after = sum(1 for r in fake.requests if r.bearer == "sk-b")
    return (after - before) / n


def test_adaptive_balancing_shifts_traffic_away_from_a_slow_key_and_back(start_gateway: StartGateway) -> None:
    slow = {"on": True}

    def responder(rec: RecordedRequest) -> Reply | None:
        return Reply(delay=0.25) if slow["on"] and rec.bearer == "sk-b" else None

    with FakeOpenAI(keys=("sk-a", "sk-b"), name="fake-openai") as fake:
        assert isinstance(fake, FakeOpenAI)
        fake.responder = responder
        entry = openai_provider(fake.url, (key("sk-a", name="a"), key("sk-b", name="b")))
        entry["load_balancing"] = "adaptive"
        entry["circuit_breaker"] = {"window_seconds": WINDOW_S}
        gateway = start_gateway(make_config({"openai": entry}))
        _share_of_b(fake, gateway, 10)  # both keys get samples
        assert _share_of_b(fake, gateway, 40) < 0.25  # equal weights, but b is slow: a small floor share
        keys = health_of(gateway)["keys"]
        assert keys["b"]["latency_ewma_seconds"] > keys["a"]["latency_ewma_seconds"]

        slow["on"] = False  # b recovers; its slow samples age out of the window
        time.sleep(WINDOW_S + 0.2)
        _share_of_b(fake, gateway, 10)
        assert _share_of_b(fake, gateway, 60) > 0.3  # back to about half


def test_weighted_balancing_ignores_latency(start_gateway: StartGateway) -> None:
    def responder(rec: RecordedRequest) -> Reply | None:
        return Reply(delay=0.1) if rec.bearer == "sk-b" else None

    with FakeOpenAI(keys=("sk-a", "sk-b"), name="fake-openai") as fake:
        assert isinstance(fake, FakeOpenAI)
        fake.responder = responder
        entry = openai_provider(fake.url, (key("sk-a", name="a"), key("sk-b", name="b")))
        gateway = start_gateway(make_config({"openai": entry}))
        _share_of_b(fake, gateway, 10)
        assert _share_of_b(fake, gateway, 40) > 0.3


def test_an_adaptive_model_group_shifts_traffic_away_from_a_slow_target_and_back(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    slow = {"on": True}
    fake_openai.responder = lambda rec: Reply(delay=0.25) if slow["on"] else None
    config = make_config(
        {"openai": openai_provider(fake_openai.url), "backup": custom_provider(fake_openai_2.url, ("sk-fake-2",))}
    )
    for entry in config["providers"].values():
        entry["circuit_breaker"] = {"window_seconds": WINDOW_S}
    config["model_groups"] = {
        "chat": {
            "targets": [{"model": "openai/gpt-4o-mini", "weight": 1}, {"model": "backup/gpt-4o-mini", "weight": 1}],
            "strategy": "adaptive",
        }
    }
    gateway = start_gateway(config)

    def share_of_slow(n: int) -> float:
        before = len(fake_openai.requests)
        for _ in range(n):
            ask(gateway, model="chat")
        return (len(fake_openai.requests) - before) / n

    share_of_slow(10)
    assert share_of_slow(40) < 0.25
    slow["on"] = False
    time.sleep(WINDOW_S + 0.2)
    share_of_slow(10)
    assert share_of_slow(60) > 0.3
