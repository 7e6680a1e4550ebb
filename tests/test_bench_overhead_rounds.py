"""`python -m bench overhead --runs N`: every round is judged, the worst one decides the c=1 target."""

from __future__ import annotations

from typing import Any

from bench.report import goals
from bench.scenarios import overhead


def _cell(target: str, round_no: int, p50: float, p99: float) -> dict[str, Any]:
    return {
        "target": target,
        "round": round_no,
        "ok": 100,
        "latency_ms": {"p50": p50, "p90": p50, "p99": p99},
        "x_bf_overhead_us": {"p50": 30.0, "p99": 60.0},
    }


def test_each_round_is_measured_against_its_own_direct_cell() -> None:
    cells = [
        _cell("direct", 1, 0.030, 0.060),
        _cell("bifrost", 1, 0.230, 0.860),
        _cell("direct", 2, 0.050, 0.100),
        _cell("bifrost", 2, 0.290, 0.900),
    ]
    r1, r2 = overhead._added(cells, "bifrost", 1), overhead._added(cells, "bifrost", 2)
    assert r1 is not None and r2 is not None
    assert (r1["added_p50_us"], r1["added_p99_us"]) == (200.0, 800.0)
    assert (r2["added_p50_us"], r2["added_p99_us"]) == (240.0, 800.0)
    spread = overhead._spread([r1, r2])
    assert spread["added_p50_us_range"] == [200.0, 240.0]
    assert spread["all_within_targets"] is True


def test_one_round_over_the_target_fails_the_goal() -> None:
    rounds = [
        {"added_p50_us": 200.0, "added_p90_us": 250.0, "added_p99_us": 700.0},
        {"added_p50_us": 260.0, "added_p90_us": 300.0, "added_p99_us": 900.0},
    ]
    spread = overhead._spread(rounds)
    assert spread["all_within_targets"] is False
    doc = {"derived": {"bifrost": {**rounds[0], "x_bf_overhead_us": {"p50": 30, "p99": 60}}, "rounds": spread}}
    status, measured, detail = goals.overhead_p50(doc)
    assert status == "FAIL" and measured.startswith("260") and "2 rounds" in detail
    status, measured, _ = goals.overhead_p99(doc)
    assert status == "PASS" and measured.startswith("900")


def test_a_single_run_is_judged_as_before() -> None:
    doc = {
        "derived": {
            "bifrost": {"added_p50_us": 240.0, "added_p99_us": 1200.0, "x_bf_overhead_us": {"p50": 30, "p99": 61}}
        }
    }
    assert goals.overhead_p50(doc)[0] == "PASS"
    assert goals.overhead_p99(doc)[0] == "FAIL"
