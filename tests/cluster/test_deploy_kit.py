"""The deployment kit in packaging/cluster/ works as docs/cluster.md says: the systemd unit is valid, its
command line starts an instance, and the packaged nginx.conf spreads requests, streams unbuffered,
upgrades /ws, keeps management routes to this machine, follows a reload and routes around a dead instance.

These run on the embedded stores (no PostgreSQL needed): they pin nginx and the unit, not the stores.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from fakes import FakeOpenAI, Reply
from harness.config import make_config, openai_provider

from .conftest import MakeCluster
from .kit import UNIT, unit_commands, unit_directives

MOCK = {"model": "mock/mock-chat", "messages": [{"role": "user", "content": "hi"}]}


def embedded_config(fake_url: str | None = None) -> dict[str, object]:
    providers = {"openai": openai_provider(fake_url)} if fake_url else {}
    return make_config(providers)


def test_the_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is part of Debian's systemd package: install it"
    # verify checks that every Exec path exists: point the `bifrost` executable at this venv's console script.
    script = Path(sys.executable).parent / "bifrost"
    assert script.exists(), f"{script}: the project's console script (pip install -e .) is missing"
    text = UNIT.read_text().replace("/usr/local/bin/bifrost", str(script))
    unit = tmp_path / "bifrost@.service"
    unit.write_text(text)
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    directives = unit_directives(UNIT.read_text())
    # Stopping must outlast the drain: the default shutdown grace (30 s) + the cut + the log flush.
    assert int(directives["TimeoutStopSec"][0]) >= 40
    assert directives["Restart"] == ["on-failure"]
    pre, start = unit_commands(8081, tmp_path / "app", tmp_path / "config.json")
    assert start[:3] == [sys.executable, "-m", "bifrost_cli"]
    assert start[start.index("--port") + 1] == "8081" and start[start.index("--app-dir") + 1] == str(tmp_path / "app")
    assert pre == [["/bin/cp", str(tmp_path / "config.json"), str(tmp_path / "app" / "config.json")]]


async def test_nginx_spreads_requests_and_a_reload_changes_the_instances(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(embedded_config(), 2)
    assert cluster.nginx is not None
    shared = json.loads(cluster.shared_config.read_text())
    for gateway in cluster.instances:  # each instance got the shared file through the unit's ExecStartPre
        assert json.loads((gateway.app_dir / "config.json").read_text()) == shared
    outcomes = await cluster.load(20, concurrency=4, body=MOCK)
    assert [o.status for o in outcomes] == [200] * 20
    used = Counter(await asyncio.to_thread(cluster.nginx.wait_log_lines, 20))
    assert set(used) == {f"127.0.0.1:{g.port}" for g in cluster.instances}, used
    # Take the first instance out of the list: after the reload every request goes to the second.
    cluster.reload([cluster.instances[1].port])
    outcomes = await cluster.load(10, concurrency=2, body=MOCK)
    assert [o.status for o in outcomes] == [200] * 10
    lines = await asyncio.to_thread(cluster.nginx.wait_log_lines, 30)  # nginx logs just after it answers
    assert set(lines[20:]) == {f"127.0.0.1:{cluster.instances[1].port}"}


async def test_a_stream_reaches_the_client_event_by_event(make_cluster: MakeCluster, fake_openai: FakeOpenAI) -> None:
    gap = 0.25
    fake_openai.always(Reply(content="one two three four five six", chunk_delay=gap))
    cluster = make_cluster(embedded_config(fake_openai.url), 2)
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    arrivals: list[float] = []
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.post(cluster.url + "/v1/chat/completions", json=body) as response,
    ):
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.content:
            if line.startswith(b"data:"):
                arrivals.append(time.monotonic())
    assert len(arrivals) >= 5
    # Buffered by nginx, every event would arrive in one burst at the end; here they arrive as the fake
    # sends them, `gap` apart (a lower bound: events cannot arrive before they are sent).
    assert arrivals[-1] - arrivals[0] >= (len(arrivals) - 3) * gap * 0.9, arrivals


async def test_the_ui_websocket_upgrades_through_nginx(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(embedded_config(), 2)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(cluster.url.replace("http", "ws") + "/ws") as ws,
    ):
        assert not ws.closed
        # The feed carries the requests of the instance the socket landed on (nginx picked one): one
        # request through each instance directly, so whichever it is has something to push.
        for gateway in cluster.instances:
            async with session.post(gateway.url("/v1/chat/completions"), json=MOCK) as response:
                assert response.status == 200
        message = await ws.receive(timeout=10)
        assert message.type == aiohttp.WSMsgType.TEXT, message


async def test_management_routes_are_served_to_this_machine_and_inference_to_all(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(embedded_config(), 2)
    async with aiohttp.ClientSession(trust_env=False) as session:
        async with session.get(cluster.url + "/api/providers") as providers:
            assert providers.status == 200  # from 127.0.0.1: allowed by the file's `allow 127.0.0.1`
        async with session.get(cluster.url + "/health") as health:
            assert health.status == 200
    conf = (cluster.nginx.dir / "bifrost.conf").read_text() if cluster.nginx else ""
    # Every non-inference location keeps the loopback-only rule (the instances do not ask for the admin
    # token on 127.0.0.1, so nginx is what keeps /api from the network).
    for location in ("location / {", "location = /ws {"):
        block = conf.split(location, 1)[1].split("}", 1)[0]
        assert "allow 127.0.0.1;" in block and "deny all;" in block, block


@pytest.mark.timeout(180)
async def test_nginx_routes_around_a_killed_instance(make_cluster: MakeCluster, fake_openai: FakeOpenAI) -> None:
    fake_openai.always(Reply(delay=0.05))
    cluster = make_cluster(embedded_config(fake_openai.url), 3)
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    concurrency = 6

    async def kill_soon() -> None:
        await asyncio.sleep(0.8)
        await asyncio.to_thread(cluster.kill, 0)

    outcomes, _ = await asyncio.gather(cluster.load(150, concurrency=concurrency, body=body), kill_soon())
    failed = [o for o in outcomes if o.status != 200]
    print(f"killed one of 3 instances mid-load: {len(outcomes) - len(failed)} ok, {len(failed)} failed {failed}")
    # Only requests in flight on the killed instance may fail (nginx does not resend a POST it already
    # sent); everything else went to the two live instances.
    assert len(failed) <= concurrency, failed
    assert all(o.status == 502 for o in failed), failed
    assert outcomes[-20:] and all(o.status == 200 for o in outcomes[-20:])
