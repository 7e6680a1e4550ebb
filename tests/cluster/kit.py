"""The cluster tests' kit: N gateway processes started the way the systemd unit starts them, one shared
config file, a real nginx in front (tests/harness/nginx.py), and a concurrent load helper.

    cluster = Cluster(tmp_path, config, env={"OPENAI_API_KEY": "sk-fake-1"}).start(3)
    statuses = await cluster.load(24, concurrency=8, api_key=VK)
    cluster.kill(0)

Each instance is started from packaging/cluster/bifrost@.service: its ExecStartPre (copy the shared
config.json into the instance's app dir) and ExecStart lines are read from the file, `%i` becomes the
instance's port, `${STATE_DIRECTORY}` its app dir, `/etc/bifrost/config.json` the test's shared file, and
the `bifrost` executable `python -m bifrost_cli` (this checkout's code). So the tests run what the
deployment guide tells users to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from harness.nginx import NginxServer, start_nginx
from harness.process import REPO_ROOT, Gateway, free_port, spawn

UNIT = REPO_ROOT / "packaging" / "cluster" / "bifrost@.service"
EXAMPLE = REPO_ROOT / "packaging" / "cluster" / "config.cluster.json"
SHARED_CONFIG_PATH = "/etc/bifrost/config.json"  # what the unit copies into every instance's app dir


def unit_directives(text: str) -> dict[str, list[str]]:
    """`Key=value` lines of a unit file, every value of each key in order (comments and sections skipped)."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def _substitute(argv: list[str], port: int, app_dir: Path, shared_config: Path) -> list[str]:
    out = []
    for arg in argv:
        arg = arg.replace("%i", str(port)).replace("${STATE_DIRECTORY}", str(app_dir))
        out.append(arg.replace(SHARED_CONFIG_PATH, str(shared_config)))
    if Path(out[0]).name == "bifrost":  # the installed console script -> this checkout's code
        out[:1] = [sys.executable, "-m", "bifrost_cli"]
    return out


def unit_commands(port: int, app_dir: Path, shared_config: Path) -> tuple[list[list[str]], list[str]]:
    """(ExecStartPre command lines, the ExecStart command line) of the packaged unit for one instance."""
    directives = unit_directives(UNIT.read_text())
    start = directives.get("ExecStart", [])
    assert len(start) == 1, f"{UNIT}: expected one ExecStart line, found {start}"
    pre = [_substitute(shlex.split(line), port, app_dir, shared_config) for line in directives.get("ExecStartPre", [])]
    return pre, _substitute(shlex.split(start[0]), port, app_dir, shared_config)


@dataclass
class Outcome:
    """One request of a load: HTTP status (0: no answer), the error body's code, time taken."""

    status: int
    code: str | None
    elapsed_s: float
    request_id: str | None
    error: str | None = None


