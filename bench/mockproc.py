"""Start and drive the mock provider as a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from bench import control
from bench.mock_responses import MockSettings

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env() -> dict[str, str]:
    """Environment for children that must import this checkout's ``bench``/``runtime``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


class MockProcess:
    """A running ``bench.mock_provider``; settings change live through ``/control``."""

    def __init__(self, settings: MockSettings | None = None, port: int = 0, cpus: list[int] | None = None) -> None:
        s = settings or MockSettings()
        cmd = [
            sys.executable,
            "-m",
            "bench.mock_provider",
            "--port",
            str(port),
            "--latency-ms",
            str(s.latency_ms),
            "--response-tokens",
            str(s.response_tokens),
            "--stream-chunks",
            str(s.stream_chunks),
            "--chunk-interval-ms",
            str(s.chunk_interval_ms),
            "--embedding-dim",
            str(s.embedding_dim),
            "--parent-pid",
            str(os.getpid()),
        ]
        pin = (lambda: os.sched_setaffinity(0, set(cpus))) if cpus else None
        self.proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=child_env(), stdout=subprocess.PIPE, text=True, preexec_fn=pin
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("listening on"):
            self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()
            raise RuntimeError(f"mock provider failed to start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        self.origin = f"http://127.0.0.1:{self.port}"
        self.pid = self.proc.pid

    def configure(self, **changes: Any) -> dict[str, Any]:
        _status, body = control.request("POST", self.port, "/control", changes)
        return body  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        _status, body = control.request("GET", self.port, "/stats")
        return body  # type: ignore[no-any-return]

    def reset(self) -> None:
        control.request("POST", self.port, "/stats/reset", {})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> MockProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
