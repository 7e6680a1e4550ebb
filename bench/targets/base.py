"""What every benchmark target provides: a port, a model name, a process to watch, start and stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from typing import IO, Any

from bench import control
from bench.pinning import Layout, gateway_preexec


class TargetUnavailable(RuntimeError):
    """The target cannot run here (not installed, missing a flag); the suite skips it and says why."""


@dataclass(slots=True)
class Running:
    """A started target as the load generator sees it."""

    name: str
    port: int
    model: str
    pid: int | None  # root of the process tree whose RSS/CPU is reported
    embedding_model: str = "text-embedding-3-small"
    notes: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # sent with every request (e.g. a virtual key)


class Target:
    """Base class; subclasses set ``name`` and implement ``start``."""

    name = "target"
    ready_path = "/"  # answers GET with 200 once the target serves
    start_timeout = 60.0  # seconds the target may take to get there

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self._log: IO[Any] | None = None
        self.log_path = ""  # the target's own output (stdout and stderr), once spawned
        self.exit_code: int | None = None

    def start(self, mock_origin: str, layout: Layout, port: int | None = None) -> Running:
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful drain, log flush), then SIGKILL after ``timeout``."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.exit_code = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None
        return self.exit_code

    def _spawn(
        self, cmd: list[str], env: dict[str, str], log_path: str, cwd: str | None = None, preexec: Any = None
    ) -> subprocess.Popen:
        # Own process group: SIGTERM reaches every worker the gateway forks, and nothing of ours.
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process

        def setup() -> None:
            os.setpgrp()
            if preexec is not None:
                preexec()

        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=setup,
        )
        return self.proc

    def _spawn_ready(
        self,
        cmd: list[str],
        env: dict[str, str],
        log_path: str,
        *,
        port: int,
        layout: Layout,
        cwd: str | None = None,
    ) -> subprocess.Popen:
        """`_spawn` on the layout's gateway cores, then wait until ``GET ready_path`` answers 200 on ``port``;
        a target that exits or does not answer in ``start_timeout`` seconds is stopped and raises
        TargetUnavailable with its log's tail."""
        proc = self._spawn(cmd, env, log_path, cwd=cwd, preexec=gateway_preexec(layout))
        try:
            control.wait_ready(port, self.ready_path, self.start_timeout, proc)
        except RuntimeError as exc:
            self.stop(5)
            raise TargetUnavailable(f"{self.name} did not start: {exc}\n{self.log_tail()}") from None
        return proc

    def log_tail(self, n: int = 2000) -> str:
        """The last ``n`` characters of the target's own output (for error messages)."""
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, errors="replace") as fh:
                return fh.read()[-n:]
        except OSError:
            return ""
