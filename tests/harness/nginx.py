"""A real nginx (Debian's `nginx` package) in front of gateway instances: `start_nginx(dir, ports)`.

It runs the repository's own `packaging/cluster/nginx.conf`, the file users copy, so the tests exercise
what the deployment guide (docs/cluster.md) ships. That file is written for nginx's `http {}` context and
marks the two lines a deployment fills in; the harness changes exactly those and nothing else:

    include /etc/nginx/bifrost-upstreams.conf;   # UPSTREAMS -> include <dir>/upstreams.conf (our servers)
    listen 80;                                   # LISTEN    -> listen 127.0.0.1:<free port>;

and wraps it in a minimal main file of its own (foreground `daemon off`, pid, logs and temp paths in the
temp dir, one worker). `reload(ports)` rewrites the server list and sends SIGHUP, as `nginx -s reload`
does, then waits until the new workers answer: a control server in the wrapper returns the config
generation, so "reloaded" is observed, never assumed. As root the workers run as root (they must reach
the temp dir); otherwise as the current user. Without the binary a test FAILS (never skips).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .process import REPO_ROOT, free_port

PACKAGED_CONF = REPO_ROOT / "packaging" / "cluster" / "nginx.conf"
UPSTREAMS_LINE = "include /etc/nginx/bifrost-upstreams.conf;"
LISTEN_RE = re.compile(r"^(\s*)listen 80;(.*)$", re.MULTILINE)
START_TIMEOUT_S = 30.0
# What the harness puts on each server line; the packaged bifrost-upstreams.conf uses the same values.
SERVER_PARAMS = "max_fails=3 fail_timeout=10s"
# One line per request: which instance answered (tests read it to see nginx spread and route around).
LOG_FORMAT = (
    '\'$remote_addr "$request" $status upstream=$upstream_addr upstream_status=$upstream_status '
    "rid=$upstream_http_x_request_id'"
)


def _binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        pytest.fail(
            "nginx is not installed: the cluster tests need Debian's package "
            "(`apt-get install nginx`; tests/run.sh does it as root)",
            pytrace=False,
        )
    return found


def site_conf(upstreams_file: Path, port: int, source: Path = PACKAGED_CONF) -> str:
    """The packaged file with its two deployment lines filled in; fails if either is not there exactly once."""
    text = source.read_text()
    if text.count(UPSTREAMS_LINE) != 1:
        raise AssertionError(f"{source}: expected exactly one `{UPSTREAMS_LINE}` line (the instance list)")
    if len(LISTEN_RE.findall(text)) != 1:
        raise AssertionError(f"{source}: expected exactly one `listen 80;` line")
    text = text.replace(UPSTREAMS_LINE, f"include {upstreams_file};")
    return LISTEN_RE.sub(lambda m: f"{m.group(1)}listen 127.0.0.1:{port};{m.group(2)}", text)


def upstream_lines(ports: Sequence[int]) -> str:
    return "".join(f"server 127.0.0.1:{p} {SERVER_PARAMS};\n" for p in ports)


@dataclass
class NginxServer:
    binary: str
    dir: Path
    port: int
    control_port: int
    proc: subprocess.Popen[bytes] | None = None
    generation: int = 0
    ports: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        return self.dir / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.dir / "error.log"

    @property
    def access_log(self) -> Path:
        return self.dir / "access.log"

    def _write(self, ports: Sequence[int]) -> None:
        self.generation += 1
        self.ports = list(ports)
        (self.dir / "upstreams.conf").write_text(upstream_lines(ports))
        (self.dir / "bifrost.conf").write_text(site_conf(self.dir / "upstreams.conf", self.port))
        user = "user root root;\n" if os.geteuid() == 0 else ""
        d = self.dir
        self.conf.write_text(
            f"{user}daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n"
            f"error_log {self.error_log} info;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            f"  log_format cluster {LOG_FORMAT};\n"
            f"  access_log {self.access_log} cluster;\n"
            f"  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n"
            f"  fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n"
            f"  include {d}/bifrost.conf;\n"
            # The harness's own control server: which config generation the running workers loaded.
            f"  server {{ listen 127.0.0.1:{self.control_port}; access_log off;\n"
            f'    location = /generation {{ return 200 "{self.generation}"; }} }}\n'
            "}\n"
        )

    def _command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", str(self.dir), "-c", str(self.conf), "-e", str(self.error_log), *extra]

    def check(self) -> None:
        """`nginx -t` on the current files (what an operator runs before a reload)."""
        done = subprocess.run(self._command("-t"), capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise AssertionError(f"nginx -t refused the config:\n{done.stderr}")

    def _generation_live(self) -> int | None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://127.0.0.1:{self.control_port}/generation", timeout=2) as response:
                return int(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def _wait_generation(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                pytest.fail(f"nginx exited:\n{self.output()}", pytrace=False)
            if self._generation_live() == self.generation:
                return
            time.sleep(0.05)
        pytest.fail(f"nginx did not load generation {self.generation} in {START_TIMEOUT_S:.0f} s:\n{self.output()}")

    def start(self, ports: Sequence[int]) -> None:
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        self._write(ports)
        self.check()
        out = (self.dir / "stdout.log").open("ab")
        try:
            self.proc = subprocess.Popen(self._command(), stdout=out, stderr=subprocess.STDOUT, cwd=self.dir)
        finally:
            out.close()
        self._wait_generation()

    def _workers(self) -> set[int]:
        assert self.proc is not None
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return set()
        return {int(pid) for pid in text.split()}

    def reload(self, ports: Sequence[int], old_workers_timeout: float = 10.0) -> None:
        """A new server list, live: SIGHUP (what `nginx -s reload` sends). Returns once the new workers
        answer and the old ones have exited (they finish their requests first; until then they may still
        accept a connection), or after `old_workers_timeout` if an old one is still busy."""
        assert self.proc is not None and self.proc.poll() is None, "nginx is not running"
        old = self._workers()
        self._write(ports)
        self.check()
        self.proc.send_signal(signal.SIGHUP)
        self._wait_generation()
        deadline = time.monotonic() + old_workers_timeout
        while old & self._workers() and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        """Fast shutdown (SIGTERM); waits for the master to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def upstreams_used(self) -> list[str]:
        """The `upstream=` field of every access-log line so far (comma-separated when nginx tried several)."""
        if not self.access_log.exists():
            return []
        return re.findall(r"upstream=(\S+)", self.access_log.read_text(errors="replace"))

    def served_by(self) -> dict[str, str]:
        """Request id (the gateway's x-request-id) -> the instance (host:port) that answered it."""
        if not self.access_log.exists():
            return {}
        text = self.access_log.read_text(errors="replace")
        # A request nginx passed on lists every instance it tried ("a, b"): the last one answered.
        found = re.findall(r"upstream=(.+?) upstream_status=.+? rid=(\S+)$", text, re.MULTILINE)
        return {rid: addrs.split(", ")[-1] for addrs, rid in found}

    def wait_served(self, ids: set[str], timeout: float = 10.0) -> dict[str, str]:
        """`served_by()` once it names every id in `ids` (nginx logs a request just after answering it)."""
        deadline = time.monotonic() + timeout
        served = self.served_by()
        while not ids <= set(served) and time.monotonic() < deadline:
            time.sleep(0.02)
            served = self.served_by()
        assert ids <= set(served), f"no access-log line for {sorted(ids - set(served))[:5]} after {timeout} s"
        return served

    def wait_log_lines(self, n: int, timeout: float = 10.0) -> list[str]:
        """`upstreams_used()` once it has `n` lines (nginx writes a line just after the answer, not before)."""
        deadline = time.monotonic() + timeout
        used = self.upstreams_used()
        while len(used) < n and time.monotonic() < deadline:
            time.sleep(0.02)
            used = self.upstreams_used()
        assert len(used) >= n, f"{len(used)} access-log lines after {timeout} s, expected {n}"
        return used

    def output(self) -> str:
        parts = []
        for path in (self.error_log, self.dir / "stdout.log"):
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"---- nginx {path.name} ----\n{text[-4000:]}")
        return "\n".join(parts)


def start_nginx(directory: Path, ports: Sequence[int]) -> NginxServer:
    """nginx on a free loopback port in `directory`, proxying to gateway instances on `ports`."""
    directory.mkdir(parents=True, exist_ok=True)
    server = NginxServer(_binary(), directory, free_port(), free_port())
    server.start(ports)
    return server
