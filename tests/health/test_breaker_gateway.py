"""Circuit breakers in a real gateway (runtime/core/health.py hooked into Engine._run), against fake
OpenAI providers whose request counters prove which target was (not) asked.

The primary is down for a while: after `consecutive_failures` its breaker opens and requests go
straight to the fallback (the primary sees none), one probe goes after the cooldown, a failed probe
re-opens it for longer, and once the primary answers again traffic returns to it."""

from __future__ import annotations

import time
import urllib.request

from fakes import FakeOpenAI, Reply
from harness import StartGateway

from .helpers import SERVER_ERROR, ask, ask_status, chats, get_text, health_of, providers

FALLBACK = ["backup/gpt-4o-mini"]


def test_an_open_breaker_skips_the_primary_until_one_probe_finds_it_recovered(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    fake_openai.always(SERVER_ERROR)
    config = providers(fake_openai, fake_openai_2, consecutive_failures=3, cooldown_seconds=2, max_cooldown_seconds=4)
    gateway = start_gateway(config)
    for _ in range(3):
        assert ask(gateway, fallbacks=FALLBACK).startswith("fake-openai-2:")
    assert chats(fake_openai) == 3
    model = health_of(gateway)["models"]["gpt-4o-mini"]
    assert model["state"] == "open" and model["opens"] == 1 and model["consecutive_failures"] == 3
    assert 0 < model["next_probe_in_seconds"] <= 2

    for _ in range(5):  # open: straight to the fallback, the primary is not asked
        assert ask(gateway, fallbacks=FALLBACK).startswith("fake-openai-2:")
    assert chats(fake_openai) == 3

    time.sleep(2.2)  # the cooldown passes: the next request is the one probe, and it fails
    assert ask(gateway, fallbacks=FALLBACK).startswith("fake-openai-2:")
    assert chats(fake_openai) == 4
    assert ask(gateway, fallbacks=FALLBACK).startswith("fake-openai-2:")
    assert chats(fake_openai) == 4  # re-opened, for twice the cooldown
    model = health_of(gateway)["models"]["gpt-4o-mini"]
    assert model["state"] == "open" and model["opens"] == 2 and 0 < model["next_probe_in_seconds"] <= 4

    fake_openai.always(Reply())  # the primary recovers
    time.sleep(4.2)
    assert ask(gateway, fallbacks=FALLBACK).startswith("fake-openai:")  # the probe succeeds
    assert chats(fake_openai) == 5
    for _ in range(3):
        assert ask(gateway, fallbacks=FALLBACK).startswith("fake-openai:")
    assert chats(fake_openai) == 8
    model = health_of(gateway)["models"]["gpt-4o-mini"]
    assert model["state"] == "closed" and model["consecutive_failures"] == 0
    assert model["latency_ewma_seconds"] is not None and model["latency_ewma_seconds"] > 0
    metrics = get_text(gateway, "/metrics")
    assert 'bifrost_breaker_state{kind="model",provider="openai",target="gpt-4o-mini"} 0.0' in metrics
    assert 'bifrost_breaker_opens_total{kind="model",provider="openai",target="gpt-4o-mini"} 2.0' in metrics
    assert 'bifrost_target_latency_ewma_seconds{model="gpt-4o-mini",provider="openai"}' in metrics


def test_when_every_target_is_open_the_least_bad_is_still_tried(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    fake_openai.always(SERVER_ERROR)
    fake_openai_2.always(SERVER_ERROR)
    config = providers(fake_openai, fake_openai_2, consecutive_failures=2, cooldown_seconds=60)
    config["providers"]["backup"]["circuit_breaker"]["cooldown_seconds"] = 120  # cools down later
    gateway = start_gateway(config)
    for _ in range(2):
        assert ask_status(gateway, fallbacks=FALLBACK) == 500
    assert (chats(fake_openai), chats(fake_openai_2)) == (2, 2)
    assert health_of(gateway)["models"]["gpt-4o-mini"]["state"] == "open"
    assert health_of(gateway, "backup")["models"]["gpt-4o-mini"]["state"] == "open"

    # Both open: the one soonest to cool down (the primary) is tried, once, rather than none.
    assert ask_status(gateway, fallbacks=FALLBACK) == 500
    assert (chats(fake_openai), chats(fake_openai_2)) == (3, 2)
    # A request whose only target is open is still sent.
    assert ask_status(gateway, model="backup/gpt-4o-mini") == 500
    assert (chats(fake_openai), chats(fake_openai_2)) == (3, 3)
    fake_openai_2.always(Reply())
    assert ask(gateway, model="backup/gpt-4o-mini").startswith("fake-openai-2:")  # and closes on success
    assert health_of(gateway, "backup")["models"]["gpt-4o-mini"]["state"] == "closed"


def test_answers_that_are_the_clients_fault_do_not_open_the_breaker(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    fake_openai.always(Reply.error(400, "Invalid value for 'temperature'.", "invalid_request_error"))
    gateway = start_gateway(providers(fake_openai, fake_openai_2, consecutive_failures=2))
    for _ in range(4):
        assert ask(gateway, fallbacks=FALLBACK).startswith("fake-openai-2:")  # invalid: failover
    assert chats(fake_openai) == 4  # every request still tried the primary
    model = health_of(gateway)["models"]["gpt-4o-mini"]
    assert model["state"] == "closed" and model["consecutive_failures"] == 0


def test_breakers_off_keep_trying_the_failing_primary(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    fake_openai.always(SERVER_ERROR)
    gateway = start_gateway(providers(fake_openai, fake_openai_2, enabled=False, consecutive_failures=2))
    for _ in range(5):
        assert ask(gateway, fallbacks=FALLBACK).startswith("fake-openai-2:")
    assert chats(fake_openai) == 5
    assert health_of(gateway) is None


def test_streams_count_and_skip_the_same_way(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    fake_openai.always(SERVER_ERROR)
    gateway = start_gateway(providers(fake_openai, fake_openai_2, consecutive_failures=2, cooldown_seconds=60))
    for _ in range(4):
        with gateway.client() as client:
            stream = client.chat.completions.create(
                model="openai/gpt-4o-mini",
                messages=[{"role": "user", "content": "s"}],
                stream=True,
                extra_body={"fallbacks": FALLBACK},
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text.startswith("fake-openai-2:")
    assert chats(fake_openai) == 2
    assert health_of(gateway)["models"]["gpt-4o-mini"]["state"] == "open"
    assert health_of(gateway, "backup")["models"]["gpt-4o-mini"]["latency_ewma_seconds"] is not None


def test_model_names_from_clients_are_shown_safely(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI
) -> None:
    gateway = start_gateway(providers(fake_openai, fake_openai_2))
    body = b'{"model":"openai/gpt-\\ud800x","messages":[{"role":"user","content":"hi"}]}'  # a lone surrogate
    request = urllib.request.Request(gateway.url("/v1/chat/completions"), data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30) as answer:
        assert answer.status == 200
    models = health_of(gateway)["models"]
    assert models["gpt-\ufffdx"]["state"] == "closed"
    assert 'target="gpt-\ufffdx"' in get_text(gateway, "/metrics")
