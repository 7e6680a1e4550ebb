"""A real redis-server (Debian's `redis-server` package) for any test: `start_redis(dir)`.

The fixtures `redis_server` (one per session) and `redis_url` (that server, emptied) are in
tests/conftest.py. The server runs in a temp dir on a free loopback port, without persistence. Without
the binary a test FAILS (never skips): what it pins needs the real server. `tests/run.sh` installs the
package when run as root.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .process import free_port

START_TIMEOUT_S = 30.0


@dataclass
class RedisServer:
    proc: subprocess.Popen[bytes]
    port: int
    dir: Path
    log: Path
    cmd: list[str] = field(default_factory=list)  # how it was started: restart() runs it again

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *args: str) -> bytes:
        """One command over a fresh socket (RESP inline), its raw reply: the fixture needs no client library."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall((" ".join(args) + "\r\n").encode())
            return s.recv(65536)

    def keys(self, pattern: str) -> list[str]:
        """KEYS `pattern` (a test's handful of keys: fine on a test server)."""
        lines = self.command("KEYS", pattern).decode().split("\r\n")
        return [line for line in lines[1:] if line and not line.startswith(("$", "*"))]

    def get(self, key: str) -> str | None:
        """GET `key`'s text, None when absent."""
        reply = self.command("GET", key).decode()
        if reply.startswith("$-1"):
            return None
        assert reply.startswith("$"), reply
        return reply.split("\r\n")[1]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def shutdown(self, save: bool = True) -> None:
        """Stop as an operator would: SHUTDOWN SAVE writes dump.rdb (in `dir`), so a `start()` finds the
        data again (a restart), where `stop()` (SIGKILL) loses it."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):  # it closes the connection as it exits
                self.command("SHUTDOWN", "SAVE" if save else "NOSAVE")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.stop()

    def start(self) -> None:
        """Start the server again, same port, same directory (after `shutdown()` or `stop()`)."""
        assert self.cmd and self.proc.poll() is not None, "start() is for a stopped server"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if self.command("PING").startswith((b"+PONG", b"-NOAUTH")):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail(f"redis-server did not start again: {self.log.read_text(errors='replace')[-2000:]}", pytrace=False)

    def restart(self) -> None:
        """SHUTDOWN SAVE, then start on the same port with the same data."""
        self.shutdown(save=True)
        self.start()


def start_redis(directory: Path, *extra: str) -> RedisServer:
    """Start redis-server in `directory` on a free loopback port; return once it answers PING."""
    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: the Redis shared-state tests need Debian's package "
            "(`apt-get install redis-server`; tests/run.sh does it as root)",
            pytrace=False,
        )
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(5):  # another process may take the port between free_port() and the bind
        port = free_port()
        cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", ""]
        cmd += ["--appendonly", "no", "--protected-mode", "yes", *extra]
        log = directory / f"redis-{port}.log"  # a file, not a pipe: a full pipe would stall the server
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=directory)
        server = RedisServer(proc, port, directory, log, cmd)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                reply = server.command("PING")
            except OSError:
                time.sleep(0.05)
                continue
            if reply.startswith((b"+PONG", b"-NOAUTH")):  # up (a server with a password says NOAUTH)
                return server
            time.sleep(0.05)
        server.stop()
        output = log.read_bytes()
        if b"Address already in use" not in output:
            pytest.fail(f"redis-server did not start: {output.decode(errors='replace')[-2000:]}", pytrace=False)
    pytest.fail("redis-server found no free port in 5 attempts", pytrace=False)
