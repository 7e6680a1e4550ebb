"""Issue 9 item 14: for streams, "gateway overhead" counts only the gateway's own time.

A stream whose upstream sends its events 200 ms apart lasts ~2 s; the gateway's own work on it is a few
milliseconds. Before the fix the log row's overhead was the whole stream (latency minus the wait for the
first event), and /metrics and the dashboard averaged that. Now the header reports the overhead up to the
headers, the log row adds each chunk batch's processing (never the waits on the upstream or the client),
and /metrics' overhead histogram counts exactly the log row's figure.
"""

from __future__ import annotations

import urllib.request

import aiohttp
from fakes import FakeOpenAI, Reply
from harness import StartGateway, make_config, openai_provider, read_sse
from prometheus_client.parser import text_string_to_metric_families

CHUNK_DELAY_S = 0.2
CONTENT = "one two three four five six seven eight nine ten"  # ~12 events, 200 ms apart


def _overhead_histogram(base_url: str) -> dict[str, float]:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(base_url + "/metrics") as answer:
        text = answer.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "bifrost_gateway_overhead_seconds":
            for sample in family.samples:
                if sample.labels.get("provider") == "openai" and sample.name.endswith(("_sum", "_count")):
                    out[sample.name.rsplit("_", 1)[1]] = sample.value
    return out


async def test_stream_overhead_excludes_upstream_waits(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))
    fake_openai.enqueue(Reply(content=CONTENT, chunk_delay=CHUNK_DELAY_S))
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "slowly"}], "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.url("/v1/chat/completions"), json=body) as response,
    ):
        header_us = int(response.headers["x-bf-overhead-us"])
        events, error = await read_sse(response)
    assert error is None and events[-1].is_done
    row = gateway.log.row_for(response.headers["x-request-id"])
    assert row["latency_us"] > 1_500_000, row  # the stream really lasted ~2.4 s
    assert row["overhead_us"] < 50_000, f"overhead {row['overhead_us']} µs for a {row['latency_us']} µs stream"
    assert row["overhead_us"] >= header_us, "the log adds the chunks' processing to the overhead up to the headers"
    metrics = _overhead_histogram(gateway.base_url)
    assert metrics["count"] == 1
    assert abs(metrics["sum"] - row["overhead_us"] / 1e6) < 2e-6, (metrics, row["overhead_us"])


async def test_non_stream_overhead_is_unchanged(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    """The same definition for an answer sent whole: elapsed minus the upstream wait; header ≈ log."""
    gateway = start_gateway(make_config({"openai": openai_provider(fake_openai.url)}))
    fake_openai.enqueue(Reply(delay=0.5))
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "at once"}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.url("/v1/chat/completions"), json=body) as response,
    ):
        assert response.status == 200
        header_us = int(response.headers["x-bf-overhead-us"])
    row = gateway.log.row_for(response.headers["x-request-id"])
    assert row["latency_us"] > 400_000
    assert header_us <= row["overhead_us"] < 50_000, (header_us, row)
    metrics = _overhead_histogram(gateway.base_url)
    assert metrics["count"] == 1
    assert abs(metrics["sum"] - row["overhead_us"] / 1e6) < 2e-6, (metrics, row["overhead_us"])
