"""/metrics: Prometheus text with the gateway's families; several workers add up; the plugin is cheap."""

from __future__ import annotations

import time

from fakes import FakeOpenAI
from fakes.reply import Reply
from harness import Gateway, StartGateway, make_config, openai_provider
from prometheus_client.parser import text_string_to_metric_families

from runtime.core.context import RequestContext
from runtime.plugins.metrics import MetricsPlugin

from .conftest import Api


def _samples(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = api.get("/metrics")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_families(start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_openai_2: FakeOpenAI) -> None:
    config = make_config(
        {
            "openai": openai_provider(fake_openai.url, max_retries=1, retry_backoff_initial_ms=1),
            "backup": {
                **openai_provider(fake_openai_2.url, keys=("sk-fake-2",)),
                "custom_provider_config": {"base_provider_type": "openai"},
            },
        }
    )
    gateway = start_gateway(config)
    api = Api(gateway.base_url)
    for _ in range(3):
        assert api.chat("openai/gpt-4o-mini").status == 200
    fake_openai.enqueue(Reply.server_error(500))  # one retry, then success
    assert api.chat("openai/gpt-4o-mini").status == 200
    fake_openai.enqueue(Reply.server_error(500), Reply.server_error(500))  # both attempts fail: fallback
    assert api.chat("openai/gpt-4o-mini", fallbacks=["backup/gpt-4o-mini"]).status == 200
    s = _samples(api)
    ok = ("bifrost_requests_total", (("model", "gpt-4o-mini"), ("provider", "openai"), ("status", "200")))
    assert s[ok] == 4
    assert s[("bifrost_requests_total", (("model", "gpt-4o-mini"), ("provider", "backup"), ("status", "200")))] == 1
    assert s[("bifrost_retries_total", (("provider", "openai"),))] == 2
    assert s[("bifrost_fallbacks_total", (("provider", "backup"),))] == 1
    assert s[("bifrost_request_duration_seconds_count", (("model", "gpt-4o-mini"), ("provider", "openai")))] == 4
    assert s[("bifrost_gateway_overhead_seconds_bucket", (("le", "+Inf"), ("provider", "openai")))] == 4
    assert s[("bifrost_upstream_duration_seconds_count", (("provider", "openai"),))] == 4
    assert s[("bifrost_tokens_total", (("model", "gpt-4o-mini"), ("provider", "openai"), ("type", "prompt")))] > 0
    assert s[("bifrost_lane_in_flight", (("provider", "openai"),))] == 0
    assert ("bifrost_lane_queued", (("provider", "backup"),)) in s
    assert ("bifrost_requestlog_dropped_total", ()) in s and s[("bifrost_workers", ())] == 1
    # Live asyncio tasks of the one worker, labelled with its pid: at least the scrape's own handler.
    tasks = {labels: v for (name, labels), v in s.items() if name == "bifrost_event_loop_tasks"}
    pid = api.get("/health").body["pid"]
    assert list(tasks) == [(("worker", str(pid)),)] and 1 <= tasks[(("worker", str(pid)),)] < 1000


def test_metrics_add_up_over_workers(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}), args=("--workers", "2"))
    api = Api(gateway.base_url)
    pids = set()
    for _ in range(20):  # urllib opens a connection per request: the kernel spreads them
        pids.add(api.get("/health").body["pid"])
        assert api.chat("openai/gpt-4o-mini").status == 200
    assert len(pids) == 2
    time.sleep(2.5)  # every worker publishes once a second
    key = ("bifrost_requests_total", (("model", "gpt-4o-mini"), ("provider", "openai"), ("status", "200")))
    for _ in range(6):  # whichever worker answers, the total is the same
        s = _samples(api)
        assert s[key] == 20
        assert s[("bifrost_workers", ())] == 2
        tasks = {dict(labels)["worker"]: v for (name, labels), v in s.items() if name == "bifrost_event_loop_tasks"}
        assert set(tasks) == {str(p) for p in pids} and all(v >= 1 for v in tasks.values())


def test_system_history_and_totals(admin_gateway: Gateway) -> None:
    api = Api(admin_gateway.base_url)
    api.chat("openai/gpt-4o-mini")
    system = api.get("/api/system").body
    assert system["totals"]["requests"] == 1 and system["totals"]["workers"] == 1
    assert isinstance(system["history"], list)


def test_on_finish_is_cheap() -> None:
    plugin = MetricsPlugin()
    contexts = []
    for i in range(20_000):
        ctx = RequestContext(f"id-{i}", "chat")
        ctx.provider, ctx.model, ctx.status, ctx.upstream_ns = "openai", "gpt-4o-mini", 200, 1_000_000
        contexts.append(ctx)
    started = time.perf_counter()
    for ctx in contexts:
        plugin.on_finish(ctx)
    per_call_us = (time.perf_counter() - started) / len(contexts) * 1e6
    assert plugin.series[("openai", "gpt-4o-mini", 200)][0] == 20_000
    # About 1 µs here; the bound only catches an accidental lock, allocation or label look-up per call.
    assert per_call_us < 20, per_call_us
