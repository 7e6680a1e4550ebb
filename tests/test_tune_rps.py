"""`bifrost tune --rps N --latency S [--write]`: Go Bifrost's published lane-sizing rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bifrost_cli.sizing import (
    CONNECTION_BYTES,
    LOG_RECORD_BYTES,
    QUEUED_REQUEST_BYTES,
    RpsSizing,
)
from runtime.config.load import load_gateway_config
from tests.test_cli_tune import OPENAI, T3_XLARGE, Machine, invoke, machine, write_config

__all__ = ["machine"]  # the fixture, imported for these tests


def test_rule_exact_numbers() -> None:
    s = RpsSizing(rps=5000, latency_s=0.5, providers=1)
    assert (s.concurrency, s.buffer_size) == (2500, 7500)
    assert (s.connection_pool_limit_per_host, s.connection_pool_limit) == (2500, 2500)
    assert s.initial_pool_size == 10_000
    assert RpsSizing(rps=5000, latency_s=0.5, providers=3).connection_pool_limit == 7500


def test_rule_rounds_up_without_float_noise() -> None:
    s = RpsSizing(rps=30, latency_s=0.1, providers=1)  # 3.0000000000000004 in float
    assert (s.concurrency, s.buffer_size) == (3, 9)
    s = RpsSizing(rps=7, latency_s=0.25, providers=1)  # 1.75 in flight
    assert (s.concurrency, s.buffer_size) == (2, 6)  # 5.25 queued -> 6
    assert RpsSizing(rps=1, latency_s=0.001, providers=1).concurrency == 1
    assert RpsSizing(rps=1, latency_s=0.001, providers=1).initial_pool_size == 1000


def test_memory_estimate_uses_the_documented_constants() -> None:
    s = RpsSizing(rps=5000, latency_s=0.5, providers=2)
    assert s.memory_bytes() == {
        "queued requests": 2 * 7500 * QUEUED_REQUEST_BYTES,
        "in-flight requests": 2 * 2500 * QUEUED_REQUEST_BYTES,
        "upstream sockets": 5000 * CONNECTION_BYTES,
        "request-log buffer": 10_000 * LOG_RECORD_BYTES,
    }


@pytest.mark.parametrize(
    ("rps", "latency"),
    [(0, 0.5), (-1, 0.5), (10, 0.0), (10, -0.1), (10, math.inf), (10, math.nan), (True, 0.5)],
)
def test_rule_rejects_bad_values(rps: int, latency: float) -> None:
    with pytest.raises(ValueError):
        RpsSizing(rps=rps, latency_s=latency, providers=1)


def test_cli_prints_the_sized_table(machine: Machine, tmp_path: Path) -> None:
    result = invoke("tune", "--app-dir", str(tmp_path), "--rps", "5000", "--latency", "0.5")
    assert result.exit_code == 0, result.output
    out = result.stdout
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│ ")}
    assert "2,500" in rows["concurrency"]
    assert "7,500" in rows["buffer_size"]
    assert "10,000" in rows["initial_pool_size"]
    assert "rps x latency x 3" in out
    assert "total" in rows and "MiB" in rows["total"]
    assert "371.1 MiB" in rows["total"]  # 1 lane: (7500 + 2500) x 16 KiB + 2500 x 80 KiB + 10000 x 2 KiB
    assert "--write" in out
    assert not (tmp_path / "config.json").exists()  # showing writes nothing
    assert machine.runs == []


def test_cli_write_round_trip(machine: Machine, tmp_path: Path) -> None:
    machine.instance = T3_XLARGE
    anthropic = {
        "keys": [{"name": "a", "value": "env.ANTHROPIC_KEY_FOR_TEST", "models": [], "weight": 1.0}],
        "concurrency_and_buffer_size": {"concurrency": 3, "buffer_size": 4},
    }
    path = write_config(
        tmp_path,
        {
            "profile": "speed",
            "providers": {"openai": OPENAI, "anthropic": anthropic},
            "client": {"enable_logging": True},
        },
    )
    result = invoke("tune", "--app-dir", str(tmp_path), "--rps", "5000", "--latency", "0.5", "--write")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout

    saved = json.loads(path.read_text())
    lanes = {"concurrency": 2500, "buffer_size": 7500}
    assert saved["profile"] == "speed"
    assert saved["providers"]["openai"] == {**OPENAI, "concurrency_and_buffer_size": lanes}
    assert saved["providers"]["anthropic"]["keys"][0]["value"] == "env.ANTHROPIC_KEY_FOR_TEST"  # kept as a reference
    assert saved["providers"]["anthropic"]["concurrency_and_buffer_size"] == lanes
    assert saved["client"] == {"enable_logging": True, "initial_pool_size": 10_000}
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind

    config = load_gateway_config(tmp_path, environ={"ANTHROPIC_KEY_FOR_TEST": "sk-ant-test"})
    for name in ("openai", "anthropic"):
        assert (config.providers[name].concurrency, config.providers[name].buffer_size) == (2500, 7500)
    assert config.client.initial_pool_size == 10_000
    assert config.client.enable_logging is True


def test_cli_write_without_providers_writes_nothing(machine: Machine, tmp_path: Path) -> None:
    path = write_config(tmp_path, {"client": {"enable_logging": False}})
    result = invoke("tune", "--app-dir", str(tmp_path), "--rps", "100", "--latency", "1", "--write")
    assert result.exit_code == 2
    assert "no providers" in result.stderr
    assert json.loads(path.read_text()) == {"client": {"enable_logging": False}}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--rps", "0", "--latency", "0.5"), "--rps"),
        (("--rps", "1.5", "--latency", "0.5"), "--rps"),
        (("--rps", "100", "--latency", "0"), "--latency"),
        (("--rps", "100", "--latency", "-1"), "--latency"),
        (("--rps", "100", "--latency", "inf"), "--latency"),
        (("--rps", "100", "--latency", "nan"), "--latency"),
        (("--rps", "100", "--latency", "fast"), "--latency"),
        (("--rps", "100"), "go together"),
        (("--latency", "0.5"), "go together"),
        (("--rps", "100", "--latency", "0.5", "--profile", "speed"), "separate steps"),
        (("--write",), "--write needs"),
    ],
)
def test_cli_bad_inputs(machine: Machine, tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    result = invoke("tune", "--app-dir", str(tmp_path), *args)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert not (tmp_path / "config.json").exists()
