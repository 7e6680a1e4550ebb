"""Log queries: filters, pagination, sort, detail, stats and histograms; in-process on rows written by
the real LogWriter, then end to end through the gateway."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeOpenAI
from fakes.reply import Reply
from harness import Gateway

from runtime.requestlog.filters import FilterError, LogFilter, Page, parse_filter, parse_page
from runtime.requestlog.record import COLUMNS
from runtime.stores.logs_sqlite.queries import LogQueries
from runtime.stores.logs_sqlite.writer import LogWriter

from .conftest import Api

NOW = int(time.time() * 1000)


def _row(i: int, **over: Any) -> tuple[Any, ...]:
    base: dict[str, Any] = {c: None for c in COLUMNS}
    base.update(
        id=f"r{i:04d}",
        ts_ms=NOW - 100_000 + i * 1000,
        endpoint="chat",
        provider="openai",
        model="gpt-4o",
        model_requested="openai/gpt-4o",
        status=200,
        stream=0,
        latency_us=(i + 1) * 1000,
        overhead_us=100,
        queue_wait_us=1,
        key_select_us=2,
        build_us=3,
        encode_us=4,
        upstream_us=(i + 1) * 1000 - 100,
        parse_us=5,
        prompt_tokens=10,
        completion_tokens=5,
        total_tokens=15,
        retries=0,
        fallback_index=0,
        key_name="k",
        input=b'[{"role":"user","content":"hello"}]',
        output=b'{"choices":[]}',
        attempts=None,
        ingress="openai",
    )
    base.update(over)
    return tuple(base[c] for c in COLUMNS)


@pytest.fixture
async def queries(tmp_path: Path) -> Any:
    writer = LogWriter(tmp_path / "logs.db", capacity=1000)
    await writer.start()
    for i in range(60):
        over: dict[str, Any] = {}
        if i % 3 == 1:
            over.update(provider="azure", model="gpt-4o-mini")
        if i % 10 == 9:
            over.update(
                status=500,
                error="upstream exploded",
                error_type="api_error",
                attempts=[{"status": 500, "provider": "openai", "key": "k"}],
            )
        if i % 4 == 0:
            over.update(stream=1)
        if i == 42:
            over.update(input=b'[{"role":"user","content":"find the needle please"}]')
        writer.submit(_row(i, **over))
    await writer.close()
    q = LogQueries(tmp_path / "logs.db")
    yield q
    await q.close()


async def test_list_filters_sort_and_pages(queries: LogQueries) -> None:
    page = await queries.list(LogFilter(), Page(limit=10))
    assert page["total"] == 60 and page["has_more"] is True
    assert [r["id"] for r in page["items"][:2]] == ["r0059", "r0058"]
    assert "input" not in page["items"][0] and page["items"][0]["input_preview"]
    second = await queries.list(LogFilter(), Page(limit=10, offset=10))
    assert second["items"][0]["id"] == "r0049"
    azure = await queries.list(LogFilter(providers=("azure",)), Page(limit=100))
    assert azure["total"] == 20 and {r["provider"] for r in azure["items"]} == {"azure"}
    errors = await queries.list(LogFilter(statuses=("error",)), Page(limit=100))
    assert errors["total"] == 6 and all(r["status"] == 500 for r in errors["items"])
    assert (await queries.list(LogFilter(statuses=("5xx", "200")), Page()))["total"] == 60
    streams = await queries.list(LogFilter(stream=True), Page(limit=100))
    assert streams["total"] == 15 and all(r["stream"] for r in streams["items"])
    slow = await queries.list(LogFilter(min_latency_us=50_000, max_latency_us=55_000), Page())
    assert [r["id"] for r in slow["items"]] == ["r0054", "r0053", "r0052", "r0051", "r0050", "r0049"]
    found = await queries.list(LogFilter(text="needle"), Page())
    assert [r["id"] for r in found["items"]] == ["r0042"] and found["total"] is None
    assert (await queries.list(LogFilter(text="exploded"), Page(limit=100)))["items"][0]["status"] == 500
    assert (await queries.list(LogFilter(text="100%"), Page()))["items"] == []  # % is literal
    by_latency = await queries.list(LogFilter(), Page(sort="latency", descending=False, limit=3))
    assert [r["latency_us"] for r in by_latency["items"]] == [1000, 2000, 3000]
    window = await queries.list(LogFilter(since_ms=NOW - 100_000 + 10_000, until_ms=NOW - 100_000 + 20_000), Page())
    assert window["total"] == 10


async def test_detail_has_request_response_attempts(queries: LogQueries) -> None:
    record = await queries.get("r0009")
    assert record is not None
    assert record["input"] == [{"role": "user", "content": "hello"}]
    assert record["attempts"] == [{"status": 500, "provider": "openai", "key": "k"}]
    assert record["error"] == "upstream exploded"
    assert await queries.get("nope") is None


async def test_stats(queries: LogQueries) -> None:
    stats = await queries.stats(LogFilter())
    assert stats["count"] == 60 and stats["errors"] == 6
    assert stats["success_rate"] == pytest.approx(54 / 60)
    assert stats["avg_latency_ms"] == pytest.approx(30.5)
    assert stats["p50_latency_ms"] in (30.0, 31.0) and stats["p99_latency_ms"] == 59.0
    assert stats["total_tokens"] == 900 and stats["streams"] == 15
    assert stats["stages_avg_us"]["encode"] == 4.0
    by_provider = {p["provider"]: p for p in stats["by_provider"]}
    assert by_provider["openai"]["count"] == 40 and by_provider["azure"]["count"] == 20
    assert {(m["provider"], m["model"]) for m in stats["by_model"]} == {("openai", "gpt-4o"), ("azure", "gpt-4o-mini")}
    only_azure = await queries.stats(LogFilter(providers=("azure",)))
    assert only_azure["count"] == 20 and [p["provider"] for p in only_azure["by_provider"]] == ["azure"]


async def test_histogram_buckets_add_up(queries: LogQueries) -> None:
    hist = await queries.histogram(LogFilter(since_ms=NOW - 100_000, until_ms=NOW), 10)
    assert len(hist["series"]) == 10 and hist["bucket_ms"] == 10_000
    assert sum(b["count"] for b in hist["series"]) == 60
    assert sum(b["errors"] for b in hist["series"]) == 6
    assert sum(b["tokens"] for b in hist["series"]) == 900
    assert all((b["p99_latency_ms"] is not None) == (b["count"] > 0) for b in hist["series"])
    assert sum(b["count"] for b in hist["by_provider"]["azure"]) == 20


def test_filter_parsing() -> None:
    f = parse_filter({"provider": "a,b", "status": "error,429", "stream": "true", "min_latency_ms": "5", "q": " x "})
    assert f.providers == ("a", "b") and f.statuses == ("error", "429") and f.stream is True
    assert f.min_latency_us == 5000 and f.text == "x"
    for bad in ({"status": "teapot"}, {"stream": "maybe"}, {"since": "yesterday"}, {"since": "10", "until": "5"}):
        with pytest.raises(FilterError):
            parse_filter(bad)
    with pytest.raises(FilterError):
        parse_page({"sort": "colour"})
    with pytest.raises(FilterError):
        parse_page({"limit": "100000"})


def test_logs_end_to_end(admin_gateway: Gateway, api: Api, fake_openai: FakeOpenAI) -> None:
    ids = [api.chat("openai/gpt-4o-mini", f"message {i}").headers["x-request-id"] for i in range(5)]
    fake_openai.enqueue(Reply.server_error(503))
    failed = api.chat("openai/gpt-4o", "this one fails")
    assert failed.status == 503
    admin_gateway.log.wait_rows(6)
    listing = api.get("/api/logs?limit=3")
    assert listing.status == 200 and listing.body["total"] == 6 and len(listing.body["items"]) == 3
    assert api.get("/api/logs?status=error").body["items"][0]["id"] == failed.headers["x-request-id"]
    assert api.get("/api/logs?model=gpt-4o-mini").body["total"] == 5
    assert [r["id"] for r in api.get("/api/logs?q=message%203").body["items"]] == [ids[3]]
    detail = api.get(f"/api/logs/{failed.headers['x-request-id']}").body
    assert detail["status"] == 503 and detail["attempts"][0]["status"] == 503
    stats = api.get("/api/logs/stats").body
    assert stats["count"] == 6 and stats["errors"] == 1
    hist = api.get("/api/logs/histogram?last=600&buckets=12").body
    assert sum(b["count"] for b in hist["series"]) == 6
    assert api.get("/api/logs?sort=colour").status == 400
    assert api.get("/api/logs/does-not-exist").status == 404
    assert set(api.get("/api/logs/facets").body["providers"]) == {"openai"}


async def test_a_query_past_its_budget_is_stopped(queries: LogQueries) -> None:
    from runtime.stores.logs import LogQueryTooSlow as QueryTooSlow

    queries.budget_s = 0.0  # every statement is already late
    with pytest.raises(QueryTooSlow, match="narrow the time range"):
        await queries._fetch(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000) SELECT count(*) FROM c"
        )
    queries.budget_s = 10.0
    assert (await queries.list(LogFilter(), Page(limit=1)))["total"] == 60  # the connection is still usable
