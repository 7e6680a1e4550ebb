"""Issue 14 item 3: GET /ready for a load balancer, and draining an instance (runtime/http/health.py).

- POST /api/drain (admin-authenticated) makes every worker of the instance answer /ready with 503 while
  requests are still served; DELETE /api/drain undoes it; without the admin token both are refused.
- A stop signal makes /ready 503 for as long as the worker drains (and the listener is closed: a probe
  then finds nothing, which a load balancer also reads as not ready).
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from fakes import FakeOpenAI, Reply
from harness import Gateway, StartGateway, make_config, openai_provider

from runtime.app import create_app
from runtime.config.model import ClientConfig, GatewayConfig
from runtime.http import drain as drain_module
from runtime.http.drain import DRAIN
from runtime.http.health import DRAIN_MARKER, not_ready_reason

TOKEN = "a-drain-test-admin-token-0123456789"
PROBES = 20  # fresh connections: with two workers, both answer some of them


def call(gw: Gateway, method: str, path: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(gw.url(path), method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def ready_answers(gw: Gateway) -> set[int]:
    return {call(gw, "GET", "/ready")[0] for _ in range(PROBES)}


def test_admin_drain_holds_for_every_worker_and_requests_are_still_served(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    config = make_config({"openai": openai_provider(fake_openai.url)})
    config["admin"] = {"token": "env.BIFROST_TEST_ADMIN_TOKEN"}
    gw = start_gateway(config, args=("--host", "0.0.0.0", "--workers", "2"), env={"BIFROST_TEST_ADMIN_TOKEN": TOKEN})
    assert call(gw, "GET", "/ready") == (200, {"ready": True})

    status, body = call(gw, "POST", "/api/drain")  # admin auth is on (off loopback): refused
    assert status == 401 and body["error"]["code"] == "admin_token_required"
    assert call(gw, "POST", "/api/drain", token="not-the-admin-token-at-all-0000")[0] == 401
    assert ready_answers(gw) == {200}

    assert call(gw, "POST", "/api/drain", token=TOKEN) == (200, {"draining": True, "ready": False})
    assert (gw.app_dir / DRAIN_MARKER).exists()
    assert ready_answers(gw) == {503}  # every worker, though the admin request reached one
    status, body = call(gw, "GET", "/ready")
    assert body["ready"] is False and "drain" in body["reason"]
    with gw.client() as client:  # still served: the load balancer stops sending, nothing is refused
        reply = client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
    _, health = call(gw, "GET", "/health")
    assert health["status"] == "ok"  # liveness is not readiness

    assert call(gw, "DELETE", "/api/drain")[0] == 401
    assert ready_answers(gw) == {503}
    assert call(gw, "DELETE", "/api/drain", token=TOKEN) == (200, {"draining": False, "ready": True})
    assert ready_answers(gw) == {200}


async def test_a_stop_signal_makes_the_worker_not_ready_while_it_drains(tmp_path: Path) -> None:
    """The real stop sequence (drain.stop) on a real server: /ready's answer flips as the drain starts."""
    config = GatewayConfig(app_dir=tmp_path, client=ClientConfig(shutdown_grace_in_seconds=5.0, enable_logging=False))
    app = create_app(config)
    runner = web.AppRunner(app, shutdown_timeout=drain_module.CUT_S)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/ready") as response:
        assert response.status == 200 and await response.json() == {"ready": True}
    drain = app[DRAIN]
    drain.enter()  # an inference request in flight: the stop waits for it (up to the grace)
    stopping = asyncio.create_task(drain_module.stop(runner, drain))
    try:
        deadline = time.monotonic() + 5
        while not_ready_reason(app) is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert "shutting down" in (not_ready_reason(app) or "")
        assert not stopping.done()  # still draining: the in-flight request holds it
    finally:
        drain.leave()
        await asyncio.wait_for(stopping, 10)


async def test_sigterm_drain_never_answers_ready(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    """A real gateway process draining a never-ending stream after SIGTERM: every probe meanwhile gets
    503 or no connection, never 200 (nginx / Kubernetes read both as not ready)."""
    config = make_config({"openai": openai_provider(fake_openai.url)}, shutdown_grace_in_seconds=3.0)
    gw = start_gateway(config)
    fake_openai.always(Reply(stall_after=2, stall=3600))
    answers: list[int | str] = []
    async with aiohttp.ClientSession() as session:
        body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "go on"}], "stream": True}
        response = await session.post(gw.url("/v1/chat/completions"), json=body)
        assert response.status == 200 and await response.content.readany()
        gw.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while "stopping: draining" not in gw.output():  # logged as the drain starts, flag already set
            assert time.monotonic() < deadline, gw.output()
            await asyncio.sleep(0.02)
        stopper = threading.Thread(target=gw.stop, args=(signal.SIGTERM, 30.0))
        stopper.start()
        while stopper.is_alive():
            try:
                async with session.get(gw.url("/ready"), timeout=aiohttp.ClientTimeout(total=2)) as probe:
                    answers.append(probe.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                answers.append(type(exc).__name__)
            await asyncio.sleep(0.05)
        stopper.join()
        response.close()
    assert gw.exit_code == 0
    assert answers and 200 not in answers, answers
