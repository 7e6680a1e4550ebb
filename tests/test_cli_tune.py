"""The CLI's profile handling, `bifrost tune` and `bifrost config`, with runtime.run patched out.

Instance detection is patched too, so every test sees a known machine (t3.medium or t3.xlarge
sized) whatever this machine is.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import runtime
from bifrost_cli import startup
from bifrost_cli.main import cli
from bifrost_cli.profiles import PROFILES
from bifrost_cli.sizing import InstanceInfo
from runtime.config.model import GatewayConfig

GIB = 1024**3
T3_MEDIUM = InstanceInfo(cpus=2, memory_bytes=int(3.8 * GIB), cpu_source="test cpus", memory_source="test mem")
T3_XLARGE = InstanceInfo(cpus=4, memory_bytes=int(15.4 * GIB), cpu_source="test cpus", memory_source="test mem")

OPENAI = {
    "keys": [{"name": "k1", "value": "sk-fake-secret-value-1", "models": [], "weight": 1.0}],
    "network_config": {
        "base_url": "http://127.0.0.1:9",
        "retry_backoff_initial_ms": 100,
        "retry_backoff_max_ms": 2000,
    },
}


class Machine:
    """The patched world: which instance is detected and what runtime.run received."""

    def __init__(self) -> None:
        self.instance = T3_MEDIUM
        self.runs: list[GatewayConfig] = []


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    m = Machine()
    for name in list(os.environ):
        if name.startswith("BIFROST_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(startup, "detect_instance", lambda: m.instance)

    def fake_run(config: GatewayConfig, on_listening: Callable[[GatewayConfig], None] | None = None) -> int:
        m.runs.append(config)
        if on_listening is not None:  # as runtime.run does once bound (it prints the banner)
            on_listening(config)
        return 0

    monkeypatch.setattr(runtime, "run", fake_run)
    yield m


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def write_config(app_dir: Path, data: dict[str, Any]) -> Path:
    app_dir.mkdir(parents=True, exist_ok=True)
    path = app_dir / "config.json"
    path.write_text(json.dumps(data))
    return path


def serve(machine: Machine, app_dir: Path, *args: str, env: dict[str, str] | None = None) -> GatewayConfig:
    result = invoke("serve", "--app-dir", str(app_dir), *args, env=env)
    assert result.exit_code == 0, result.output
    return machine.runs[-1]


# ------------------------------------------------------------------------------------- serve


def test_profile_flag_flows_into_the_gateway_config(machine: Machine, tmp_path: Path) -> None:
    machine.instance = T3_XLARGE
    result = invoke("serve", "--app-dir", str(tmp_path), "--profile", "speed")
    assert result.exit_code == 0, result.output
    config = machine.runs[-1]

    speed = PROFILES["speed"]
    assert config.tuning == speed.tuning()
    assert config.tuning.profile == "speed"
    assert config.workers == 4  # one per usable CPU
    assert config.client.drop_excess_requests is False
    assert config.client.initial_pool_size == 15_000
    assert config.providers["mock"].concurrency == speed.concurrency
    assert config.providers["mock"].buffer_size == speed.buffer_size
    # the banner names the instance and the profile with its source
    assert "4 vCPU, 15.4 GiB" in result.stderr
    assert "speed (from flag)" in result.stderr


def test_bare_bifrost_takes_profile_too(machine: Machine, tmp_path: Path) -> None:
    result = invoke("--app-dir", str(tmp_path), "--profile", "cost")
    assert result.exit_code == 0, result.output
    assert machine.runs[-1].tuning.profile == "cost"
    assert machine.runs[-1].workers == 1


@pytest.mark.parametrize(("instance", "expected"), [(T3_MEDIUM, "cost"), (T3_XLARGE, "speed")])
def test_auto_by_default(machine: Machine, tmp_path: Path, instance: InstanceInfo, expected: str) -> None:
    machine.instance = instance
    result = invoke("serve", "--app-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert machine.runs[-1].tuning.profile == expected
    assert f"auto -> {expected} (from default)" in result.stderr


def test_precedence_flag_over_env_over_config(machine: Machine, tmp_path: Path) -> None:
    write_config(tmp_path, {"profile": "speed"})
    assert serve(machine, tmp_path).tuning.profile == "speed"
    assert serve(machine, tmp_path, env={"BIFROST_PROFILE": "cost"}).tuning.profile == "cost"
    flag = serve(machine, tmp_path, "--profile", "speed", env={"BIFROST_PROFILE": "cost"})
    assert flag.tuning.profile == "speed"


def test_explicit_settings_in_config_beat_the_profile(machine: Machine, tmp_path: Path) -> None:
    write_config(
        tmp_path,
        {
            "profile": "speed",
            "providers": {
                "openai": {**OPENAI, "concurrency_and_buffer_size": {"concurrency": 7, "buffer_size": 9}},
                "mock": {},
            },
            "client": {"drop_excess_requests": True, "initial_pool_size": 123},
        },
    )
    config = serve(machine, tmp_path, "--workers", "3")

    assert (config.providers["openai"].concurrency, config.providers["openai"].buffer_size) == (7, 9)
    speed = PROFILES["speed"]
    assert (config.providers["mock"].concurrency, config.providers["mock"].buffer_size) == (
        speed.concurrency,
        speed.buffer_size,
    )
    assert config.client.drop_excess_requests is True
    assert config.client.initial_pool_size == 123
    assert config.workers == 3  # --workers beats the profile
    assert config.tuning.connection_pool_limit == speed.connection_pool_limit


def test_client_block_without_those_keys_keeps_profile_values(machine: Machine, tmp_path: Path) -> None:
    write_config(tmp_path, {"client": {"enable_logging": False}})
    config = serve(machine, tmp_path, "--profile", "cost")
    assert config.client.drop_excess_requests is True
    assert config.client.initial_pool_size == 10_000
    assert config.client.enable_logging is False


@pytest.mark.parametrize(
    ("env", "config", "needle"),
    [({"BIFROST_PROFILE": "turbo"}, None, "BIFROST_PROFILE"), ({}, {"profile": "cheap"}, "config.json")],
)
def test_bad_profile_is_a_clear_error(
    machine: Machine, tmp_path: Path, env: dict[str, str], config: dict[str, Any] | None, needle: str
) -> None:
    if config is not None:
        write_config(tmp_path, config)
    result = invoke("serve", "--app-dir", str(tmp_path), env=env)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert "cost, speed, auto" in result.stderr
    assert machine.runs == []


def test_bad_profile_flag_is_rejected_by_click(machine: Machine, tmp_path: Path) -> None:
    result = invoke("serve", "--app-dir", str(tmp_path), "--profile", "fast")
    assert result.exit_code == 2
    assert machine.runs == []


def test_version(machine: Machine) -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"bifrost, version {runtime.__version__}"


# -------------------------------------------------------------------------------------- tune


def test_tune_shows_instance_recommendation_and_saved(machine: Machine, tmp_path: Path) -> None:
    machine.instance = T3_XLARGE
    result = invoke("tune", "--app-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "test cpus" in out and "15.4 GiB" in out
    assert "recommended" in out and "speed" in out
    assert "none (auto)" in out
    assert "auto -> speed (from default)" in out
    assert "15,000" in out and "20,000" in out  # the knob table
    assert machine.runs == []  # tune never starts the gateway


def test_tune_profile_saves_and_shows_what_changed(machine: Machine, tmp_path: Path) -> None:
    path = write_config(tmp_path, {"providers": {"openai": OPENAI}, "client": {"enable_logging": True}})
    path.chmod(0o640)

    result = invoke("tune", "--app-dir", str(tmp_path), "--profile", "speed")
    assert result.exit_code == 0, result.output

    saved = json.loads(path.read_text())
    assert list(saved) == ["profile", "providers", "client"]  # added first, rest untouched
    assert saved["profile"] == "speed"
    assert saved["providers"] == {"openai": OPENAI}
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert "none (auto) -> speed" in result.stdout
    assert "cost -> speed" in result.stdout  # this t3.medium would otherwise run auto -> cost
    assert "buffer_size" in result.stdout and "20,000" in result.stdout
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind

    # the next start uses it
    assert serve(machine, tmp_path).tuning.profile == "speed"

    again = invoke("tune", "--app-dir", str(tmp_path), "--profile", "speed")
    assert "nothing changed" in again.stdout


def test_tune_creates_config_and_names_explicit_providers(machine: Machine, tmp_path: Path) -> None:
    app_dir = tmp_path / "new"
    result = invoke("tune", "--app-dir", str(app_dir), "--profile", "cost")
    assert result.exit_code == 0, result.output
    assert json.loads((app_dir / "config.json").read_text()) == {"profile": "cost"}
    assert "every knob stays the same" in result.stdout  # auto picked cost here already

    lanes = {"openai": {**OPENAI, "concurrency_and_buffer_size": {"concurrency": 5, "buffer_size": 5}}}
    write_config(app_dir, {"profile": "cost", "providers": lanes})
    result = invoke("tune", "--app-dir", str(app_dir), "--profile", "speed")
    assert "keeping their own concurrency_and_buffer_size: openai" in result.stdout


def test_tune_fixes_an_invalid_saved_profile(machine: Machine, tmp_path: Path) -> None:
    path = write_config(tmp_path, {"profile": "turbo"})
    assert invoke("tune", "--app-dir", str(tmp_path)).exit_code == 2  # showing it fails, clearly
    result = invoke("tune", "--app-dir", str(tmp_path), "--profile", "auto")
    assert result.exit_code == 0, result.output
    assert json.loads(path.read_text()) == {"profile": "auto"}


def test_tune_warns_when_env_overrides_saved(machine: Machine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIFROST_PROFILE", "cost")
    result = invoke("tune", "--app-dir", str(tmp_path), "--profile", "speed")
    assert "BIFROST_PROFILE=cost is set" in result.stdout


# ------------------------------------------------------------------------------------ config


def test_config_path(machine: Machine, tmp_path: Path) -> None:
    result = invoke("config", "path", "--app-dir", str(tmp_path))
    assert result.stdout.strip() == str(tmp_path / "config.json")
    result = invoke("config", "path", env={"BIFROST_APP_DIR": str(tmp_path / "x")})
    assert result.stdout.strip() == str(tmp_path / "x" / "config.json")


def test_config_show_is_effective_json_with_secrets_masked(machine: Machine, tmp_path: Path) -> None:
    provider = {
        **OPENAI,
        "network_config": {**OPENAI["network_config"], "extra_headers": {"X-Api-Key": "hdr-secret-123456"}},
    }
    write_config(tmp_path, {"profile": "speed", "providers": {"openai": provider}})
    result = invoke("config", "show", "--app-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)

    assert shown["profile"] == {"name": "speed", "requested": "speed", "source": "config"}
    assert shown["tuning"]["default_concurrency"] == PROFILES["speed"].concurrency
    assert shown["workers"] == 2
    assert shown["instance"]["cpus"] == 2
    assert "sk-fake-secret-value-1" not in result.stdout
    assert "hdr-secret-123456" not in result.stdout
    assert shown["providers"]["openai"]["keys"][0]["name"] == "k1"


def test_config_validate(machine: Machine, tmp_path: Path) -> None:
    result = invoke("config", "validate", "--app-dir", str(tmp_path))
    assert result.exit_code == 0
    assert "no " in result.stdout and "environment" in result.stdout

    write_config(tmp_path, {"providers": {"openai": OPENAI}})
    result = invoke("config", "validate", "--app-dir", str(tmp_path))
    assert result.exit_code == 0
    assert "is valid" in result.stdout and "openai" in result.stdout

    (tmp_path / "config.json").write_text('{"providers": {"openai": {"keys": []}}')
    result = invoke("config", "validate", "--app-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "not valid JSON" in result.stderr

    write_config(tmp_path, {"providers": {"nosuch": {}}})
    result = invoke("config", "validate", "--app-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "providers.nosuch" in result.stderr
    assert machine.runs == []
