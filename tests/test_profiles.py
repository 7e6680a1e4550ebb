"""The profile table, the `auto` rule and the flag > env > config > auto precedence."""

from __future__ import annotations

import dataclasses

import pytest

from bifrost_cli.profiles import (
    AUTO,
    KNOB_HELP,
    PROFILE_CHOICES,
    PROFILES,
    resolve_profile,
    saved_profile,
    select_profile,
)
from bifrost_cli.sizing import InstanceInfo

GIB = 1024**3
T3_MEDIUM = InstanceInfo(cpus=2, memory_bytes=int(3.8 * GIB), cpu_source="test", memory_source="test")
T3_XLARGE = InstanceInfo(cpus=4, memory_bytes=int(15.4 * GIB), cpu_source="test", memory_source="test")


def instance(cpus: float, gib: float | None) -> InstanceInfo:
    memory = None if gib is None else int(gib * GIB)
    return InstanceInfo(cpus=cpus, memory_bytes=memory, cpu_source="test", memory_source="test")


def test_published_benchmark_figures_are_kept() -> None:
    assert (PROFILES["cost"].initial_pool_size, PROFILES["cost"].buffer_size) == (10_000, 15_000)
    assert (PROFILES["speed"].initial_pool_size, PROFILES["speed"].buffer_size) == (15_000, 20_000)


def test_every_knob_is_documented_and_set() -> None:
    for profile in PROFILES.values():
        assert list(profile.knobs()) == list(KNOB_HELP)
        assert dataclasses.is_dataclass(profile)
        with pytest.raises(dataclasses.FrozenInstanceError):
            profile.workers = 3  # type: ignore[misc]


def test_profiles_trade_memory_for_latency() -> None:
    cost, speed = PROFILES["cost"], PROFILES["speed"]
    # every size-like knob is larger (or equal) in speed; cost sheds load, speed queues
    for knob in (
        "concurrency",
        "buffer_size",
        "initial_pool_size",
        "connection_pool_limit",
        "listen_backlog",
    ):
        assert getattr(cost, knob) < getattr(speed, knob), knob
    assert cost.keepalive_timeout_s < speed.keepalive_timeout_s
    assert cost.log_flush_interval_ms > speed.log_flush_interval_ms
    assert cost.drop_excess_requests and not speed.drop_excess_requests
    # a lane permit never waits for a socket
    for p in PROFILES.values():
        assert p.connection_pool_limit_per_host >= p.concurrency
        assert p.connection_pool_limit >= p.connection_pool_limit_per_host


def test_workers_follow_cpus_only_for_speed() -> None:
    assert PROFILES["cost"].workers_for(T3_XLARGE) == 1
    assert PROFILES["speed"].workers_for(T3_XLARGE) == 4
    assert PROFILES["speed"].workers_for(instance(2.5, 16)) == 2


@pytest.mark.parametrize(
    ("cpus", "gib", "expected"),
    [
        (2, 3.8, "cost"),  # t3.medium
        (2, 7.6, "cost"),  # t3.large: memory but not CPUs
        (4, 15.4, "speed"),  # t3.xlarge
        (4, 7.6, "speed"),  # c5.xlarge
        (4, 3.8, "cost"),  # 4 vCPU but tight memory
        (3.9, 16, "cost"),  # quota just below 4 whole CPUs
        (16, None, "speed"),  # memory unknown: CPUs decide
        (1, None, "cost"),
    ],
)
def test_auto_thresholds(cpus: float, gib: float | None, expected: str) -> None:
    assert select_profile(instance(cpus, gib)) == expected


def test_precedence_flag_env_config_auto() -> None:
    config = {"profile": "speed"}
    env = {"BIFROST_PROFILE": "cost"}

    flag = resolve_profile(T3_MEDIUM, flag="speed", config=config, environ=env)
    assert (flag.name, flag.source) == ("speed", "flag")

    from_env = resolve_profile(T3_XLARGE, flag=None, config=config, environ=env)
    assert (from_env.name, from_env.source) == ("cost", "env")

    from_config = resolve_profile(T3_MEDIUM, flag=None, config=config, environ={})
    assert (from_config.name, from_config.source) == ("speed", "config")

    default = resolve_profile(T3_XLARGE, flag=None, config={}, environ={})
    assert (default.name, default.requested, default.source) == ("speed", AUTO, "default")
    assert default.describe() == "auto -> speed (from default)"


def test_explicit_auto_at_a_higher_level_still_wins() -> None:
    # `--profile auto` overrides a saved `speed`: auto is a choice, not an absence of one.
    resolved = resolve_profile(T3_MEDIUM, flag="auto", config={"profile": "speed"}, environ={})
    assert (resolved.name, resolved.requested, resolved.source) == ("cost", AUTO, "flag")


def test_empty_env_is_ignored_and_case_is_forgiven() -> None:
    resolved = resolve_profile(T3_MEDIUM, flag=None, config={"profile": " Speed "}, environ={"BIFROST_PROFILE": ""})
    assert (resolved.name, resolved.source) == ("speed", "config")


@pytest.mark.parametrize(
    ("flag", "env", "config", "where"),
    [
        ("fast", None, None, "--profile"),
        (None, "turbo", None, "BIFROST_PROFILE"),
        (None, None, {"profile": "cheap"}, "config.json"),
    ],
)
def test_unknown_profile_names_its_source(
    flag: str | None, env: str | None, config: dict[str, str] | None, where: str
) -> None:
    environ = {"BIFROST_PROFILE": env} if env else {}
    with pytest.raises(ValueError, match=where) as err:
        resolve_profile(T3_MEDIUM, flag=flag, config=config, environ=environ)
    assert "cost, speed, auto" in str(err.value)


def test_saved_profile() -> None:
    assert saved_profile(None) is None
    assert saved_profile({"providers": {}}) is None
    assert saved_profile({"profile": "auto"}) == "auto"
    with pytest.raises(ValueError, match="must be a string"):
        saved_profile({"profile": 3})


def test_choices_are_the_table_plus_auto() -> None:
    assert PROFILE_CHOICES == ("cost", "speed", "auto")