class Cluster:
    """N instances of the gateway (same config file, own app dirs) behind one nginx."""

    def __init__(self, directory: Path, config: Mapping[str, Any] | str, env: Mapping[str, str] | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shared_config = self.dir / "etc-bifrost" / "config.json"
        self.shared_config.parent.mkdir(exist_ok=True)
        self.shared_config.write_text(config if isinstance(config, str) else json.dumps(config, indent=2))
        self.env = dict(env or {})
        self.instances: list[Gateway] = []
        self._retired: list[Gateway] = []  # instances replaced by restart(): their output is still shown
        self.nginx: NginxServer | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    def start_instance(self, port: int | None = None, *, wait: bool = True) -> Gateway:
        """One more instance, started by the unit's command lines (not yet behind nginx: see reload())."""
        port = port or free_port()
        app_dir = self.dir / f"instance-{port}"
        app_dir.mkdir(parents=True, exist_ok=True)
        pre, command = unit_commands(port, app_dir, self.shared_config)
        for argv in pre:
            subprocess.run(argv, check=True, timeout=30)
        gateway = spawn(app_dir, port=port, command=command, env=self.env)
        self.instances.append(gateway)
        if wait:
            gateway.wait_healthy()
        return gateway

    def restart(self, index: int) -> Gateway:
        """Start instance `index` again (same port, same app dir, same unit lines): what systemd's
        Restart=on-failure does after a crash. Returns once it is healthy."""
        old = self.instances[index]
        pre, command = unit_commands(old.port, old.app_dir, self.shared_config)
        for argv in pre:
            subprocess.run(argv, check=True, timeout=30)
        gateway = spawn(old.app_dir, port=old.port, command=command, env=self.env)
        self.instances[index] = gateway
        self._retired.append(old)
        gateway.wait_healthy()
        return gateway

    def start(self, n: int) -> Cluster:
        started = [self.start_instance(wait=False) for _ in range(n)]
        for gateway in started:  # started side by side: their start-ups (store migrations included) overlap
            gateway.wait_healthy()
        self.nginx = start_nginx(self.dir / "nginx", [g.port for g in started])
        return self

    def reload(self, ports: Sequence[int] | None = None) -> None:
        """Point nginx at `ports` (default: every running instance)."""
        assert self.nginx is not None
        self.nginx.reload(list(ports) if ports is not None else [g.port for g in self.instances if g.running()])

    def kill(self, index: int) -> Gateway:
        """SIGKILL one instance (its whole process group: no drain, no flush)."""
        gateway = self.instances[index]
        gateway.kill()
        return gateway

    def term(self, index: int, timeout: float = 60.0) -> int:
        """SIGTERM one instance and wait for its exit code (the unit's stop)."""
        return self.instances[index].stop(signal.SIGTERM, timeout)

    def stop(self) -> None:
        for gateway in self.instances:
            if gateway.running():
                with contextlib.suppress(Exception):
                    gateway.stop(timeout=20)
            gateway.kill()
        if self.nginx is not None:
            self.nginx.stop()

    def output(self) -> str:
        parts = [g.output() for g in (*self._retired, *self.instances)]
        if self.nginx is not None:
            parts.append(self.nginx.output())
        return "\n".join(parts)

    # -- traffic -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self.nginx is not None
        return self.nginx.url

    async def load(
        self,
        n: int,
        *,
        concurrency: int = 8,
        api_key: str | None = None,
        body: Mapping[str, Any] | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        pause_s: float = 0.0,
        retry_disconnects: bool = False,
    ) -> list[Outcome]:
        """`n` chat completions through nginx (or `base_url`), `concurrency` at a time; every outcome.

        With `retry_disconnects`, a request whose connection was closed before any answer came back is sent
        once more, as the official SDKs do (openai and anthropic retry connection errors twice): it is what
        a client sees when nginx reloads and its old workers close their idle keep-alive connections. The
        close shows as one of CLOSED_UNANSWERED, depending on whether it lands while the request
        is being written or while its answer is awaited; a timeout is never retried."""
        payload = dict(body or {"model": "mock/mock-chat", "messages": [{"role": "user", "content": "hi"}]})
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        url = (base_url or self.url) + "/v1/chat/completions"
        queue = iter(range(n))
        outcomes: list[Outcome] = []
        bound = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(timeout=bound, trust_env=False) as session:

            async def worker() -> None:
                for _ in queue:
                    outcome = await post(session, url, payload, headers)
                    if (
                        retry_disconnects
                        and outcome.status == 0
                        and (outcome.error or "").startswith(CLOSED_UNANSWERED)
                    ):
                        outcome = await post(session, url, payload, headers)
                    outcomes.append(outcome)
                    if pause_s:
                        await asyncio.sleep(pause_s)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return outcomes


# How aiohttp reports a keep-alive connection the server closed under a request it had not answered: while
# the request was being written (ClientOSError: "Can not write request body", or its subclass
# ClientConnectionResetError), or while its answer was awaited (ServerDisconnectedError).
CLOSED_UNANSWERED = ("ServerDisconnectedError", "ClientOSError", "ClientConnectionResetError")


async def post(
    session: aiohttp.ClientSession, url: str, payload: Mapping[str, Any], headers: Mapping[str, str]
) -> Outcome:
    """One POST; its outcome (a transport failure or timeout is status 0 with the error's name)."""
    started = time.monotonic()
    try:
        async with session.post(url, json=payload, headers=headers) as response:
            body = await response.read()
            status, request_id = response.status, response.headers.get("x-request-id")
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return Outcome(0, None, time.monotonic() - started, None, f"{type(exc).__name__}: {exc}")
    code = None
    if status != 200:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            code = json.loads(body)["error"]["code"]
    return Outcome(status, code, time.monotonic() - started, request_id)


# -- fixed ports for the example file ------------------------------------------------------------
class Forwarder:
    """A loopback TCP relay from a fixed port (the example file's 5432 / 6379) to a test server's port.

    The issue's example must work as written, and it names PostgreSQL on 127.0.0.1:5432 and Redis on
    127.0.0.1:6379; the test servers run on free ports (the machine may have its own on the defaults, and
    tests run side by side), so the example's ports are relayed byte for byte to them. Fails (never skips)
    when the fixed port is taken.
    """

    def __init__(self, listen_port: int, target_port: int) -> None:
        self.target_port = target_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind(("127.0.0.1", listen_port))
        except OSError as exc:
            self.sock.close()
            raise AssertionError(
                f"127.0.0.1:{listen_port} is taken ({exc}): the issue's example file needs that port free "
                "for the test's relay to the test server"
            ) from None
        self.sock.listen(64)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()  # the server is down: the client sees its connection end, as with a refusal
                continue
            upstream.settimeout(None)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def forwarded(pairs: Sequence[tuple[int, int]]) -> Iterator[None]:
    forwarders: list[Forwarder] = []
    try:
        for listen_port, target_port in pairs:
            forwarders.append(Forwarder(listen_port, target_port))
        yield
    finally:
        for forwarder in forwarders:
            forwarder.close()


def restart_redis(server: Any, down_s: float = 1.0) -> Any:
    """Kill a test redis-server and start a new one on the same port after `down_s` (its data is gone,
    as after a crash without persistence); the new RedisServer."""
    from harness.redis import RedisServer

    server.stop()
    time.sleep(down_s)
    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin")
    assert binary is not None
    cmd = [binary, "--port", str(server.port), "--bind", "127.0.0.1", "--dir", str(server.dir), "--save", ""]
    cmd += ["--appendonly", "no", "--protected-mode", "yes"]
    log = server.dir / f"redis-{server.port}-restarted.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=server.dir)
    fresh = RedisServer(proc, server.port, server.dir, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if fresh.command("PING").startswith(b"+PONG"):
                return fresh
        time.sleep(0.05)
    raise AssertionError(f"redis-server did not come back on port {server.port}: {log.read_text(errors='replace')}")
