"""The npm launcher (npm/bifrost/bin/bifrost) on its own, with BIFROST_BINARY pointing at a stand-in.

Fast: no build, no npm install; the stand-in is a small Python script that reports what it got.
The full path (frozen build, npm pack, offline install, npx) is in test_packaging.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "npm" / "bifrost" / "bin" / "bifrost"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

# Writes "ready" to a file, then waits; on SIGTERM/SIGINT/SIGHUP writes the signal's name and exits 40+signum.
STAND_IN = """\
import signal, sys, time
out = sys.argv[1]
def on_signal(signum, frame):
    with open(out, "a") as f:
        f.write(signal.Signals(signum).name + "\\n")
    sys.exit(40 + signum)
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, on_signal)
with open(out, "a") as f:
    f.write("ready " + " ".join(sys.argv[2:]) + "\\n")
time.sleep(60)
"""


def stand_in(tmp_path: Path) -> tuple[Path, Path]:
    script = tmp_path / "gateway.py"
    script.write_text(STAND_IN)
    exe = tmp_path / "fake-bifrost"
    events = tmp_path / "events.txt"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "{events}" "$@"\n')
    exe.chmod(0o755)
    return exe, events


def launch(exe: Path, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BIFROST_BINARY": str(exe)}
    return subprocess.Popen([str(NODE), str(LAUNCHER), *args], env=env, **kwargs)  # type: ignore[call-overload]


def wait_for(path: Path, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in (content := path.read_text()):
            return content
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {path}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_to_launcher_alone_is_forwarded_and_exit_code_returned(tmp_path: Path, sig: int) -> None:
    exe, events = stand_in(tmp_path)
    proc = launch(exe, "serve", "--port", "1234", start_new_session=True)
    try:
        assert wait_for(events, "ready").strip() == "ready serve --port 1234"  # argv passed through

        proc.send_signal(sig)  # the launcher only, as `kill <pid>` or a service manager does
        code = proc.wait(timeout=10)

        assert wait_for(events, signal.Signals(sig).name)
        assert code == 40 + sig  # the gateway's own exit code, not the launcher's
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_gateway_killed_by_signal_kills_launcher_the_same_way(tmp_path: Path) -> None:
    exe = tmp_path / "dies"
    exe.write_text("#!/bin/sh\nkill -KILL $$\n")
    exe.chmod(0o755)

    code = launch(exe).wait(timeout=10)

    assert code == -signal.SIGKILL


def test_exit_code_passes_through(tmp_path: Path) -> None:
    exe = tmp_path / "exits"
    exe.write_text("#!/bin/sh\nexit 7\n")
    exe.chmod(0o755)

    assert launch(exe).wait(timeout=10) == 7


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    proc = launch(tmp_path / "nope", stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=10)

    assert proc.returncode == 1
    assert b"gateway binary not found" in err


def test_missing_platform_package_says_how_to_fix(tmp_path: Path) -> None:
    # A copy of the launcher with no node_modules next to it: the optional dependency is absent.
    copy = tmp_path / "bifrost"
    shutil.copy(LAUNCHER, copy)
    env = {k: v for k, v in os.environ.items() if k != "BIFROST_BINARY"}
    proc = subprocess.run([str(NODE), str(copy)], env=env, capture_output=True, timeout=10)

    assert proc.returncode == 1
    if sys.platform == "linux" and os.uname().machine in ("x86_64", "aarch64"):
        assert b"is not installed" in proc.stderr
        assert b"--omit=optional" in proc.stderr
    assert b"BIFROST_BINARY" in proc.stderr


def test_unsupported_platform_is_a_clear_error(tmp_path: Path) -> None:
    # Pretend to be FreeBSD by overriding process.platform before the launcher runs.
    preload = tmp_path / "freebsd.js"
    preload.write_text('Object.defineProperty(process, "platform", { value: "freebsd" });\n')
    env = {k: v for k, v in os.environ.items() if k != "BIFROST_BINARY"}
    proc = subprocess.run(
        [str(NODE), "--require", str(preload), str(LAUNCHER)], env=env, capture_output=True, timeout=10
    )

    assert proc.returncode == 1
    assert b"no prebuilt gateway for freebsd-" in proc.stderr
    assert b"pipx run bifrost-gateway" in proc.stderr
