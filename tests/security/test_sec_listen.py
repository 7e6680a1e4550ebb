"""Binding the address and the start-up banner.

- issue 9 item 2: a port already in use (or another bind error) stops the start with one clear line and a
  non-zero exit code, with one worker and with several (the supervisor exits too), instead of hanging.
- issue 9 item 16: with `--port 0` the banner shows the port actually bound, and it shows a provider's
  base_url override (never a key, userinfo or query string).
"""

from __future__ import annotations

import errno
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import make_config, openai_provider
from harness.process import REPO_ROOT, Gateway, gateway_env, spawn

from bifrost_cli.console import shown_url
from runtime.listen import ListenError

EXIT_BOUND_S = 10.0  # generous: the machine is shared; the gateway itself refuses right after start-up
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def occupied_port() -> Iterator[int]:
    """A port another process (here: this test) is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def _exit_code(gateway: Gateway, bound: float = EXIT_BOUND_S) -> int:
    try:
        return gateway.proc.wait(bound)
    except Exception:
        gateway.kill()
        raise AssertionError(f"gateway still running after {bound}s\n{gateway.output()}") from None


def _stderr(gateway: Gateway) -> str:
    return gateway.stderr_path.read_text(errors="replace")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_in_use_exits_with_one_clear_line(tmp_path: Path, occupied_port: int, workers: str) -> None:
    gateway = spawn(tmp_path / "app", port=occupied_port, args=("--workers", workers))
    try:
        code = _exit_code(gateway)
    finally:
        gateway.kill()  # any forked worker left behind would be a failure of its own; never leak it
    err = _stderr(gateway)
    assert code != 0, err
    assert f"cannot listen on 127.0.0.1:{occupied_port}: address already in use" in err
    assert "pass --port" in err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "cannot listen" in line]) == 1


def test_second_gateway_does_not_join_a_running_one(tmp_path: Path, start_gateway) -> None:  # type: ignore[no-untyped-def]
    """Workers bind with SO_REUSEPORT: without the supervisor's check a second gateway of the same user
    would silently share the port (and its traffic) with the first."""
    first = start_gateway(make_config({}), args=("--workers", "2"))
    second = spawn(tmp_path / "second", port=first.port, args=("--workers", "2"))
    try:
        code = _exit_code(second)
    finally:
        second.kill()
    assert code != 0
    assert f"cannot listen on 127.0.0.1:{first.port}: address already in use" in _stderr(second)


def test_unknown_host_exits_with_one_clear_line(tmp_path: Path) -> None:
    gateway = spawn(tmp_path / "app", args=("--host", "no-such-host.invalid"))
    try:
        code = _exit_code(gateway)
    finally:
        gateway.kill()
    err = _stderr(gateway)
    assert code != 0, err
    assert "cannot listen on no-such-host.invalid" in err and "pass --host" in err
    assert "Traceback" not in err


def test_permission_denied_says_what_to_do() -> None:
    # Tests run as root here, so a real port 80 would bind: the wording is checked on the error itself.
    message = str(ListenError("0.0.0.0", 80, PermissionError(errno.EACCES, "Permission denied")))
    assert message.startswith("cannot listen on 0.0.0.0:80: permission denied")
    assert "pass --port 1024 or higher" in message


# ------------------------------------------------------------------------------------------- banner


def _wait_for_banner_port(gateway: Gateway, bound: float = 45.0) -> int:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        match = re.search(r"Bifrost\s+http://127\.0\.0\.1:(\d+)", _stderr(gateway))
        if match:
            return int(match.group(1))
        assert gateway.running(), gateway.output()
        time.sleep(0.1)
    raise AssertionError(f"no banner within {bound}s\n{gateway.output()}")


def _health(port: int, bound: float = 45.0) -> dict:
    deadline = time.monotonic() + bound
    while True:
        try:
            with _OPENER.open(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_banner_shows_the_bound_port_for_port_zero(tmp_path: Path, workers: str) -> None:
    gateway = spawn(tmp_path / "app", config=make_config({}), args=("--port", "0", "--workers", workers))
    try:
        port = _wait_for_banner_port(gateway)
        assert port != 0
        assert _health(port)["status"] == "ok"  # the port the banner names is the one serving
        assert gateway.stop(timeout=30) == 0
    finally:
        gateway.kill()


def test_banner_shows_base_url_overrides_without_secrets(start_gateway) -> None:  # type: ignore[no-untyped-def]
    secret_key = "sk-fake-banner-secret-0001"
    provider = openai_provider("http://127.0.0.1:9/custom-prefix", keys=[secret_key])
    gateway = start_gateway(make_config({"openai": provider}))
    gateway.stop()
    err = _stderr(gateway)
    assert "base_url http://127.0.0.1:9/custom-prefix" in " ".join(err.split())  # the table may wrap the row
    assert secret_key not in err


def test_banner_url_never_shows_userinfo_or_query() -> None:
    shown = shown_url("https://user:pa55word@llm.example:8443/v1?key=sk-query-secret#frag")
    assert shown == "https://llm.example:8443/v1"


def test_supervisor_stops_when_a_worker_cannot_listen(tmp_path: Path, occupied_port: int) -> None:
    """The race the supervisor's own check cannot close (the port taken between its check and the workers'
    bind): workers that cannot listen are not restarted; the supervisor stops them all and fails."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from runtime.config.model import GatewayConfig\n"
        "from runtime.server import _supervise\n"
        f"config = GatewayConfig(port={occupied_port}, workers=2, app_dir=Path({str(tmp_path)!r}))\n"
        "sys.exit(_supervise(config, 'fork'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=gateway_env(), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{occupied_port}: address already in use" in result.stderr
    assert "starting a new one" not in result.stderr  # never restarted


@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.2])
def test_a_stop_while_workers_are_still_starting_is_a_clean_exit(tmp_path: Path, delay_s: float) -> None:
    """SIGTERM right after the banner reaches workers that are still starting (no loop handler yet): each
    must stop cleanly, not run the supervisor's inherited handler (a traceback and exit code 1)."""
    gateway = spawn(tmp_path / "app", config=make_config({}), args=("--port", "0", "--workers", "2"))
    try:
        _wait_for_banner_port(gateway)
        time.sleep(delay_s)
        assert gateway.stop(timeout=30) == 0, gateway.output()
        assert "Traceback" not in gateway.output()
    finally:
        gateway.kill()
