"""The three ways to run, for real: the wheel under pipx, the PyInstaller one-dir build, and npm.

Slow (a wheel build, `pipx run` installing the dependencies, a PyInstaller build, `npm pack` of the
frozen build): each artifact is built once per session and shared. Marked `packaging`, so a
developer can skip them (`pytest -m "not packaging"`); CI runs them.

Set BIFROST_FROZEN_DIST=/path/to/dist (holding bifrost/bifrost) to reuse a build instead of
building one here.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from harness.process import free_port, gateway_env

import runtime

REPO = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 900  # a cold PyInstaller build or pipx install on a slow CI machine
START_TIMEOUT = 300.0  # the first `pipx run` creates a venv and installs the dependencies

pytestmark = [pytest.mark.packaging, pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT + 300)]

_NPM_PLATFORMS = {("Linux", "x86_64"): "linux-x64", ("Linux", "aarch64"): "linux-arm64"}
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def child_env(**extra: str) -> dict[str, str]:
    """The hermetic test environment, minus PYTHONPATH: the artifact must run from its own files,
    not from this checkout."""
    env = gateway_env(extra)
    env.pop("PYTHONPATH", None)
    return env


def run(cmd: Sequence[object], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT
    )
    if proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


# ---------------------------------------------------------------------------------- artifacts


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, REPO])
    (built,) = out.glob("bifrost_gateway-*.whl")
    return built


@pytest.fixture(scope="session")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one-dir build directory (holding the `bifrost` executable and `_internal/`)."""
    given = os.environ.get("BIFROST_FROZEN_DIST")
    if given:
        return Path(given) / "bifrost"
    base = tmp_path_factory.mktemp("pyinstaller")
    env = {**os.environ, "PYTHON": sys.executable, "DIST_DIR": str(base / "dist"), "WORK_DIR": str(base / "work")}
    started = time.monotonic()
    print(run(["bash", REPO / "packaging" / "build.sh"], env=env))
    print(f"PyInstaller build: {time.monotonic() - started:.1f}s")
    return base / "dist" / "bifrost"


@dataclass
class NpmInstall:
    project: Path
    launcher: Path  # node_modules/.bin/bifrost


@pytest.fixture(scope="session")
def npm_install(frozen: Path, tmp_path_factory: pytest.TempPathFactory) -> NpmInstall:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("node and npm are needed for the npm packaging tests")
    plat = _NPM_PLATFORMS.get((platform.system(), platform.machine()))
    if plat is None:
        pytest.skip(f"no npm platform package for {platform.system()} {platform.machine()} in this test")
    base = tmp_path_factory.mktemp("npm")
    # Stage into a copy so the checkout's npm/ stays clean.
    npm_dir = base / "npm"
    shutil.copytree(REPO / "npm", npm_dir, ignore=shutil.ignore_patterns("node_modules", "bifrost-dist"))
    run(["node", npm_dir / "stage.mjs", "--dist", frozen, "--platform", plat])
    packs = base / "packs"
    packs.mkdir()
    run(["npm", "pack", "--silent", "--pack-destination", packs, npm_dir / "bifrost", npm_dir / "platforms" / plat])
    tarballs = sorted(packs.glob("*.tgz"))
    assert [t.name for t in tarballs] == ["maximhq-bifrost-0.1.0.tgz", f"maximhq-bifrost-{plat}-0.1.0.tgz"]

    project = base / "project"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "try-bifrost", "version": "1.0.0", "private": True}))
    # --offline with an empty cache: nothing may come from a registry, only these two tarballs.
    run(
        ["npm", "install", "--offline", "--no-audit", "--no-fund", "--cache", base / "cache", *tarballs],
        cwd=project,
    )
    return NpmInstall(project=project, launcher=project / "node_modules" / ".bin" / "bifrost")


# ---------------------------------------------------------------------------------- processes


