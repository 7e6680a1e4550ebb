"""The framework floors (bench/floor_relay.py, targets floor-aiohttp and floor-raw): real processes relaying
real requests to the mock, and the overhead and frontier scenarios placing them beside Bifrost."""

from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path

import pytest
from harness.bench_run import smoke

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench/ is not an installed package: it runs from the checkout

from bench.mock_responses import MockSettings  # noqa: E402
from bench.mockproc import MockProcess  # noqa: E402
from bench.pinning import Layout  # noqa: E402
from bench.targets import make  # noqa: E402


def _post(port: int, body: bytes, keep: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    conn = keep or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        if keep is None:
            conn.close()


@pytest.mark.parametrize("name", ["floor-aiohttp", "floor-raw"])
def test_each_floor_relays_the_mocks_answer_over_keep_alive(name: str) -> None:
    mock = MockProcess(MockSettings(latency_ms=0.0))
    target = make(name)
    try:
        running = target.start(mock.origin, Layout(None, None))
        assert running.name == name and running.pid is not None
        chat = json.dumps({"model": running.model, "messages": [{"role": "user", "content": "hi"}]}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
        answers = [_post(running.port, chat, conn) for _ in range(3)]  # one connection, one at a time
        conn.close()
        for status, body in answers:
            assert status == 200
            assert json.loads(body)["choices"][0]["message"]["content"].startswith("lorem")
        assert mock.stats()["total"] >= 3  # every answer came from the mock
        status, _ = _post(running.port, b"{not json")
        assert status >= 500  # the floor does no validation: the relay fails, and says so with a status
    finally:
        target.stop(10)
        mock.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_overhead_and_frontier_smoke_with_the_floors(tmp_path: Path) -> None:
    smoke(tmp_path, "--only", "overhead,frontier", "--targets", "direct,bifrost,floor-aiohttp,floor-raw", timeout=280)
    overhead = json.loads((tmp_path / "overhead.json").read_text())
    for name in ("bifrost", "floor-aiohttp", "floor-raw"):
        assert overhead["derived"][name]["requests"] > 0, name
    frontier = json.loads((tmp_path / "frontier.json").read_text())
    assert {"floor-aiohttp", "floor-raw"} <= set(frontier["derived"])
    assert {c["target"] for c in frontier["cells"]} >= {"bifrost", "floor-aiohttp", "floor-raw"}


def test_a_target_that_exits_at_start_is_unavailable_with_its_own_output() -> None:
    from bench.targets import TargetUnavailable
    from bench.targets.floor import FloorTarget

    target = FloorTarget("nosuch")  # the relay refuses the server kind and exits at once
    with pytest.raises(TargetUnavailable) as err:
        target.start("http://127.0.0.1:9", Layout(None, None))
    message = str(err.value)
    assert message.startswith("floor-nosuch did not start: process exited with code 2")
    assert "invalid choice: 'nosuch'" in message  # the tail of its own log, read by the base Target
    assert target.proc is None  # stopped and reaped
