"""Runs the bench as its users do: `python -m <module> ARGS` from the checkout, with its output captured.

bench/ is not an installed package: the child finds it through PYTHONPATH set to the repository root.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_bench(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m module args` in the repository root; the finished process (never raises on its exit code)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def smoke(out: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    """`python -m bench smoke --out out args`; fails the calling test with stderr's tail unless it exits 0."""
    proc = run_bench("bench", "smoke", "--out", str(out), *args, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc
