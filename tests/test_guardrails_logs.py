"""What a gateway makes of `ctx.guardrails` (issue 15 item 5): the request-log row (`/api/logs`, the detail,
the guardrail filters) and /metrics (`bifrost_guardrail_actions_total`, `bifrost_guardrail_errors_total`),
through a real gateway process, the official openai SDK and a fake provider. The guardrails engine is
stood in for by a plugin that sets `ctx.guardrails` from a request header (harness/standin.py), so these
tests check the log and the metrics whatever detectors are built; and the metrics plugin's unit."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import openai
import pytest
from fakes import FakeOpenAI
from harness import Gateway, StartGateway
from harness.standin import fired_header, start_standin_gateway
from prometheus_client.parser import text_string_to_metric_families

from runtime.core.context import RequestContext
from runtime.plugins import metrics as m
from runtime.plugins.metrics import MetricsPlugin


def fired(rule: str, provider: str, stage: str, action: str, *types: str, **extra: Any) -> dict[str, Any]:
    """One entry of ctx.guardrails, as the engine's Fired.view() makes it."""
    return {"rule": rule, "provider": provider, "stage": stage, "action": action, "types": list(types), **extra}


REDACT = fired("mask-pii", "cards", "input", "redact", "credit_card", count=1)
BLOCK = fired("no-keys", "secrets", "input", "block", "aws_key", count=1)
JUDGE = fired("judge", "llm", "output", "flag", count=0, error="timeout")


def _get(gateway: Gateway, path: str) -> tuple[int, Any, str]:
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(gateway.url(path), timeout=30) as response:
            text = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as exc:
        text, status = exc.read().decode(), exc.code
    try:
        return status, json.loads(text), text
    except ValueError:
        return status, None, text


def _chat(gateway: Gateway, fired: list[dict[str, Any]] | None) -> tuple[str, int]:
    """(request id, status) of one chat request whose guardrails outcome is `fired`."""
    client = gateway.client(max_retries=0)
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "hello"}],
            extra_headers=fired_header(fired) if fired is not None else None,
        )
        return str(raw.headers["x-request-id"]), raw.status_code
    except openai.BadRequestError as exc:
        return str(exc.response.headers["x-request-id"]), exc.status_code
    finally:
        client.close()


@pytest.fixture
def gateway(start_gateway: StartGateway, fake_openai: FakeOpenAI, tmp_path: Path) -> Gateway:
    return start_standin_gateway(start_gateway, fake_openai.url, tmp_path / "site")


