"""The `full` bench scenario's pieces (issue 16 item 3), without running a load: the full-stack target's
config.json is one the gateway accepts with every feature on, each feature can be turned off alone, new
prompts never look like a card to the PII guardrail, and the per-feature table subtracts the bare gateway."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench/ is not an installed package: it runs from the checkout

pytest.importorskip("numpy")
pytest.importorskip("psutil")

from bench.loadgen.worker import WorkerSpec  # noqa: E402
from bench.scenarios import SCENARIOS, full  # noqa: E402
from bench.targets import make  # noqa: E402
from bench.targets.bifrost import write_config  # noqa: E402
from runtime.config.load import load_gateway_config  # noqa: E402
from runtime.guardrails.detectors.pii import _card_prefix_ok  # noqa: E402


def _config(tmp_path: Path, **opts: bool) -> tuple[dict, object]:
    t = make("bifrost-full", profile="cost", **opts)
    write_config(
        str(tmp_path),
        "http://127.0.0.1:9",
        logging=t.logging,  # type: ignore[attr-defined]
        profile="cost",
        governance=t.governance,  # type: ignore[attr-defined]
        cache=t.cache,  # type: ignore[attr-defined]
        guardrails=t.guardrails,  # type: ignore[attr-defined]
    )
    return json.loads((tmp_path / "config.json").read_text()), load_gateway_config(tmp_path)


def test_full_scenario_is_registered() -> None:
    assert SCENARIOS["full"] is full.run


def test_full_stack_config_has_every_feature_and_loads(tmp_path: Path) -> None:
    doc, config = _config(tmp_path)
    assert doc["client"]["enable_logging"] is True
    assert doc["client"]["enforce_auth_on_inference"] is True
    assert doc["governance"]["virtual_keys"] and doc["governance"]["rate_limits"] and doc["governance"]["budgets"]
    assert doc["plugins"] == [
        {
            "name": "semantic_cache",
            "enabled": True,
            "config": {"dimension": 1, "ttl": "1h", "default_cache_key": "bench"},
        }
    ]
    rule = doc["guardrails_config"]["guardrail_rules"][0]
    assert (rule["cel_expression"], rule["apply_to"]) == ("true", "input")
    assert doc["guardrails_config"]["guardrail_providers"][0]["config"]["entities"] == ["credit_card", "email"]
    assert config.guardrails is not None and config.governance is not None  # type: ignore[attr-defined]
    assert [p.name for p in config.plugins] == ["semantic_cache"]  # type: ignore[attr-defined]


def test_each_feature_turns_off_alone(tmp_path: Path) -> None:
    doc, config = _config(tmp_path, **full.ALL_OFF)
    assert doc["client"]["enable_logging"] is False
    assert "governance" not in doc and "plugins" not in doc and "guardrails_config" not in doc
    assert config.guardrails is None  # type: ignore[attr-defined]
    on = {"governance": "governance", "cache": "plugins", "guardrails": "guardrails_config"}
    for feature, block in on.items():
        d, _ = _config(tmp_path, **{**full.ALL_OFF, feature: True})
        assert block in d and not (set(on.values()) - {block}) & set(d)


def test_new_prompts_never_start_with_a_card_prefix() -> None:
    specs = [
        WorkerSpec(
            host="h",
            port=1,
            payload=b"",
            stream=False,
            expect="choices",
            mode="open",
            duration=1.0,
            unique_base=5 * 10**15,
        )
    ] * 3
    for _ in range(50):
        bases = [w.unique_base for w in full._no_card(specs)]
        assert len(set(bases)) == 3
        for b in bases:
            digits = b"%016d" % b  # as payloads.UniquePayloads writes it
            assert not _card_prefix_ok(digits.decode())
    assert (
        full._no_card(
            [WorkerSpec(host="h", port=1, payload=b"", stream=False, expect="choices", mode="open", duration=1.0)]
        )[0].unique_base
        is None
    )


def test_feature_table_subtracts_the_bare_gateway() -> None:
    def cell(label: str, ovh: float, p50: float, cpu: float) -> dict:
        return {
            "cell": label,
            "x_bf_overhead_us": {"p50": ovh},
            "latency_ms": {"p50": p50},
            "resources": {"cpu_ms_per_request": cpu},
            "upstream_calls": 10,
            "ok": 10,
        }

    cells = [cell("direct", 0, 0.03, 0.01), cell("off", 50, 0.4, 0.30), cell("governance", 70, 0.45, 0.33)]
    cells += [cell("full miss", 150, 0.6, 0.5), {"cell": "frontier"}]
    rows = full.feature_table(cells)
    assert [r["feature"] for r in rows] == ["governance"]
    assert rows[0]["x_bf_overhead_added_us"] == 20.0
    assert rows[0]["p50_added_us"] == 50.0
    assert rows[0]["cpu_added_us_per_request"] == 30.0


def test_a_starved_failed_frontier_step_is_measured_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import pinning
    from bench.scenarios.common import Context
    from bench.targets import Running

    ctx = Context(layout=pinning.detect(pin=False), processes=1)
    running = Running(name="bifrost-full", port=9, model="openai/gpt-4o-mini", pid=0)

    def cell(p99: float, lag: float) -> dict[str, object]:
        return {"latency_ms": {"p99": p99}, "scheduled": 100, "error_total": 0, "send_lag_ms": {"p99": lag}}

    # A failure with the generator 400 ms behind is measured again; a passing step (or a failure the
    # generator kept up with) counts as measured.
    seen = iter([cell(5000.0, 400.0), cell(80.0, 2.0)])
    monkeypatch.setattr(full, "_measured", lambda *a, **k: next(seen))
    out = full._mixed_step(ctx, None, running, 3000, 1.0)  # type: ignore[arg-type]
    assert out["passed"] and out["attempt"] == 1

    seen = iter([cell(5000.0, 3.0), cell(80.0, 2.0)])
    out = full._mixed_step(ctx, None, running, 3000, 1.0)  # type: ignore[arg-type]
    assert not out["passed"] and out["attempt"] == 0 and not out["harness_starved"]
