"""Portkey's gateway as a bench peer (issue 16): its pinned install, its command line and headers,
and (with the gateway installed, like the LiteLLM smoke test) real requests through it to the mock.

The real part needs bench/.venvs/portkey, or BENCH_PORTKEY=1, which lets the suite run its own
pinned ``npm install`` (the same dependence on a registry that BENCH_LITELLM=1 has on PyPI).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
from pathlib import Path

import pytest
from harness.bench_run import smoke

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench/ is not an installed package: it runs from the checkout

from bench import control  # noqa: E402
from bench.cli import build_parser  # noqa: E402
from bench.mock_responses import MockSettings  # noqa: E402
from bench.mockproc import MockProcess  # noqa: E402
from bench.pinning import Layout  # noqa: E402
from bench.targets import TARGETS, TargetUnavailable, make, portkey, portkey_env  # noqa: E402

WITH_PORTKEY = portkey_env.installed() or os.environ.get("BENCH_PORTKEY") == "1"
EXACT = re.compile(r"^\d+\.\d+\.\d+$")


def test_install_spec_pins_the_release_and_every_direct_dependency_exactly() -> None:
    spec = portkey_env.package_json()
    assert spec["dependencies"] == {"@portkey-ai/gateway": "1.15.2"}
    overrides = spec["overrides"]
    assert isinstance(overrides, dict)
    assert overrides == portkey_env.PINS
    bad = {k: v for k, v in overrides.items() if not EXACT.match(v)}
    assert not bad, f"ranges, not pins: {bad}"
    # The adapter that keeps Portkey's streaming working: 1.14 on hands it immutable headers.
    major, minor, _ = (int(x) for x in overrides["@hono/node-server"].split("."))
    assert (major, minor) < (1, 14)
    assert "hono" in overrides and "ws" in overrides and "zod" in overrides


def test_install_command_is_reproducible_and_runs_no_scripts() -> None:
    cmd = portkey_env.npm_install_command("/usr/bin/npm")
    assert cmd[:2] == ["/usr/bin/npm", "install"]
    assert f"--before={portkey_env.PUBLISHED_BEFORE}" in cmd
    assert "--ignore-scripts" in cmd and "--omit=dev" in cmd
    assert portkey_env.PUBLISHED_BEFORE.startswith("2026-08-23T01:29:")  # 1.15.2's publish time


def test_installed_only_when_the_tree_matches_this_checkouts_pins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    monkeypatch.setattr(portkey_env, "DIR", str(tmp_path))
    monkeypatch.setattr(portkey_env, "START_SCRIPT", str(script))
    monkeypatch.setattr(portkey_env, "SPEC_FILE", str(tmp_path / "package.json"))
    assert not portkey_env.installed()
    script.parent.mkdir(parents=True)
    script.write_text("// gateway\n")
    stale = dict(portkey_env.package_json(), overrides={"hono": "4.13.3"})
    (tmp_path / "package.json").write_text(json.dumps(stale))
    assert not portkey_env.installed()  # a changed pin means a reinstall
    (tmp_path / "package.json").write_text(json.dumps(portkey_env.package_json()))
    assert portkey_env.installed()
    hono = tmp_path / "node_modules" / "hono"
    hono.mkdir()
    (hono / "package.json").write_text('{"name": "hono", "version": "4.9.7"}')
    assert portkey_env.installed_versions() == {"hono": "4.9.7"}


def test_not_installed_and_no_auto_install_is_a_skip_with_the_command_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portkey_env, "START_SCRIPT", str(tmp_path / "missing.js"))
    monkeypatch.setattr(portkey_env, "SPEC_FILE", str(tmp_path / "package.json"))
    monkeypatch.setattr(portkey_env, "node_binary", lambda: "/usr/bin/node")
    with pytest.raises(TargetUnavailable, match="install-portkey"):
        portkey_env.ensure(auto_install=False)


def test_requests_are_routed_to_the_mock_by_header() -> None:
    h = portkey.request_headers("http://127.0.0.1:4321")
    assert h == {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": "http://127.0.0.1:4321/v1",
        "Authorization": "Bearer sk-bench-fake",
    }


def test_command_uses_the_packages_bin_flags_pinned_and_loopback_preloaded() -> None:
    pinned = Layout(gateway=[0], bench=[1])
    cmd = portkey.command("/usr/bin/node", "/x/start-server.js", 5555, pinned)
    tail = ["/usr/bin/node", "--import", portkey.LOOPBACK_PRELOAD, "/x/start-server.js", "--port=5555", "--headless"]
    assert cmd[-len(tail) :] == tail
    assert cmd[: -len(tail)] == pinned.gateway_prefix()
    assert os.path.isfile(portkey.LOOPBACK_PRELOAD)
    assert portkey.command("node", "s.js", 1, Layout(None, None))[0] == "node"


def test_child_env_is_scrubbed_of_proxies_credentials_and_host_lists() -> None:
    env = portkey.child_env(
        {
            "PATH": "/bin",
            "HTTPS_PROXY": "http://proxy:3128",
            "http_proxy": "http://proxy:3128",
            "REDIS_CONNECTION_STRING": "redis://x",
            "AWS_ACCESS_KEY_ID": "x",
            "TRUSTED_CUSTOM_HOSTS": "example.com",
            "NODE_OPTIONS": "--require x",
        }
    )
    assert env == {"PATH": "/bin", "NODE_ENV": "production", "NO_PROXY": "127.0.0.1,localhost"}


def test_registered_as_a_target_and_accepted_by_targets() -> None:
    assert TARGETS["portkey"] is portkey.PortkeyTarget
    t = make("portkey", workers=4, profile="cost", auto_install=False, mock_pid=1)
    assert isinstance(t, portkey.PortkeyTarget) and t.auto_install is False
    args = build_parser().parse_args(["overhead", "--targets", "direct,bifrost,portkey"])
    assert args.targets == "direct,bifrost,portkey"
    assert build_parser().parse_args(["install-portkey"]).command == "install-portkey"


def _post(port: int, body: dict, headers: dict[str, str]) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json", **headers})
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type") or "", resp.read()
    finally:
        conn.close()


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a LISTEN socket on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(path).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(addr)
    return found


@pytest.mark.slow
@pytest.mark.timeout(900)  # may include the one-off pinned `npm install`
@pytest.mark.skipif(not WITH_PORTKEY, reason="needs bench/.venvs/portkey or BENCH_PORTKEY=1")
def test_real_portkey_chat_stream_and_errors_through_to_the_mock() -> None:
    mock = MockProcess(MockSettings(latency_ms=0.0, chunk_interval_ms=1.0))
    target = portkey.PortkeyTarget(auto_install=True)
    try:
        running = target.start(mock.origin, Layout(None, None))
        assert running.notes[0].startswith("portkey gateway 1.15.2 (hono 4.9.7, @hono/node-server 1.13.8)")
        assert _listening_addresses(running.port) == {"0100007F"}  # 127.0.0.1 only
        chat = {"model": running.model, "messages": [{"role": "user", "content": "hi"}]}
        status, ctype, body = _post(running.port, chat, running.headers)
        assert status == 200 and ctype.startswith("application/json")
        assert json.loads(body)["choices"][0]["message"]["content"].startswith("lorem")
        stream = dict(chat, stream=True, stream_options={"include_usage": True})
        status, ctype, body = _post(running.port, stream, running.headers)
        assert status == 200 and ctype.startswith("text/event-stream"), body[:300]
        events = [e[len(b"data: ") :] for e in body.strip().split(b"\n\n")]
        assert events[-1] == b"[DONE]"
        assert json.loads(events[-2])["usage"]["total_tokens"] == 60
        assert sum(1 for e in events[:-1] if json.loads(e)["choices"]) == MockSettings().stream_chunks + 1
        served = mock.stats()["total"]
        assert served >= 2  # both answers came from the mock
        closed = dict(running.headers, **{"x-portkey-custom-host": f"http://127.0.0.1:{control.free_port()}/v1"})
        status, ctype, body = _post(running.port, chat, closed)
        assert status >= 500 and ctype.startswith("application/json"), body[:300]
    finally:
        target.stop(10)
        mock.stop()
    assert target.proc is None


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not WITH_PORTKEY, reason="needs bench/.venvs/portkey or BENCH_PORTKEY=1")
def test_smoke_side_by_side_with_portkey(tmp_path: Path) -> None:
    smoke(tmp_path, "--targets", "direct,bifrost,portkey", "--only", "overhead,frontier")
    frontier = json.loads((tmp_path / "frontier.json").read_text())
    cells = frontier["cells"]
    assert {c["target"] for c in cells} >= {"bifrost", "portkey"}, frontier["skipped"]
    assert all(c["success_rate"] == 1.0 for c in cells)
    report = (tmp_path / "REPORT.md").read_text()
    assert "Bifrost vs peers" in report


def _overhead_doc(**added_p50: float) -> dict:
    derived = {n: {"added_p50_us": v, "added_p99_us": v * 4} for n, v in added_p50.items()}
    return {"scenario": "overhead", "params": {}, "cells": [], "derived": derived}


def test_peer_ratios_only_where_both_cells_exist() -> None:
    from bench.report.peers import peer_rows, peers_section

    docs = {
        "overhead": _overhead_doc(bifrost=250.0, portkey=2000.0),
        "frontier": {
            "scenario": "frontier",
            "params": {},
            "cells": [],
            "derived": {
                "bifrost": {"max_sustained_rps": 5000},
                "litellm": {"max_sustained_rps": 100},
                "portkey": {"max_sustained_rps": 1000},
                "bifrost_over_litellm": 50.0,
            },
        },
        "medium": {
            "scenario": "medium",
            "params": {"latencies_ms": [0.0], "rates": [500.0]},
            "cells": [
                {"target": "bifrost", "mock_latency_ms": 0.0, "rate": 500.0, "throughput_rps": 500.0},
                {"target": "portkey", "mock_latency_ms": 0.0, "rate": 500.0, "throughput_rps": 250.0},
            ],
            "derived": {},
        },
        "streams": {
            "scenario": "streams",
            "params": {"levels": [64]},
            "cells": [],
            "derived": {
                "bifrost": [{"concurrency": 64, "added_ttft_p50_ms": 0.5}],
                "litellm": [{"concurrency": 64, "added_ttft_p50_ms": 5.0}],
            },
        },
    }
    rows = {(r["scenario"], r["metric"]): r for r in peer_rows(docs)}
    p50 = rows[("overhead", "added p50 µs, c=1")]
    assert (p50["over_portkey"], p50["over_litellm"]) == (0.125, None)  # no LiteLLM cell: no ratio
    front = rows[("frontier", "max sustained RPS")]
    assert (front["over_litellm"], front["over_portkey"]) == (50.0, 5.0)
    med = rows[("medium", "throughput/s at 500 RPS, mock 0 ms")]
    assert (med["over_portkey"], med["over_litellm"]) == (2.0, None)
    ttft = rows[("streams", "added TTFT p50 ms, 64 streams")]
    assert (ttft["over_litellm"], ttft["over_portkey"]) == (0.1, None)
    text = "\n".join(peers_section(docs))
    assert text.startswith("## Bifrost vs peers")
    assert "| overhead | added p50 µs, c=1 | lower | 250 | - | 2,000 | - | 0.125 |" in text


def test_no_peer_measured_means_no_section_and_no_ratio_over_a_non_positive_peer() -> None:
    from bench.report.peers import peer_rows, peers_section

    assert peers_section({"overhead": _overhead_doc(bifrost=250.0)}) == []
    rows = peer_rows({"overhead": _overhead_doc(bifrost=250.0, litellm=-3.0)})
    assert rows[0]["litellm"] == -3.0 and rows[0]["over_litellm"] is None
