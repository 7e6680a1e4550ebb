"""The benchmark suite's own tests: its success rules, the mock + load generator, and smoke mode.

Nothing here asserts a speed: the suite checks the issue's targets and reports them
(bench/README.md).  These tests only keep the suite working.  The LiteLLM part needs
bench/.venvs/litellm, or BENCH_LITELLM=1 (which lets the suite install LiteLLM itself; CI sets it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from harness.bench_run import smoke

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench/ is not an installed package: it runs from the checkout

pytest.importorskip("psutil")
pytest.importorskip("matplotlib")
pytest.importorskip("numpy")

from bench.loadgen.driver import LoadSpec, run_load  # noqa: E402
from bench.loadgen.payloads import ENDPOINTS, request_body  # noqa: E402
from bench.loadgen.validate import check_json, check_sse  # noqa: E402
from bench.mock_responses import MockSettings  # noqa: E402
from bench.mockproc import MockProcess  # noqa: E402
from bench.report.goals import evaluate  # noqa: E402
from bench.stats import summarize  # noqa: E402
from bench.targets import litellm_env  # noqa: E402

WITH_LITELLM = litellm_env.installed() or os.environ.get("BENCH_LITELLM") == "1"


def test_success_rules_for_json_bodies() -> None:
    assert check_json(b'{"choices": [{"index": 0}]}', "choices") == "ok"
    assert check_json(b'{"data": [1]}', "choices") == "bad_body"
    assert check_json(b'{"error": {"message": "x"}}', "choices") == "error_body"
    assert check_json(b'{"choices": [', "choices") == "bad_json"
    assert check_json(b"[1, 2]", "choices") == "bad_json"


def test_success_rules_for_streams() -> None:
    good = b'data: {"choices": []}\n\ndata: {"choices": []}\n\ndata: [DONE]\n\n'
    assert check_sse(good) == ("ok", 2)
    assert check_sse(b'data: {"choices": []}\n\n')[0] == "stream_cut"
    assert check_sse(b'data: {"error": {"message": "upstream"}}\n\ndata: [DONE]\n\n')[0] == "stream_error"
    assert check_sse(b"data: {not json\n\ndata: [DONE]\n\n")[0] == "bad_sse"
    assert check_sse(b": keep-alive\n\ndata: [DONE]\n\n") == ("ok", 0)


def _load(port: int, endpoint: str, **kw: object) -> dict:
    spec = LoadSpec(
        port=port, body=request_body(ENDPOINTS[endpoint], "gpt-4o-mini"), endpoint=endpoint, timeout=5.0, **kw
    )  # type: ignore[arg-type]
    return summarize(run_load(spec))


def test_mock_and_open_loop_load_generator() -> None:
    with MockProcess(MockSettings(latency_ms=2.0, stream_chunks=3, chunk_interval_ms=5.0)) as mock:
        chat = _load(mock.port, "chat", mode="open", rate=100.0, duration=1.0)
        assert chat["scheduled"] == 100 and chat["ok"] == 100 and chat["errors"] == {}
        assert chat["latency_ms"]["p50"] >= 2.0  # measured from the schedule, so never under the mock's delay
        emb = _load(mock.port, "embeddings", mode="open", rate=50.0, duration=0.5, processes=2)
        assert emb["ok"] == emb["scheduled"] == 25
        streams = _load(mock.port, "chat_stream", mode="closed", concurrency=4, duration=0.5)
        assert streams["ok"] > 0 and streams["errors"] == {}
        assert streams["ttft_ms"]["p50"] >= 2.0
        served = mock.stats()["served"]
    assert served["chat"] == 100 and served["embeddings"] == 25 and served["chat_stream"] == streams["ok"]


def test_a_dead_port_counts_as_connect_errors() -> None:
    with MockProcess() as mock:
        port = mock.port
    out = _load(port, "chat", mode="open", rate=20.0, duration=0.5)
    assert out["ok"] == 0 and sum(out["errors"].values()) == out["scheduled"] == 10
    assert set(out["errors"]) <= {"connect_refused", "connect_error"}


def test_goals_are_not_judged_on_smoke_runs() -> None:
    rows = evaluate(
        {
            "logging": {
                "smoke": True,
                "params": {},
                "cells": [],
                "derived": {"cost_pct": 50.0, "throughput_on_rps": 1, "throughput_off_rps": 2},
            }
        }
    )
    row = next(r for r in rows if r["scenario"] == "logging")
    assert row["status"] == "n/a" and "smoke" in row["detail"]
    assert all(r["status"] == "n/a" for r in rows)


def _smoke(tmp_path: Path, *extra: str) -> dict[str, dict]:
    smoke(tmp_path, *extra)
    assert (tmp_path / "REPORT.md").exists()
    return {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_smoke_every_scenario_direct_and_bifrost(tmp_path: Path) -> None:
    docs = _smoke(tmp_path, "--targets", "direct,bifrost")
    assert set(docs) == {
        "calibrate",
        "overhead",
        "medium",
        "frontier",
        "breakdown",
        "streams",
        "logging",
        "xlarge",
        "soak",
        "cache",
        "cluster",
        "full",
    }
    targets = {c["target"] for d in docs.values() for c in d["cells"]}
    assert "bifrost" in targets, "the gateway did not run: " + json.dumps(docs["overhead"]["skipped"])
    stages = docs["breakdown"]["cells"][0]["stages"]
    assert "error" not in stages and stages["ok_rows"] > 0
    # The soak runs with injected faults in smoke: they happened, are counted apart, and nothing else failed;
    # the leak samples carry the gateway's live-task gauge and the verdict states its checks.
    soak = next(c for c in docs["soak"]["cells"] if c["target"] == "bifrost")
    assert soak["mixed"] and soak["faulted"] > 0 and soak["unexpected_errors"] == 0, soak["errors"]
    assert soak["faulted"] == sum(soak["faults_by_kind"].values()) == soak["scheduled"] - soak["ok"]
    assert soak["idle_before"]["tasks"] is not None and soak["idle_after"]["fds"] > 0 and soak["minutes"]
    assert set(soak["verdict"]) >= {"flat", "rss_ok", "fds_ok", "tasks_ok", "errors_ok"}
    assert (tmp_path / "charts" / "medium_latency_distribution.png").exists()
    # xlarge sizes Bifrost's lanes with the published rule, through `bifrost tune --rps --write`.
    xl = next(c for c in docs["xlarge"]["cells"] if c["target"] == "bifrost")
    assert any("bifrost tune --rps" in n and "concurrency" in n for n in xl["notes"]), xl["notes"]


@pytest.mark.slow
@pytest.mark.timeout(900)  # may include the one-off `pip install litellm[proxy]`
@pytest.mark.skipif(not WITH_LITELLM, reason="needs bench/.venvs/litellm or BENCH_LITELLM=1")
def test_smoke_side_by_side_with_litellm(tmp_path: Path) -> None:
    docs = _smoke(tmp_path, "--targets", "direct,bifrost,litellm", "--only", "overhead,frontier")
    cells = docs["frontier"]["cells"]
    assert {c["target"] for c in cells} >= {"bifrost", "litellm"}, docs["frontier"]["skipped"]
    assert all(c["success_rate"] == 1.0 for c in cells)
