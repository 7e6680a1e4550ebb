"""Small synchronous HTTP helpers for the control plane (health polls, mock settings, stats).

Standard library only, loopback only: these calls are few and off the measured path.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from typing import Any

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A currently free loopback TCP port (tiny race with other binders; fine for a bench)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def request(method: str, port: int, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """One HTTP request to ``127.0.0.1:port``; returns (status, parsed JSON or text)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")
    finally:
        conn.close()


def wait_ready(port: int, path: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll ``GET path`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before becoming ready")
        try:
            status, _ = request("GET", port, path, timeout=2.0)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"127.0.0.1:{port}{path} not ready after {timeout:.0f} s ({last})")
