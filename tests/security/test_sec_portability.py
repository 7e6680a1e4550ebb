"""Portability (issue 9 item 15): the declared Python is the tested one, and workers start under `spawn`.

`spawn` is the start method on macOS and Windows; Linux forks. `BIFROST_MP_START=spawn` forces it here,
so the pickling of the config and the workers' fresh-interpreter start are exercised on Linux.
"""

from __future__ import annotations

import json
import pickle
import sys
import urllib.request
from pathlib import Path
from types import MappingProxyType

import psutil
import tomllib
from fakes import FakeOpenAI
from harness import StartGateway, make_config, openai_provider, run_to_exit

from runtime.config.model import AzureKeyConfig, GatewayConfig, KeyConfig, NetworkConfig, ProviderConfig

REPO = Path(__file__).resolve().parents[2]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def test_requires_python_is_the_tested_version() -> None:
    # The code uses 3.11 APIs (asyncio.Runner, asyncio.timeout); 3.10 is not installable on the CI image.
    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert spec == ">=3.11"
    assert sys.version_info >= (3, 11)


def test_gateway_config_pickles() -> None:
    azure = AzureKeyConfig(endpoint="https://r.example", deployments=MappingProxyType({"gpt-4o": "dep"}))
    key = KeyConfig(name="k", value="sk-fake-1", azure=azure, extra=MappingProxyType({"region": "x"}))
    net = NetworkConfig(base_url="http://127.0.0.1:9", extra_headers=MappingProxyType({"x-a": "b"}))
    provider = ProviderConfig(name="p", kind="openai", keys=(key,), network=net)
    config = GatewayConfig(providers=MappingProxyType({"p": provider}), raw=MappingProxyType({"providers": {}}))
    copy = pickle.loads(pickle.dumps(config))
    assert copy == config
    assert isinstance(copy.providers, MappingProxyType)  # still read-only after the trip
    assert isinstance(copy.providers["p"].keys[0].azure.deployments, MappingProxyType)


def _health_pid(port: int) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health", headers={"Connection": "close"})
    with _OPENER.open(request, timeout=10) as response:
        return int(json.loads(response.read())["pid"])


def test_two_workers_serve_under_spawn(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start_gateway(
        make_config({"openai": openai_provider(fake_openai.url)}),
        args=("--workers", "2"),
        env={"BIFROST_MP_START": "spawn"},
    )
    children = psutil.Process(gateway.proc.pid).children()
    # Workers started by multiprocessing's spawn entry point (a fresh interpreter), not forked; spawn
    # also starts its resource tracker, which is not a worker.
    workers = [c for c in children if any("spawn_main" in part for part in c.cmdline())]
    assert len(workers) == 2, [c.cmdline() for c in children]
    pids: set[int] = set()
    for _ in range(400):  # new connections: the kernel spreads them over both SO_REUSEPORT sockets
        pids.add(_health_pid(gateway.port))
        if len(pids) == 2:
            break
    assert pids == {w.pid for w in workers}
    with gateway.client() as client:
        for _ in range(4):
            reply = client.chat.completions.create(
                model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
            assert reply.choices[0].message.content
    assert gateway.stop(timeout=30) == 0


def test_unknown_start_method_is_one_clear_line(tmp_path: Path) -> None:
    code, _out, err = run_to_exit(
        tmp_path / "app", config=make_config({}), args=("--workers", "2"), env={"BIFROST_MP_START": "threads"}
    )
    assert code != 0
    assert "BIFROST_MP_START='threads' is not a start method here" in err
    assert "Traceback" not in err
