"""The bench's `cache` scenario (issue 12 item 7): unique prompts, its checks, and a smoke run against the
real plugin. Nothing here asserts a speed: the scenario reports PASS/FAIL lines, the tests keep it honest
(a "hit" cell that reached the provider is never judged) and working."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from harness.bench_run import smoke

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench/ is not an installed package: it runs from the checkout

pytest.importorskip("psutil")
pytest.importorskip("numpy")

from bench.loadgen.payloads import ENDPOINTS, UNIQUE_MARKER, UniquePayloads, http_request, request_body  # noqa: E402
from bench.scenarios.cache import derive, hook_cost_us, verdicts  # noqa: E402


def _prompt(raw: bytes) -> str:
    body = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    return str(body["messages"][-1]["content"])


def test_unique_payloads_change_the_prompt_and_keep_the_length() -> None:
    body = request_body(ENDPOINTS["chat"], "openai/gpt-4o-mini", unique=True)
    assert UNIQUE_MARKER.encode() in body
    raw = http_request("127.0.0.1", 1, "/v1/chat/completions", body)
    gen = UniquePayloads(raw, base=7 * 10**11)
    seen = [gen.next() for _ in range(50)]
    assert {len(p) for p in seen} == {len(raw)}  # Content-Length stays right
    prompts = [_prompt(p) for p in seen]
    assert len(set(prompts)) == 50
    assert prompts[0].startswith("Request #0000700000000000.")
    other = UniquePayloads(raw, base=8 * 10**11)  # another worker: another range
    assert not {_prompt(other.next()) for _ in range(50)} & set(prompts)
    with pytest.raises(ValueError):
        UniquePayloads(http_request("127.0.0.1", 1, "/", request_body(ENDPOINTS["chat"], "m")), 0)


def _cell(label: str, p50: float, upstream: int, **extra: object) -> dict:
    return {
        "cell": label,
        "latency_ms": {"p50": p50, "p99": p50 * 3},
        "ok": 100,
        "errors": {},
        "upstream_calls": upstream,
        **extra,
    }


def _frontier(rps: float, upstream: int) -> dict:
    return {
        "max_sustained_rps": rps,
        "throughput_at_max": rps,
        "p99_at_max_ms": 5.0,
        "first_failed_rate": None,
        "upstream_calls": upstream,
    }


def test_checks_pass_fail_and_refuse_unverified_hits() -> None:
    cells = [_cell("off", 0.40, 100), _cell("on, no key", 0.41, 100), _cell("miss", 0.45, 100), _cell("hit", 0.30, 0)]
    d = derive(cells, {"off": _frontier(3000, 9000), "hit": _frontier(5000, 0)})
    assert [v[1] for v in verdicts(d)] == ["PASS", "PASS"]
    assert d["no_key_added_p50_us"] == pytest.approx(10.0)
    slow = derive([*cells[:2], _cell("miss", 0.45, 100), _cell("hit", 0.50, 0)], {"off": _frontier(3000, 1)})
    assert [v[1] for v in verdicts(slow)] == ["FAIL", "n/a"]
    # A "hit" cell that reached the provider was not served from the cache: never judged.
    fake = derive([_cell("miss", 0.45, 100), _cell("hit", 0.30, 12)], {"off": _frontier(1, 1), "hit": _frontier(2, 5)})
    assert [v[1] for v in verdicts(fake)] == ["n/a", "n/a"]
    assert "not cache hits" in verdicts(fake)[0][3]


def test_in_process_no_key_cost_runs_the_real_plugin() -> None:
    cost = hook_cost_us(200)
    assert set(cost) == {"off_us", "on_no_key_us", "added_us"} and cost["on_no_key_us"] > 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cache_scenario_smoke_serves_hits_from_the_cache(tmp_path: Path) -> None:
    smoke(tmp_path, "--only", "cache", "--targets", "bifrost", "--duration", "1", timeout=280)
    doc = json.loads((tmp_path / "cache.json").read_text())
    assert not doc["skipped"], doc["skipped"]
    c1 = doc["derived"]["c1"]
    assert set(c1) >= {"off", "on, no key", "miss", "hit", "off stream", "miss stream", "hit stream"}
    assert all(row["errors"] == 0 and row["ok"] > 0 for row in c1.values()), c1
    # Misses reach the provider once each; hits never do (streamed ones included).
    assert c1["miss"]["upstream_calls"] >= c1["miss"]["ok"]
    assert c1["hit"]["upstream_calls"] == 0 and c1["hit stream"]["upstream_calls"] == 0, c1
    assert doc["derived"]["hits_verified"] and doc["derived"]["hit_frontier_verified"]
    report = (tmp_path / "REPORT.md").read_text()
    assert "## cache" in report and "cache: hit frontier >= no-cache frontier" in report