def _metrics(gateway: Gateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, _, text = _get(gateway, "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_rows_metrics_and_filters_from_a_running_gateway(gateway: Gateway) -> None:
    quiet, status = _chat(gateway, None)
    assert status == 200
    redacted, status = _chat(gateway, [REDACT, JUDGE])
    assert status == 200
    blocked, status = _chat(gateway, [BLOCK, REDACT])
    assert status == 400  # the stand-in refuses as a blocking rule does
    gateway.log.wait_rows(3)

    status, page, _ = _get(gateway, "/api/logs?limit=10")
    assert status == 200
    by_id = {item["id"]: item for item in page["items"]}
    assert by_id[quiet]["guardrails"] is None
    assert by_id[redacted]["guardrails"] == [REDACT, JUDGE]
    assert by_id[blocked]["guardrails"] == [BLOCK, REDACT] and by_id[blocked]["status"] == 400
    status, detail, _ = _get(gateway, f"/api/logs/{blocked}")
    assert status == 200 and detail["guardrails"] == [BLOCK, REDACT] and detail["error_type"] == "guardrail_blocked"

    def ids(query: str) -> set[str]:
        status, answer, text = _get(gateway, "/api/logs?" + query)
        assert status == 200, text
        return {item["id"] for item in answer["items"]}

    assert ids("guardrail=mask-pii") == {redacted, blocked}
    assert ids("guardrail_action=block") == {blocked}
    assert ids("guardrail=judge&guardrail_action=flag") == {redacted}
    assert ids("guardrail=judge&guardrail_action=block") == set()
    assert ids("guardrail=" + urllib.parse.quote("x' OR '1'='1")) == set()  # a value, never SQL
    status, answer, _ = _get(gateway, "/api/logs?guardrail_action=allow")
    assert status == 400 and answer["error"]["param"] == "guardrail_action"
    status, answer, _ = _get(gateway, "/api/logs?guardrail=" + "r" * 300)
    assert status == 400 and answer["error"]["param"] == "guardrail"
    # Stats and histograms take the filters too (PostgreSQL reads the table for them: not in the rollup).
    status, stats, _ = _get(gateway, "/api/logs/stats?guardrail=mask-pii")
    assert status == 200 and stats["count"] == 2

    s = _metrics(gateway)
    actions = "bifrost_guardrail_actions_total"
    assert s[(actions, (("action", "redact"), ("rule", "mask-pii"), ("stage", "input")))] == 2
    assert s[(actions, (("action", "block"), ("rule", "no-keys"), ("stage", "input")))] == 1
    assert s[(actions, (("action", "flag"), ("rule", "judge"), ("stage", "output")))] == 1
    assert s[("bifrost_guardrail_errors_total", (("error", "timeout"), ("rule", "judge")))] == 1
    assert sum(v for (name, _), v in s.items() if name == actions) == 4  # one per rule that acted
    assert sum(v for (name, _), v in s.items() if name == "bifrost_guardrail_errors_total") == 1


def test_guardrail_counters_add_up_over_workers(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    import time

    gateway = start_standin_gateway(start_gateway, fake_openai.url, tmp_path / "site", args=("--workers", "2"))
    pids = set()
    for _ in range(20):  # urllib and the SDK open a connection per request here: the kernel spreads them
        pids.add(_get(gateway, "/health")[1]["pid"])
        assert _chat(gateway, [REDACT, JUDGE])[1] == 200
    assert len(pids) == 2
    time.sleep(2.5)  # every worker publishes its counters once a second
    key = ("bifrost_guardrail_actions_total", (("action", "redact"), ("rule", "mask-pii"), ("stage", "input")))
    errors = ("bifrost_guardrail_errors_total", (("error", "timeout"), ("rule", "judge")))
    for _ in range(4):  # whichever worker answers the scrape, the totals are everyone's
        s = _metrics(gateway)
        assert s[key] == 20 and s[errors] == 20


def test_a_gateway_without_guardrails_exposes_no_guardrail_series(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    from harness import make_config, openai_provider

    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))
    client = gateway.client(max_retries=0)
    try:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    finally:
        client.close()
    _, _, text = _get(gateway, "/metrics")
    assert "bifrost_requests_total" in text and "bifrost_guardrail" not in text


# -- the metrics plugin's unit -------------------------------------------------------------------------
def _ctx(i: int, fired: list[dict[str, Any]] | None) -> RequestContext:
    ctx = RequestContext(f"id-{i}", "chat")
    ctx.provider, ctx.model, ctx.status = "openai", "gpt-4o-mini", 200
    ctx.guardrails = fired
    return ctx


def test_the_plugin_counts_each_rule_that_acted_and_each_error() -> None:
    plugin = MetricsPlugin()
    plugin.on_finish(_ctx(1, None))
    assert plugin.guardrail_actions == {} and plugin.guardrail_errors == {}
    plugin.on_finish(_ctx(2, [REDACT, JUDGE]))
    plugin.on_finish(_ctx(3, [REDACT]))
    assert plugin.guardrail_actions == {("mask-pii", "redact", "input"): 2, ("judge", "flag", "output"): 1}
    assert plugin.guardrail_errors == {("judge", "timeout"): 1}
    snapshot = plugin.guardrail_snapshot()
    assert json.loads(json.dumps(snapshot)) == {
        "actions": [["mask-pii", "redact", "input", 2], ["judge", "flag", "output", 1]],
        "errors": [["judge", "timeout", 1]],
    }


def test_guardrail_series_are_bounded() -> None:
    plugin = MetricsPlugin()
    for i in range(m.MAX_GUARDRAIL_SERIES + 50):
        plugin.on_finish(_ctx(i, [{**JUDGE, "rule": f"rule-{i}", "error": "x" * 500}]))
    assert len(plugin.guardrail_actions) == m.MAX_GUARDRAIL_SERIES + 1  # the "other" series
    assert plugin.guardrail_actions[("other", "flag", "output")] == 50
    assert len(plugin.guardrail_errors) <= m.MAX_GUARDRAIL_SERIES + 1
    assert all(len(error) <= m.ERROR_LABEL_LIMIT for _, error in plugin.guardrail_errors)
