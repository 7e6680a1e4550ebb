"""The bench's governance option keeps working: `--targets ...,bifrost-gov` runs the gateway with every
request governed (bench/governance_plugin.py) and nothing is refused, and `python -m bench.governance`
measures the hooks in-process. No speed is asserted (bench/README.md states the numbers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness.bench_run import run_bench, smoke

pytest.importorskip("psutil")


@pytest.mark.timeout(300)
def test_overhead_smoke_with_governance_on(tmp_path: Path) -> None:
    targets = "direct,bifrost,bifrost-gov"
    smoke(tmp_path, "--targets", targets, "--only", "overhead", timeout=300)
    doc = json.loads((tmp_path / "overhead.json").read_text())
    cells = {c["target"]: c for c in doc["cells"]}
    assert "bifrost-gov" in cells, doc.get("skipped")
    gov = cells["bifrost-gov"]
    assert gov["ok"] > 0 and not gov["errors"]  # governed, and never refused (limits far above the run)
    assert "bifrost-gov" in doc["derived"]


def test_in_process_governance_bench() -> None:
    proc = run_bench("bench.governance", "--requests", "500", "--runs", "2", timeout=60)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "governed_us: best" in proc.stdout
