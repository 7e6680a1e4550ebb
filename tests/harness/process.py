"""The gateway as a real process: `python -m bifrost_cli serve --host … --port … --app-dir …`.

stdout and stderr go to files in the app dir's parent (never a pipe, which could fill and block the
gateway); `output()` reads them back for failure messages. The process runs in its own session so
teardown can kill it and any worker it forked by process-group id.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import openai

from .logdb import LogDB

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 45.0
STOP_TIMEOUT = 60.0
CLIENT_KEY = "sk-client-placeholder"  # clients need some key; the gateway uses its own configured keys

# Variables that would make the gateway pick up real providers or settings from the machine.
_HERMETIC_DROP = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "GROQ_API_KEY",
    "MISTRAL_API_KEY",
    "OPENROUTER_API_KEY",
    "TOGETHER_API_KEY",
    "FIREWORKS_API_KEY",
    "DEEPSEEK_API_KEY",
    "XAI_API_KEY",
    "CEREBRAS_API_KEY",
    "PERPLEXITY_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "COHERE_API_KEY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


class GatewayStartError(RuntimeError):
    pass


StartGateway = Callable[..., "Gateway"]  # the start_gateway fixture's type


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # Hermetic: no real credential of any provider (AWS_* and Google's included) reaches the gateway.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _HERMETIC_DROP and not k.startswith(("BIFROST_", "AWS_", "GOOGLE_", "VERTEX_", "AZURE_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def write_config(app_dir: Path, config: Mapping[str, Any] | str) -> Path:
    app_dir.mkdir(parents=True, exist_ok=True)
    path = app_dir / "config.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config, indent=2))
    return path


class Gateway:
    """A running gateway. `stop()` signals it and returns its exit code."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, app_dir: Path, out: Path, err: Path) -> None:
        self.proc = proc
        self.port = port
        self.app_dir = app_dir
        self.stdout_path = out
        self.stderr_path = err
        self.exit_code: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def log(self) -> LogDB:
        return LogDB(self.app_dir / "logs.db")

    def client(self, prefix: str = "/v1", **kwargs: Any) -> openai.OpenAI:
        """The official SDK pointed at the gateway; no SDK-side retries, so tests see the gateway's."""
        options: dict[str, Any] = {"api_key": CLIENT_KEY, "max_retries": 0, "timeout": 60.0}
        options.update(kwargs)
        return openai.OpenAI(base_url=self.base_url + prefix, **options)

    def async_client(self, prefix: str = "/v1", **kwargs: Any) -> openai.AsyncOpenAI:
        options: dict[str, Any] = {"api_key": CLIENT_KEY, "max_retries": 0, "timeout": 60.0}
        options.update(kwargs)
        return openai.AsyncOpenAI(base_url=self.base_url + prefix, **options)

    def output(self) -> str:
        parts = []
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"---- gateway {label} ----\n{text}")
        return "\n".join(parts)

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GatewayStartError(
                    f"gateway exited with {self.proc.returncode} before /health answered\n{self.output()}"
                )
            try:
                with opener.open(self.url("/health"), timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.05)
        self.kill()
        raise GatewayStartError(f"gateway did not answer GET /health within {timeout}s\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send `sig` and wait for the exit code; kill the process group if it does not exit."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        self.exit_code = self.proc.returncode
        return self.exit_code

    def kill(self) -> None:
        """SIGKILL the gateway's process group (it runs in its own session)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def _command(port: int, app_dir: Path, args: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bifrost_cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--app-dir",
        str(app_dir),
        *args,
    ]


def spawn(
    app_dir: Path,
    *,
    config: Mapping[str, Any] | str | None = None,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    port: int | None = None,
    command: Sequence[str] | None = None,
) -> Gateway:
    """Start the process; `command` replaces the usual `python -m bifrost_cli serve --host … ` line."""
    if config is not None:
        write_config(app_dir, config)
    app_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    logs = app_dir.parent
    out = logs / f"gateway-{port}.stdout.log"
    err = logs / f"gateway-{port}.stderr.log"
    with out.open("wb") as out_f, err.open("wb") as err_f:
        proc = subprocess.Popen(
            list(command) if command is not None else _command(port, app_dir, args),
            stdout=out_f,
            stderr=err_f,
            stdin=subprocess.DEVNULL,
            env=gateway_env(env),
            cwd=str(REPO_ROOT),
            start_new_session=True,
        )
    return Gateway(proc, port, app_dir, out, err)


def start_gateway(
    app_dir: Path,
    *,
    config: Mapping[str, Any] | str | None = None,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> Gateway:
    """Spawn the gateway and return once GET /health answers 200."""
    gateway = spawn(app_dir, config=config, env=env, args=args)
    gateway.wait_healthy()
    return gateway


def run_to_exit(
    app_dir: Path,
    *,
    config: Mapping[str, Any] | str | None = None,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    timeout: float = START_TIMEOUT,
) -> tuple[int, str, str]:
    """Start the gateway expecting it to refuse to start; return (exit code, stdout, stderr)."""
    gateway = spawn(app_dir, config=config, env=env, args=args)
    try:
        code = gateway.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        gateway.kill()
        raise AssertionError(f"gateway kept running; expected it to stop at start-up\n{gateway.output()}") from None
    return (
        code,
        gateway.stdout_path.read_text(errors="replace"),
        gateway.stderr_path.read_text(errors="replace"),
    )
