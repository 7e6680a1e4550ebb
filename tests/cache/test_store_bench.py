"""bench/cache_index.py stays runnable: a tiny run through both index forms (flat and graph)."""

from __future__ import annotations

import json

import pytest

from bench import cache_index


def test_cache_index_bench_runs_small(capsys: pytest.CaptureFixture[str]) -> None:
    assert cache_index.main(["--entries", "1200", "--dims", "16", "--namespaces", "10,1", "--json"]) == 0
    runs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["namespaces"] for r in runs] == [10, 1]  # 120 per namespace: flat; 1,200 in one: a graph
    for r in runs:
        assert r["entries"] == 1200 and r["recall"] > 0.9 and r["false_hits"] == 0
        assert r["hit_p50_ms"] > 0 and r["index_build_s"] >= r["open_s"]
