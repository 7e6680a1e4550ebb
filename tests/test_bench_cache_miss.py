"""`python -m bench.cache_miss`: the plugin's in-process cost of a miss, every request a real miss that is stored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_measured_request_misses_and_is_stored() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.cache_miss", "--n", "200", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["n"] == 200 and result["misses"] == 200 and result["stored"] == 200
    assert result["pre_hook_us"] > 0 and result["on_finish_us"] > 0
    assert result["total_us"] == round(result["pre_hook_us"] + result["post_hook_us"] + result["on_finish_us"], 1)
