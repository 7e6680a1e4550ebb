"""Provider edits while traffic flows: no request fails, no edit is lost, workers agree."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from fakes import FakeOpenAI
from harness import Gateway, StartGateway, make_config, openai_provider

from .conftest import Api, read_config

TRAFFIC_S = 4.0


def _traffic(api: Api, stop: threading.Event, results: list[int]) -> None:
    while not stop.is_set():
        results.append(api.chat("openai/gpt-4o-mini", "steady").status)


def test_concurrent_edits_while_traffic_flows(admin_gateway: Gateway, fake_openai_2: FakeOpenAI) -> None:
    api = Api(admin_gateway.base_url)
    stop = threading.Event()
    results: list[int] = []
    senders = [threading.Thread(target=_traffic, args=(api, stop, results)) for _ in range(4)]
    for t in senders:
        t.start()
    try:

        def churn(i: int) -> list[int]:
            statuses = []
            # Re-weight the provider the traffic uses, with its lane resized on odd rounds.
            view = api.get("/api/providers/openai").body
            view["keys"][0]["weight"] = 1 + i
            view["concurrency_and_buffer_size"] = {"concurrency": 50 + (i % 2), "buffer_size": 500}
            statuses.append(api.put("/api/providers/openai", view).status)
            # And add an unrelated provider from each thread: none of them may be lost.
            statuses.append(
                api.post(
                    "/api/providers",
                    {
                        "name": f"extra-{i}",
                        "custom_provider_config": {"base_provider_type": "openai"},
                        **openai_provider(fake_openai_2.url, keys=({"name": "k", "value": "sk-fake-2"},)),
                    },
                ).status
            )
            return statuses

        deadline = time.monotonic() + TRAFFIC_S
        with ThreadPoolExecutor(8) as pool:
            statuses = [s for batch in pool.map(churn, range(16)) for s in batch]
        time.sleep(max(0.0, deadline - time.monotonic()))
    finally:
        stop.set()
        for t in senders:
            t.join(30)
    assert set(statuses) <= {200, 201}, statuses
    assert results and set(results) == {200}, {s: results.count(s) for s in set(results)}
    stored = read_config(admin_gateway)["providers"]
    assert {f"extra-{i}" for i in range(16)} <= set(stored)
    assert stored["openai"]["keys"][0]["value"] == "sk-fake-1"
    live = {p["name"] for p in api.get("/api/providers").body["providers"]}
    assert {f"extra-{i}" for i in range(16)} <= live
    assert api.chat("extra-7/gpt-4o-mini").status == 200


def test_edit_reaches_every_worker(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}), args=("--workers", "2"))
    api = Api(gateway.base_url)
    pids = {api.get("/health").body["pid"] for _ in range(40)}
    assert len(pids) == 2, "SO_REUSEPORT should spread new connections over both workers"
    created = api.post(
        "/api/providers",
        {
            "name": "late",
            "custom_provider_config": {"base_provider_type": "openai"},
            **openai_provider(fake_openai_2.url, keys=({"name": "k", "value": "sk-fake-2"},)),
        },
    )
    assert created.status == 201
    time.sleep(2.5)  # the other worker polls config.json once a second
    statuses = [api.chat("late/gpt-4o-mini").status for _ in range(30)]
    assert set(statuses) == {200}, statuses


def test_in_flight_request_survives_edit_and_delete(admin_gateway: Gateway, fake_openai: FakeOpenAI) -> None:
    from fakes.reply import Reply

    api = Api(admin_gateway.base_url)
    fake_openai.enqueue(Reply(delay=1.5, content="slow but fine"))
    outcome: list = []
    slow = threading.Thread(target=lambda: outcome.append(api.chat("openai/gpt-4o-mini", "slow")))
    slow.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and api.get("/api/providers/openai").body["lane"]["in_flight"] == 0:
        time.sleep(0.02)
    view = api.get("/api/providers/openai").body
    assert view["lane"]["in_flight"] == 1
    view["concurrency_and_buffer_size"] = {"concurrency": 7, "buffer_size": 70}  # a new lane
    assert api.put("/api/providers/openai", view).status == 200
    assert api.delete("/api/providers/openai").status == 200
    slow.join(10)
    assert outcome and outcome[0].status == 200, outcome
    assert outcome[0].body["choices"][0]["message"]["content"] == "slow but fine"