class Started:
    """A process started in its own session (so its group id is its pid), output to a file."""

    def __init__(self, cmd: Sequence[object], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None):
        self.log = log
        self.started = time.monotonic()
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(c) for c in cmd],
                cwd=cwd,
                env=env or child_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def health(self, port: int, timeout: float = START_TIMEOUT) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode} before /health:\n{self.output()}")
            try:
                with _OPENER.open(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    return json.loads(resp.read())
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        raise AssertionError(f"/health did not answer within {timeout}s:\n{self.output()}")

    def group_alive(self) -> list[psutil.Process]:
        """Processes of this group still running (zombies waiting for a reaper have exited)."""
        alive = []
        for proc in psutil.process_iter(["status"]):
            try:
                if os.getpgid(proc.pid) == self.pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue
        return alive

    def wait_group_gone(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (alive := self.group_alive()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive, f"left running: {[p.cmdline() for p in alive]}\n{self.output()}"

    def kill(self) -> None:
        if self.group_alive():
            os.killpg(self.pgid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=30)


@pytest.fixture
def started() -> Iterator[list[Started]]:
    procs: list[Started] = []
    yield procs
    for proc in procs:
        proc.kill()


def start(procs: list[Started], cmd: Sequence[object], log: Path, **kwargs: object) -> Started:
    proc = Started(cmd, log, **kwargs)  # type: ignore[arg-type]
    procs.append(proc)
    return proc


def worker_pids(proc: Started, port: int, count: int, timeout: float = 20.0) -> set[int]:
    """/health from `count` different workers (SO_REUSEPORT spreads new connections)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        seen.add(int(proc.health(port)["pid"]))  # type: ignore[arg-type]
    assert len(seen) == count, f"only workers {seen} answered\n{proc.output()}"
    return seen


def assert_drained(proc: Started, workers: int) -> None:
    """Every worker logged the end of its drain, and nothing crashed on the way out."""
    text = proc.output()
    assert text.count(" stopped") >= workers, text
    assert "Traceback" not in text, text


# ---------------------------------------------------------------------------------------- pipx


def test_wheel_runs_under_pipx(wheel: Path, tmp_path: Path, started: list[Started]) -> None:
    port = free_port()
    env = child_env(PIPX_HOME=str(tmp_path / "pipx"), PIPX_BIN_DIR=str(tmp_path / "pipx" / "bin"))
    cmd = [sys.executable, "-m", "pipx", "run", "--spec", wheel, "bifrost"]
    cmd += ["--port", str(port), "--app-dir", tmp_path / "app"]
    gw = start(started, cmd, tmp_path / "pipx.log", env=env)

    health = gw.health(port)
    print(f"pipx run: /health after {time.monotonic() - gw.started:.1f}s (venv + install included)")
    assert health["status"] == "ok"
    # pipx execs the console script, so the process we started is the gateway itself.
    assert health["pid"] == gw.pgid

    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(timeout=60) == 0
    assert_drained(gw, 1)
    gw.wait_group_gone()


@pytest.mark.parametrize("spec_and_app", ["wheel:bifrost-gateway", "repo:bifrost"])
def test_pipx_run_by_distribution_name_and_from_a_checkout(wheel: Path, tmp_path: Path, spec_and_app: str) -> None:
    """`pipx run bifrost-gateway` finds the one console script, `bifrost`; `pipx run --spec . bifrost` builds
    the checkout. (The distribution is not on PyPI yet, so the first uses the wheel as its spec.)"""
    spec, app = spec_and_app.split(":")
    env = child_env(PIPX_HOME=str(tmp_path / "pipx"), PIPX_BIN_DIR=str(tmp_path / "pipx" / "bin"))
    cmd = [sys.executable, "-m", "pipx", "run", "--spec", wheel if spec == "wheel" else REPO, app, "--version"]
    assert run(cmd, env=env).strip().endswith("bifrost, version " + runtime.__version__)


# ----------------------------------------------------------------------------------- PyInstaller


def test_frozen_version(frozen: Path) -> None:
    started = time.monotonic()
    out = run([frozen / "bifrost", "--version"], env=child_env())
    print(f"frozen --version: {time.monotonic() - started:.2f}s")
    assert out.strip().startswith("bifrost, version ")
    size = sum(f.stat().st_size for f in frozen.rglob("*") if f.is_file())
    print(f"one-dir build: {size / 1e6:.0f} MB")


@pytest.mark.parametrize("workers", [1, 2])
def test_frozen_serves_health_and_drains(frozen: Path, tmp_path: Path, started: list[Started], workers: int) -> None:
    port = free_port()
    cmd = [frozen / "bifrost", "serve", "--port", port, "--app-dir", tmp_path / "app", "--workers", workers]
    gw = start(started, cmd, tmp_path / "frozen.log")

    health = gw.health(port)
    print(f"frozen --workers {workers}: /health after {time.monotonic() - gw.started:.2f}s")
    assert health["status"] == "ok"
    pids = worker_pids(gw, port, workers)
    if workers > 1:
        assert gw.pgid not in pids  # the supervisor only supervises
        assert {c.pid for c in psutil.Process(gw.pgid).children()} >= pids

    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(timeout=60) == 0
    assert_drained(gw, workers)
    gw.wait_group_gone()


def _post(port: int, path: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with _OPENER.open(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_frozen_guardrails_use_their_libraries(frozen: Path, tmp_path: Path, started: list[Started]) -> None:
    """Guardrails import their libraries by name (CEL, phonenumbers' region metadata, python-stdnum's
    validators and data files, detect-secrets' plugins): the frozen build must carry every one of them."""
    app = tmp_path / "app"
    app.mkdir()
    block = {
        "guardrail_providers": [
            {
                "id": 1,
                "provider_name": "pii",
                "config": {"entities": ["phone", "iban", "credit_card"], "action": "redact"},
            },
            {"id": 2, "provider_name": "secrets", "config": {"action": "block"}},
        ],
        "guardrail_rules": [
            {"id": 1, "name": "mask-pii", "cel_expression": "request.stream == false", "provider_config_ids": [1]},
            {"id": 2, "name": "no-keys", "cel_expression": "true", "apply_to": "input", "provider_config_ids": [2]},
        ],
    }
    (app / "config.json").write_text(json.dumps({"guardrails_config": block}))
    port = free_port()
    gw = start(started, [frozen / "bifrost", "serve", "--port", port, "--app-dir", app], tmp_path / "frozen.log")
    gw.health(port)
    key = "AKIA" + "Q3EGRIXZ7YB5NC2W"
    status, body = _post(
        port, "/v1/chat/completions", {"model": "mock/demo", "messages": [{"role": "user", "content": f"use {key}"}]}
    )
    assert status == 400 and body["error"]["type"] == "guardrail_blocked", body  # type: ignore[index]
    assert key not in json.dumps(body)
    text = "call +44 20 7946 0958, pay GB82 WEST 1234 5698 7654 32 or 4111 1111 1111 1111"
    status, body = _post(port, "/api/guardrails/test", {"text": text, "stage": "input"})
    assert status == 200, body
    assert body["text"] == "call [REDACTED:phone], pay [REDACTED:iban] or [REDACTED:credit_card]", body
    gw.proc.send_signal(signal.SIGTERM)
    assert gw.proc.wait(timeout=60) == 0


# ---------------------------------------------------------------------------------------- npm


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_npx_starts_and_group_signal_stops_cleanly(
    npm_install: NpmInstall, tmp_path: Path, started: list[Started], sig: signal.Signals
) -> None:
    """A terminal's Ctrl-C (SIGINT) or a service manager's stop (SIGTERM) goes to the whole process
    group: npm, the launcher, the gateway and its workers all receive it."""
    port = free_port()
    cmd = ["npx", "--offline", "bifrost", "serve", "--port", port, "--app-dir", tmp_path / "app", "--workers", "2"]
    gw = start(started, cmd, tmp_path / "npx.log", cwd=npm_install.project)

    assert gw.health(port)["status"] == "ok"
    print(f"npx bifrost: /health after {time.monotonic() - gw.started:.2f}s")
    worker_pids(gw, port, 2)
    frozen_procs = [p for p in gw.group_alive() if "bifrost-dist" in " ".join(p.cmdline())]
    assert len(frozen_procs) == 3  # supervisor + 2 workers, all started through the launcher

    os.killpg(gw.pgid, sig)
    gw.proc.wait(timeout=60)  # npx itself dies of the signal; what matters is what it started
    gw.wait_group_gone()
    assert_drained(gw, 2)


def test_sigterm_to_launcher_alone_is_forwarded(
    npm_install: NpmInstall, tmp_path: Path, started: list[Started]
) -> None:
    """`kill <launcher pid>` (no group): the launcher passes SIGTERM on and exits with the gateway's code."""
    port = free_port()
    cmd = [npm_install.launcher, "serve", "--port", port, "--app-dir", tmp_path / "app", "--workers", "2"]
    gw = start(started, cmd, tmp_path / "launcher.log", cwd=npm_install.project)
    assert gw.health(port)["status"] == "ok"
    worker_pids(gw, port, 2)

    gw.proc.send_signal(signal.SIGTERM)  # the node launcher only

    assert gw.proc.wait(timeout=60) == 0  # the gateway drained and exited 0; the launcher returned it
    assert_drained(gw, 2)
    gw.wait_group_gone()
