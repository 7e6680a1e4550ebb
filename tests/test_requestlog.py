"""The request log: one row in <app-dir>/logs.db table `logs` for every request, flushed on
SIGTERM with nothing lost, with the fields the contract names."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from fakes import FakeOpenAI, Reply, wait_until
from harness import Gateway, StartGateway, make_config, openai_provider, read_sse
from harness.config import key

CONTRACT_COLUMNS = {
    "id", "ts_ms", "endpoint", "provider", "model", "status", "stream", "latency_us", "overhead_us",
    "queue_wait_us", "key_select_us", "build_us", "encode_us", "upstream_us", "parse_us",
    "prompt_tokens", "completion_tokens", "total_tokens", "retries", "fallback_index", "key_name",
    "error", "error_type", "input", "output", "attempts", "cost", "extra",
}  # fmt: skip


def logged_gateway(start_gateway: StartGateway, fake: FakeOpenAI, **client: Any) -> Gateway:
    provider = openai_provider(fake.url, keys=[key("sk-fake-1", name="k1")])
    return start_gateway(make_config({"openai": provider}, **client))


async def send(session: aiohttp.ClientSession, gateway: Gateway, i: int, stream: bool) -> tuple[str, int, Any]:
    body: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": f"request number {i}"}],
    }
    if stream:
        body["stream"] = True
    async with session.post(gateway.url("/v1/chat/completions"), json=body) as resp:
        request_id = resp.headers["x-request-id"]
        if stream:
            events, error = await read_sse(resp)
            assert error is None and events[-1].is_done
            return request_id, resp.status, events
        return request_id, resp.status, await resp.json()


async def test_200_concurrent_requests_then_sigterm_logs_exactly_200(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = logged_gateway(start_gateway, fake_openai)
    started_ms = int(time.time() * 1000)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=100)) as session:
        results = await asyncio.gather(*(send(session, gateway, i, stream=i % 4 == 0) for i in range(200)))
    assert all(status == 200 for _, status, _ in results)
    ids = {request_id for request_id, _, _ in results}
    assert len(ids) == 200, "every response has a distinct x-request-id"

    code = await asyncio.to_thread(gateway.stop, signal.SIGTERM)
    assert code == 0, f"SIGTERM should drain and exit 0, got {code}\n{gateway.output()}"
    assert "Traceback" not in gateway.output()

    rows = gateway.log.rows()
    assert len(rows) == 200, f"expected exactly 200 rows, got {len(rows)}"
    assert {r["id"] for r in rows} == ids, "the rows are exactly the requests that were answered"
    streamed_ids = {rid for rid, _, answer in results if isinstance(answer, list)}
    now_ms = int(time.time() * 1000)
    for row in rows:
        assert row["endpoint"] == "chat"
        assert row["provider"] == "openai"
        assert row["model"] == "gpt-4o-mini"
        assert row["status"] == 200
        assert row["error"] is None
        assert row["stream"] == (1 if row["id"] in streamed_ids else 0)
        assert started_ms - 5000 <= row["ts_ms"] <= now_ms
        assert row["prompt_tokens"] == 3, "usage is recorded, for streams too"
        assert row["completion_tokens"] == 4
        assert row["total_tokens"] == 7
        assert row["latency_us"] > 0
        assert row["upstream_us"] > 0
        assert 0 <= row["overhead_us"] <= row["latency_us"]
        assert row["retries"] == 0
        assert row["fallback_index"] == 0
        assert row["key_name"] == "k1"
        assert "request number" in row["input"]
        assert "fake-openai: request number" in row["output"]


def test_log_schema_has_contract_columns(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = logged_gateway(start_gateway, fake_openai)
    with gateway.client() as client:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    gateway.log.wait_rows(1)
    missing = CONTRACT_COLUMNS - set(gateway.log.columns())
    assert not missing, f"logs table lacks {sorted(missing)}"


def test_row_fields_for_one_request(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = logged_gateway(start_gateway, fake_openai)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is bifrost"}]
    with gateway.client() as client:
        raw = client.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=messages)
    answer = raw.parse()
    row = gateway.log.row_for(raw.headers["x-request-id"])
    assert answer.usage is not None
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
        answer.usage.total_tokens,
    )
    assert json.loads(row["input"]) == messages
    assert "fake-openai: what is bifrost" in row["output"]
    for stage in ("build_us", "encode_us", "upstream_us", "parse_us"):
        assert row[stage] is not None and row[stage] >= 0, stage
    assert row["upstream_us"] > 0
    assert row["latency_us"] >= row["upstream_us"]
    assert int(raw.headers["x-bf-overhead-us"]) >= 0


def test_stream_usage_logged_without_include_usage(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = logged_gateway(start_gateway, fake_openai)
    with gateway.client() as client:
        stream = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "count me in"}], stream=True
        )
        chunks = list(stream.parse())
    assert all(c.usage is None for c in chunks), "the client did not ask for usage"
    row = gateway.log.row_for(stream.headers["x-request-id"])
    assert row["stream"] == 1
    assert row["prompt_tokens"] == 3 and row["completion_tokens"] == 4


def test_disable_content_logging(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = logged_gateway(start_gateway, fake_openai, disable_content_logging=True)
    with gateway.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "secret stuff"}]
        )
    row = gateway.log.row_for(raw.headers["x-request-id"])
    assert row["input"] is None and row["output"] is None
    assert row["prompt_tokens"] == 2, "metadata is still logged"


def test_error_rows(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = logged_gateway(start_gateway, fake_openai)
    fake_openai.enqueue(Reply.bad_request("bad temperature"))
    with gateway.client() as client, pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    row = gateway.log.row_for(err.value.response.headers["x-request-id"])
    assert row["status"] == 400
    assert row["error"] and "bad temperature" in row["error"]
    assert row["error_type"]


def test_other_endpoints_are_logged(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = logged_gateway(start_gateway, fake_openai)
    with gateway.client() as client:
        emb = client.embeddings.with_raw_response.create(model="openai/text-embedding-3-small", input="abc def")
        cmp = client.completions.with_raw_response.create(model="openai/gpt-3.5-turbo-instruct", prompt="p q")
    emb_row = gateway.log.row_for(emb.headers["x-request-id"])
    cmp_row = gateway.log.row_for(cmp.headers["x-request-id"])
    assert emb_row["endpoint"] == "embeddings" and emb_row["prompt_tokens"] == 2
    assert cmp_row["endpoint"] == "completions" and cmp_row["total_tokens"] > 0


async def test_sigterm_lets_an_inflight_stream_finish(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = logged_gateway(start_gateway, fake_openai)
    fake_openai.enqueue(Reply(chunk_delay=0.2, content=" ".join(f"w{i}" for i in range(10))))
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "drain"}], "stream": True}
    async with aiohttp.ClientSession() as session:
        resp = await session.post(gateway.url("/v1/chat/completions"), json=body)
        first = await resp.content.readline()
        assert first.startswith(b"data:")
        stopping = asyncio.create_task(asyncio.to_thread(gateway.stop, signal.SIGTERM))
        events, error = await read_sse(resp)
        resp.release()
        code = await stopping
    assert error is None and events[-1].is_done, "the stream in flight finishes before the gateway exits"
    assert code == 0
    rows = gateway.log.rows()
    assert len(rows) == 1 and rows[0]["status"] == 200


def test_retention_deletes_old_rows(start_gateway: StartGateway, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    app_dir = tmp_path / "retained"
    provider = openai_provider(fake_openai.url, keys=[key("sk-fake-1", name="k1")])
    first = start_gateway(make_config({"openai": provider}, log_retention_days=30), app_dir=app_dir)
    assert first.stop() == 0
    now_ms = int(time.time() * 1000)
    conn = sqlite3.connect(app_dir / "logs.db")
    try:
        with conn:
            for row_id, age_days in (("old-row", 45), ("recent-row", 2)):
                conn.execute(
                    "INSERT INTO logs (id, ts_ms, endpoint, provider, model, status, stream, latency_us, overhead_us)"
                    " VALUES (?, ?, 'chat', 'openai', 'gpt-4o-mini', 200, 0, 1000, 10)",
                    (row_id, now_ms - age_days * 86_400_000),
                )
    finally:
        conn.close()
    second = start_gateway(make_config({"openai": provider}, log_retention_days=30), app_dir=app_dir)
    deadline = time.monotonic() + 20
    ids = {r["id"] for r in second.log.rows()}
    while "old-row" in ids and time.monotonic() < deadline:
        time.sleep(0.2)
        ids = {r["id"] for r in second.log.rows()}
    assert "old-row" not in ids, "a row older than log_retention_days is removed"
    assert "recent-row" in ids, "a row inside the retention window is kept"


async def test_sigterm_with_200_requests_in_flight(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = logged_gateway(start_gateway, fake_openai)
    fake_openai.always(Reply(delay=2))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=100)) as session:
        sending = asyncio.gather(*(send(session, gateway, i, stream=i % 2 == 0) for i in range(200)))
        arrived = await asyncio.to_thread(lambda: wait_until(lambda: len(fake_openai.requests) == 200, 60))
        assert arrived, f"only {len(fake_openai.requests)} requests reached the fake"
        stopping = asyncio.ensure_future(asyncio.to_thread(gateway.stop, signal.SIGTERM))
        results = await sending
        code = await stopping
    assert [status for _, status, _ in results] == [200] * 200, "in-flight requests finish during the drain"
    assert code == 0
    rows = gateway.log.rows()
    assert len(rows) == 200
    assert {r["id"] for r in rows} == {rid for rid, _, _ in results}


def test_overhead_excludes_the_upstream_wait(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    gateway = logged_gateway(start_gateway, fake_openai)
    fake_openai.enqueue(Reply(delay=2))
    with gateway.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "slow one"}]
        )
    header_overhead = int(raw.headers["x-bf-overhead-us"])
    row = gateway.log.row_for(raw.headers["x-request-id"])
    assert row["upstream_us"] >= 1_900_000, "the 2 s upstream wait is counted as upstream time"
    assert row["latency_us"] >= row["upstream_us"]
    assert header_overhead < 1_900_000, "x-bf-overhead-us is total minus the upstream wait"
    assert row["overhead_us"] < 1_900_000


def test_attempts_are_logged(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    provider = openai_provider(fake_openai.url, keys=[key("sk-fake-1", name="k1")], max_retries=2)
    gateway = start_gateway(make_config({"openai": provider}))
    fake_openai.enqueue(Reply.server_error(502), Reply.rate_limited(retry_after=0))
    with gateway.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    row = gateway.log.row_for(raw.headers["x-request-id"])
    assert row["retries"] == 2
    attempts = json.loads(row["attempts"])
    assert isinstance(attempts, list) and len(attempts) >= 2, attempts
    assert "502" in row["attempts"] and "429" in row["attempts"]


async def test_queue_full_rows(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> None:
    provider = openai_provider(fake_openai.url, concurrency=1, buffer_size=1)
    gateway = start_gateway(make_config({"openai": provider}, drop_excess_requests=True))
    fake_openai.always(Reply(delay=2))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(*(send(session, gateway, i, stream=False) for i in range(5)))
    dropped = {rid for rid, status, _ in results if status == 429}
    assert dropped
    rows = await asyncio.to_thread(gateway.log.wait_rows, 5)
    assert len(rows) == 5, "dropped requests are logged too"
    for row in rows:
        if row["id"] in dropped:
            assert row["status"] == 429 and row["error_type"] == "queue_full"
