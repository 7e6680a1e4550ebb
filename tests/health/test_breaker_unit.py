"""The breaker state machine, the key selector's use of it and the adaptive chooser
(runtime/core/health.py), with an injectable clock: no test waits."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from runtime.config.load import ConfigError, parse_provider
from runtime.config.model import BreakerConfig, KeyConfig, Tuning
from runtime.core.health import (
    CLOSED,
    HALF_OPEN,
    MAX_TARGETS,
    OPEN,
    Breaker,
    ProviderHealth,
    build_health,
    choose,
    least_bad,
)
from runtime.core.keys import KeySelector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CFG = BreakerConfig(consecutive_failures=3, error_rate=0.5, min_requests=10, window_seconds=10, cooldown_seconds=5)


def breaker(cfg: BreakerConfig = CFG) -> tuple[Breaker, Clock]:
    clock = Clock()
    return Breaker(cfg, clock), clock


def test_consecutive_failures_open_then_one_probe_after_the_cooldown() -> None:
    b, clock = breaker()
    assert b.failure() is None and b.failure() is None
    assert b.admit() == -1  # still closed
    assert b.failure() == OPEN
    assert b.admit() is None and b.blocked()
    clock.now += 4.9
    assert b.admit() is None
    clock.now += 0.2
    assert b.current() == HALF_OPEN  # due a probe
    assert b.admit() == HALF_OPEN  # this request is the probe
    assert b.admit() is None and b.admit() is None  # every other request still skips
    assert b.success(0.1) == CLOSED
    assert b.admit() == -1 and b.failures == 0 and b.window() == (0, 0, 0.0)


def test_a_failed_probe_reopens_for_longer_capped() -> None:
    cfg = BreakerConfig(consecutive_failures=1, cooldown_seconds=5, max_cooldown_seconds=12)
    b, clock = breaker(cfg)
    assert b.failure() == OPEN and b.cooldown == 5
    for expected in (10, 12, 12):
        clock.now += b.cooldown
        assert b.admit() == HALF_OPEN
        assert b.failure() == OPEN
        assert b.cooldown == expected
        clock.now += expected - 0.1
        assert b.admit() is None
        clock.now += 0.1 - b.cooldown  # back to the moment it opened, for the next round
    assert b.opens == 4


def test_a_probe_that_never_reports_frees_its_slot_after_a_cooldown() -> None:
    b, clock = breaker()
    for _ in range(3):
        b.failure()
    clock.now += 5
    assert b.admit() == HALF_OPEN
    clock.now += 4
    assert b.admit() is None
    clock.now += 1.5
    assert b.admit() == -1  # another probe


def test_error_rate_over_the_window_opens_only_with_enough_requests() -> None:
    b, _ = breaker()
    for _ in range(4):  # 4 of 8: the rate is there, the volume is not
        b.success(0.01)
        assert b.failure() is None
    b.success(0.01)
    assert b.failure() == OPEN  # 5 of 10 = 0.5
    # The window slides: after window_seconds the old outcomes no longer count.
    b2, clock2 = breaker()
    for _ in range(5):
        b2.success(0.01)
        b2.failure()
    clock2.now += 20
    assert b2.window() == (0, 0, 0.0)


def test_adopt_takes_another_workers_transitions() -> None:
    b, clock = breaker()
    b.adopt(OPEN, 8)
    assert b.admit() is None
    clock.now += 8
    assert b.admit() == HALF_OPEN
    b.adopt(HALF_OPEN, 5)  # a probe is out elsewhere: keep skipping
    b2, _ = breaker()
    b2.adopt(HALF_OPEN, 5)
    assert b2.blocked()
    b2.adopt(CLOSED, 0)
    assert b2.admit() == -1


def test_provider_health_counts_only_failures_that_say_something() -> None:
    clock = Clock()
    health = ProviderHealth("openai", CFG, clock=clock)
    seen: list[tuple[str, str, int]] = []
    health.notify = lambda p, kind, name, state, s: seen.append((kind, name, state))
    for klass in ("invalid", "context_length", "content_policy", None):
        for _ in range(5):
            health.failed("gpt", "k1", klass)
    assert health.tripped == 0 and not seen
    for _ in range(3):
        health.failed("gpt", "k2", "auth")  # the key's fault, not the model's
    assert seen == [("key", "k2", OPEN)] and not health.target_blocked("gpt")
    for _ in range(3):
        health.failed("gpt", "k1", "server")
    assert ("model", "gpt", OPEN) in seen and health.target_blocked("gpt")
    assert not health.admit_target("gpt")
    clock.now += 5
    assert health.admit_target("gpt")  # the probe
    assert ("model", "gpt", HALF_OPEN) in seen
    health.succeeded("gpt", "k1", 0.2)
    assert seen[-2:] == [("model", "gpt", CLOSED), ("key", "k1", CLOSED)]  # k1 had failed 3 times too
    assert not health.target_blocked("gpt")
    view = health.view()
    assert view["models"]["gpt"]["state"] == "closed"
    assert view["keys"]["k2"]["state"] == "half_open"  # cooled down: due a probe
    assert view["keys"]["k2"]["opens"] == 1 and view["models"]["gpt"]["opens"] == 1


def test_tracked_models_are_bounded() -> None:
    health = ProviderHealth("openai", CFG)
    for i in range(MAX_TARGETS + 50):
        health.failed(f"model-{i}", None, "server")
    assert len(health.targets) == MAX_TARGETS
    assert health.admit_target(f"model-{MAX_TARGETS + 10}")  # untracked: never skipped


def test_breakers_off_and_weighted_means_no_health_at_all() -> None:
    assert build_health("x", BreakerConfig(enabled=False), "weighted") is None
    stats_only = build_health("x", BreakerConfig(enabled=False, consecutive_failures=1), "adaptive")
    assert stats_only is not None
    stats_only.failed("m", "k", "server")
    assert stats_only.tripped == 0 and stats_only.admit_target("m")


def test_least_bad_prefers_the_soonest_to_cool_down_then_the_lowest_error_rate() -> None:
    clock = Clock()
    a, b, c = (Breaker(CFG, clock) for _ in range(3))
    a.trip(30)
    b.failure()
    b.trip(10)
    c.trip(10)  # same wait as b, no failure in its window
    assert least_bad(["a", "b", "c"], [a, b, c], clock.now) == "c"
    assert least_bad(["a", "b"], [a, b], clock.now) == "b"


KEYS = (KeyConfig("k1", "sk-1"), KeyConfig("k2", "sk-2"))


def test_key_selector_skips_an_open_key_and_tries_the_least_bad_when_all_are_open() -> None:
    clock = Clock()
    health = ProviderHealth("openai", CFG, clock=clock)
    keys = KeySelector(KEYS, random.Random(1), health=health)
    keys.set_aside(KEYS[0], 60)  # a 401: the key's breaker opens
    assert {keys.select("m").name for _ in range(50)} == {"k2"}
    assert keys.aside() == ["k1"]
    health.trip_key("k2", 30)
    assert {keys.select("m").name for _ in range(20)} == {"k2"}  # soonest to cool down
    clock.now += 30
    assert keys.select("m").name == "k2"  # its probe
    health.succeeded("m", "k2", 0.1)
    assert keys.aside() == ["k1"]


def test_key_selector_without_breakers_keeps_the_plain_cooldown() -> None:
    keys = KeySelector(KEYS, random.Random(1))
    keys.set_aside(KEYS[0], 60)
    assert {keys.select("m").name for _ in range(50)} == {"k2"}


def _shares(pick: object, n: int = 4000) -> dict[str, float]:
    counts: dict[str, int] = {}
    for _ in range(n):
        name = pick()  # type: ignore[operator]
        counts[name] = counts.get(name, 0) + 1
    return {k: v / n for k, v in counts.items()}


def test_choose_shifts_away_from_a_slow_candidate_and_back_when_its_stats_age_out() -> None:
    clock = Clock()
    fast, slow = Breaker(CFG, clock), Breaker(CFG, clock)
    rng = random.Random(7).random
    pick = lambda: choose(["fast", "slow"], [1.0, 1.0], [fast, slow], rng)  # noqa: E731
    assert 0.45 < _shares(pick)["slow"] < 0.55  # no statistics: the weights
    for _ in range(20):
        fast.success(0.01)
        slow.success(0.3)
    shares = _shares(pick)
    assert shares["slow"] < 0.1  # only the exploration floor
    assert shares["slow"] > 0.02  # never starved
    clock.now += 11  # the window has moved on: old latencies no longer count
    assert 0.45 < _shares(pick)["slow"] < 0.55
    for _ in range(20):  # recovered: as fast as the other
        fast.success(0.01)
        slow.success(0.012)
    assert 0.45 < _shares(pick)["slow"] < 0.55


def test_choose_respects_weights_and_errors() -> None:
    clock = Clock()
    never = BreakerConfig(consecutive_failures=1000, min_requests=1000, window_seconds=10)  # statistics only
    a, b = Breaker(never, clock), Breaker(never, clock)
    rng = random.Random(3).random
    assert 0.7 < _shares(lambda: choose(["a", "b"], [3.0, 1.0], [a, b], rng))["a"] < 0.8
    assert _shares(lambda: choose(["a", "b"], [0.0, 1.0], [a, b], rng)) == {"b": 1.0}
    for _ in range(10):
        a.success(0.01)
        b.success(0.01)
        b.failure()
        b.failure()
        b.failure()  # 75 % failures: its cost is four times a's
    assert _shares(lambda: choose(["a", "b"], [1.0, 1.0], [a, b], rng))["b"] < 0.1


def test_config_fields_are_checked_with_their_path() -> None:
    cfg = parse_provider(
        "openai",
        {"keys": [{"value": "sk"}], "circuit_breaker": {"cooldown_seconds": 2}, "load_balancing": "adaptive"},
        {},
        Tuning(),
    )
    assert cfg.circuit_breaker.cooldown_seconds == 2 and cfg.circuit_breaker.consecutive_failures == 5
    assert cfg.load_balancing == "adaptive"
    assert parse_provider("openai", {"keys": [{"value": "sk"}]}, {}, Tuning()).circuit_breaker == BreakerConfig()
    bad = {
        '{"consecutive": 3}': "providers.openai.circuit_breaker.consecutive: unknown field",
        '{"error_rate": 0}': "providers.openai.circuit_breaker.error_rate: expected a share",
        '{"cooldown_seconds": -1}': "providers.openai.circuit_breaker.cooldown_seconds: must be greater than zero",
        '{"enabled": "yes"}': "providers.openai.circuit_breaker.enabled: expected true or false",
        '{"cooldown_seconds": 60, "max_cooldown_seconds": 30}': "providers.openai.circuit_breaker.max_cooldown_seconds",
    }
    import json

    for block, message in bad.items():
        with pytest.raises(ConfigError) as info:
            parse_provider("openai", {"keys": [{"value": "sk"}], "circuit_breaker": json.loads(block)}, {}, Tuning())
        assert str(info.value).startswith(message), str(info.value)
    with pytest.raises(ConfigError, match=r"providers\.openai\.load_balancing: expected one of weighted, adaptive"):
        parse_provider("openai", {"keys": [{"value": "sk"}], "load_balancing": "fastest"}, {}, Tuning())


def test_a_config_change_keeps_what_the_breakers_learnt() -> None:
    from runtime.config.model import ClientConfig, ProviderConfig
    from runtime.core.router import Router

    def cfg(**breaker: object) -> dict[str, ProviderConfig]:
        return {"mock": ProviderConfig(name="mock", kind="mock", circuit_breaker=BreakerConfig(**breaker))}  # type: ignore[arg-type]

    first = Router.build(cfg(consecutive_failures=1), ClientConfig())
    health = first.handles["mock"].health
    assert health is not None
    health.failed("m", None, "server")
    assert health.target_blocked("m")
    second = Router.build(cfg(consecutive_failures=2, cooldown_seconds=9), ClientConfig(), previous=first)
    kept = second.handles["mock"].health
    assert kept is health and second.handles["mock"].keys.health is health
    assert kept.target_blocked("m") and kept.targets["m"].cfg.cooldown_seconds == 9
    off = Router.build(cfg(enabled=False), ClientConfig(), previous=second)
    assert off.handles["mock"].health is None and off.handles["mock"].keys.health is None


def test_sync_applies_other_workers_transitions_and_drops_anything_else(tmp_path: Path) -> None:
    import json
    from types import MappingProxyType

    from runtime.config.model import GatewayConfig, ProviderConfig
    from runtime.core.gateway import Gateway
    from runtime.core.health_sync import HealthSync
    from runtime.core.hooks import Hooks
    from runtime.stores.shared_sqlite import SQLiteSharedState

    provider = ProviderConfig(name="mock", kind="mock")
    gateway = Gateway(GatewayConfig(providers=MappingProxyType({"mock": provider})), Hooks([]))
    sync = HealthSync(SQLiteSharedState(tmp_path / "state.db"), gateway)  # never opened: apply() needs none
    health = gateway.router.handles["mock"].health
    assert health is not None

    def message(**fields: object) -> str:
        return json.dumps({"o": "other", "p": "mock", "k": "model", "t": "m", "s": OPEN, "for": 30, **fields})

    for bad in (
        "not json",
        "[]",
        json.dumps({"o": "other"}),
        message(o=sync.origin),  # our own
        message(s=7),
        message(k="route"),
        message(p="nope"),
        message(t=5),
        message(**{"for": -1}),
        message(**{"for": "soon"}),
    ):
        sync.apply(bad)
    assert health.targets == {} and sync.adopted == 0
    sync.apply(message())
    assert health.target_blocked("m") and health.tripped == 1 and sync.adopted == 1
    sync.apply(message(s=CLOSED, **{"for": 0}))
    assert not health.target_blocked("m") and health.tripped == 0
    sent: list[tuple[object, ...]] = []
    gateway.bind_health(lambda *args: sent.append(args))
    health.trip_key("k", 10)
    assert [args[:4] for args in sent] == [("mock", "key", "k", OPEN)]
    assert 9 < sent[0][4] <= 10  # type: ignore[operator]
