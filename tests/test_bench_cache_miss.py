"""`python -m bench.cache_miss`: the plugin's in-process cost of a miss, every request a real miss that is stored."""

from __future__ import annotations

import json

from harness.bench_run import run_bench


def test_every_measured_request_misses_and_is_stored() -> None:
    out = run_bench("bench.cache_miss", "--n", "200", "--json", timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["n"] == 200 and result["misses"] == 200 and result["stored"] == 200
    assert result["pre_hook_us"] > 0 and result["on_finish_us"] > 0
    assert result["total_us"] == round(result["pre_hook_us"] + result["post_hook_us"] + result["on_finish_us"], 1)
