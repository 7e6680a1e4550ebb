"""The guardrails benches still run and report what bench/README.md quotes (tiny runs: numbers are not
judged here, only that each line is produced; the numbers come from full runs, never from tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_engine_bench_reports_the_input_check_with_and_without_findings() -> None:
    out = run("bench.guardrails_gateway", "--iterations", "200")
    assert "config: the issue's example" in out
    assert re.search(r"input check, nothing found: +median [\d.]+ us", out), out
    assert re.search(r"input check, one e-mail redacted: median [\d.]+ us", out), out


def test_detector_bench_reports_each_detector_and_what_it_found() -> None:
    out = run("bench.guardrails_detectors", "--seconds", "0.1")
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    for name in ("pii", "secrets", "size", "pii+secrets"):
        assert name in rows, out
    assert "credit_card" in rows["pii"] and "email" in rows["pii"]
    assert "aws_access_key" in rows["secrets"]
