"""A real PostgreSQL server (Debian's `postgresql` package) for any test: `start_postgres(dir)`.

The fixtures `postgres_server` (one per session) and `postgres_db` (a fresh, empty database on it,
owned by the role `bifrost`) are in tests/conftest.py. The cluster is created by `initdb` in a temp dir
and listens on a free loopback port, with trust authentication on loopback only and durability off
(fsync, synchronous commit): a test server, never a template for production. Without the binaries a
test FAILS (never skips): what it pins needs the real server. `tests/run.sh` installs the package as root.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user the
Debian package creates (`runuser`), and the data directory is handed to it.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .process import free_port

START_TIMEOUT_S = 60.0
ROLE = "bifrost"  # the role the gateway connects as (the example config: user bifrost, no password)


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail(
            "PostgreSQL is not installed: the cluster-mode tests need Debian's package "
            "(`apt-get install postgresql`; tests/run.sh does it as root)",
            pytrace=False,
        )
    return Path(found[-1]).parent


def _as_server_user(cmd: list[str]) -> list[str]:
    """`cmd` run as the `postgres` user when we are root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@dataclass
class PostgresServer:
    bin: Path
    dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)
    _counter: int = 0

    def __post_init__(self) -> None:
        self.log = self.dir / "postgres.log"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def dsn(self, database: str = "postgres", user: str = ROLE) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def settings(self, database: str) -> dict[str, str]:
        """The `config` of a Go Bifrost `config_store` / `logs_store` block pointing at `database`."""
        return {
            "host": "127.0.0.1",
            "port": str(self.port),
            "user": ROLE,
            "password": "",
            "db_name": database,
            "ssl_mode": "disable",
        }

    # -- running -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start (or restart, on the same port) and return once it accepts connections."""
        sock_dir = self.dir / "sock"
        cmd = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1"]
        cmd += ["-k", str(sock_dir), "-c", "fsync=off", "-c", "synchronous_commit=off"]
        cmd += ["-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "shared_buffers=128MB"]
        out = self.log.open("ab")  # a file, not a pipe: a full pipe would stall the server
        try:
            self.proc = subprocess.Popen(_as_server_user(cmd), stdout=out, stderr=subprocess.STDOUT, cwd=self.dir)
        finally:
            out.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"postgres did not start: {self.log.read_text(errors='replace')[-2000:]}", pytrace=False)
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"], check=False
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"postgres did not accept connections in {START_TIMEOUT_S:.0f} s", pytrace=False)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: active sessions are ended); waits for the process to exit."""
        if self.proc is not None and self.proc.poll() is None:
            # Signal the postmaster itself (its pid file): `runuser` does not pass SIGINT on.
            try:
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGINT)
            except (OSError, ValueError, IndexError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    # -- administering -------------------------------------------------------------------------------
    def psql(self, sql: str, database: str = "postgres", user: str = "postgres") -> str:
        """Run `sql` with psql over loopback; its unaligned, tuples-only output."""
        cmd = [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", user, "-d", database]
        cmd += ["-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-c", sql]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def new_database(self, prefix: str = "t") -> str:
        """A fresh, empty database owned by the `bifrost` role; its name."""
        self._counter += 1
        name = f"{prefix}_{os.getpid()}_{self._counter}"
        self.psql(f"CREATE DATABASE {name} OWNER {ROLE}")
        return name


def server_directory() -> Path:
    """A fresh directory for a cluster, straight under the system temp dir: as root the server runs as
    `postgres`, which must reach it, and pytest's own temp tree is root-only (and another pytest session
    resets its mode), so the cluster does not live there. The caller removes it."""
    directory = Path(tempfile.mkdtemp(prefix="bifrost-pg-"))
    directory.chmod(0o711)  # the server user may pass through, not list
    return directory


def start_postgres(directory: Path) -> PostgresServer:
    """initdb in `directory`, start on a free loopback port, create the `bifrost` role and database."""
    bin_dir = _bin_dir()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sock").mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
        shutil.chown(directory / "sock", "postgres", "postgres")
        os.chmod(directory, 0o700)
    init = [str(bin_dir / "initdb"), "-D", str(directory / "data"), "-U", "postgres", "--auth=trust"]
    init += ["-E", "UTF8", "--locale=C", "--no-sync"]
    done = subprocess.run(_as_server_user(init), capture_output=True, text=True, check=False, cwd=directory)
    if done.returncode != 0:
        pytest.fail(f"initdb failed: {done.stdout[-1000:]}{done.stderr[-2000:]}", pytrace=False)
    # Loopback only, trust: a throwaway test cluster.
    (directory / "data" / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
    )
    server = PostgresServer(bin_dir, directory, free_port())
    server.start()
    server.psql(f"CREATE ROLE {ROLE} LOGIN CREATEDB")
    server.psql(f"CREATE DATABASE {ROLE} OWNER {ROLE}")
    return server
