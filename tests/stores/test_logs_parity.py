"""The PostgreSQL log engine answers every LogReader method as the SQLite engine does, for the same rows
written through each engine's real writer: list (every filter, sort, order and page), get, stats,
by_virtual_key, histogram, facets, last_rowid and tail."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness.postgres import PostgresServer

from runtime.requestlog.filters import SORTS, LogFilter, Page
from runtime.stores.logs_postgres import PostgresLogQueries, PostgresLogWriter, rollup, rollup_reads
from runtime.stores.logs_postgres.queries import Params
from runtime.stores.logs_sqlite.queries import LogQueries
from runtime.stores.logs_sqlite.writer import LogWriter
from runtime.stores.status import StoreStatus

from .test_logs_postgres import make_row, settings_for

NOW = (int(time.time() * 1000) // 1000) * 1000
HOUR_MS = 3_600_000
PII = {
    "rule": "mask-pii",
    "provider": "cards",
    "stage": "input",
    "action": "redact",
    "types": ["credit_card"],
    "count": 2,
}
KEYS = {"rule": "no-keys", "provider": "secrets", "stage": "input", "action": "block", "types": ["aws_key"], "count": 1}
PII_FLAG = {**PII, "stage": "output", "action": "flag", "count": 1}
JUDGE = {
    "rule": "judge",
    "provider": "llm",
    "stage": "output",
    "action": "flag",
    "types": [],
    "count": 0,
    "error": "timeout",
}


def guardrails_of(i: int) -> list[dict[str, Any]] | None:
    """What guardrails did for row i (issue 15): most rows nothing; some a redaction, a block with a flag
    by another rule, or a remote detector's error."""
    if i % 10 == 1:
        return [PII]
    if i % 10 == 4:
        return [KEYS, PII_FLAG]
    if i % 25 == 7:
        return [JUDGE]
    return None


PROVIDERS = (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("azure", "gpt-4o"), ("groq", "llama"), (None, None))


def rows() -> list[tuple[Any, ...]]:
    """300 rows over the last 3 days with every column varied (and nulls and ties where the UI sorts)."""
    rng = random.Random(14)
    out = []
    for i in range(300):
        provider, model = PROVIDERS[i % len(PROVIDERS)]
        status = (200, 200, 201, 429, 500, 502, 200, 404)[i % 8]
        text = {7: "find the Needle here", 50: "a NEEDLE too", 99: "costs 100% more", 120: "under_score"}.get(i)
        out.append(
            make_row(
                i,
                NOW - 72 * HOUR_MS + i * 800_000 + rng.randrange(1000),  # unique, in submission order
                provider=provider,
                model=model,
                model_requested=f"{provider}/{model}" if provider else None,
                status=status,
                stream=i % 3 == 0,
                latency_us=(i % 40) * 1000 + 500,  # ties
                overhead_us=100 + i % 7,
                queue_wait_us=i % 5,
                parse_us=i % 11,
                upstream_us=(i % 40) * 900,
                prompt_tokens=None if i % 6 == 0 else 10 + i % 9,
                completion_tokens=None if i % 6 == 0 else 5 + i % 4,
                total_tokens=None if i % 6 == 0 else 15 + i % 13,
                cached_tokens=i % 2 or None,
                retries=i % 3,
                fallback_index=i % 2,
                key_name=f"key-{i % 3}",
                error="upstream exploded" if status >= 400 else None,
                error_type="api_error" if status >= 500 else None,
                endpoint=("chat", "chat", "embeddings", "completions")[i % 4],
                input=[{"role": "user", "content": text or f"hello {i}"}],
                output={"content": f"answer {i}"} if status < 400 else None,
                attempts=[{"status": status, "provider": provider}] if status >= 400 else None,
                cost=None if i % 5 == 0 else (i % 17) / 8,  # exact in binary: sums agree to the bit
                virtual_key_id=(None, "vk-a", "vk-b", None)[i % 4],
                skipped_events=2 if i % 50 == 3 else None,
                cache=(None, "miss", "hit-direct", "hit-semantic", None)[i % 5],
                cache_similarity=0.5 + (i % 4) / 8 if i % 5 == 3 else None,
                guardrails=guardrails_of(i),
            )
        )
    return out


@dataclass
class Engines:
    sqlite: LogQueries
    postgres: PostgresLogQueries


@pytest.fixture
async def engines(postgres_server: PostgresServer, postgres_db: str, tmp_path: Path) -> AsyncIterator[Engines]:
    data = rows()
    lite = LogWriter(tmp_path / "logs.db", capacity=10_000, batch_size=64)
    status = StoreStatus("postgres", "test")
    settings = settings_for(postgres_server, postgres_db)
    pgw = PostgresLogWriter(settings, status, capacity=10_000, batch_size=64)
    for writer in (lite, pgw):
        await writer.start()
        for row in data:
            writer.submit(row)
        await writer.close()
        assert (writer.written, writer.dropped) == (len(data), 0)
    both = Engines(LogQueries(tmp_path / "logs.db"), PostgresLogQueries(settings, status))
    yield both
    await both.sqlite.close()
    await both.postgres.close()


FILTERS = [
    LogFilter(),
    LogFilter(since_ms=NOW - 48 * HOUR_MS, until_ms=NOW - 12 * HOUR_MS),
    LogFilter(since_ms=NOW - 30 * HOUR_MS),
    LogFilter(providers=("azure",)),
    LogFilter(providers=("openai", "groq"), models=("gpt-4o", "llama")),
    LogFilter(models=("gpt-4o-mini",), since_ms=NOW - 60 * HOUR_MS),
    LogFilter(statuses=("error",)),
    LogFilter(statuses=("success",)),
    LogFilter(statuses=("4xx", "201")),
    LogFilter(statuses=("5xx",), providers=("openai",)),
    LogFilter(stream=True),
    LogFilter(stream=False, statuses=("2xx",)),
    LogFilter(endpoint="embeddings"),
    LogFilter(min_latency_us=10_000, max_latency_us=20_500),
    LogFilter(text="needle"),
    LogFilter(text="100%"),
    LogFilter(text="under_score"),
    LogFilter(text="r42"),
    LogFilter(text="exploded", providers=("groq",)),
    LogFilter(virtual_key_ids=("vk-a",)),
    LogFilter(virtual_key_ids=("vk-a", "vk-b"), statuses=("error",)),
    LogFilter(virtual_key_ids=()),
    LogFilter(cache="hit"),
    LogFilter(cache="none"),
    LogFilter(cache="hit-semantic"),
    LogFilter(cache="miss", stream=True, since_ms=NOW - 50 * HOUR_MS),
    LogFilter(guardrail="mask-pii"),
    LogFilter(guardrail_action="block"),
    LogFilter(guardrail="mask-pii", guardrail_action="flag"),
    LogFilter(guardrail="mask-pii", guardrail_action="block"),  # another rule blocked: no row
    LogFilter(guardrail="judge", since_ms=NOW - 40 * HOUR_MS),
    LogFilter(guardrail="no such rule"),
    LogFilter(guardrail_action="flag", statuses=("error",), providers=("openai",)),
]


def _ids(f: LogFilter) -> str:
    return ",".join(f"{k}={v}" for k, v in vars(f).items() if v not in (None, ())) if hasattr(f, "__dict__") else ""


@pytest.mark.parametrize("f", FILTERS, ids=[str(i) for i in range(len(FILTERS))])
async def test_list_stats_and_virtual_keys_agree(engines: Engines, f: LogFilter) -> None:
    for sort, descending in itertools.product(SORTS, (True, False)):
        for limit, offset in ((50, 0), (7, 7), (500, 0), (10, 290)):
            page = Page(sort=sort, descending=descending, limit=limit, offset=offset)
            answer = await engines.postgres.list(f, page)
            assert answer.pop("total_exact") is True  # 300 rows: under the cap, exact as SQLite's
            assert answer == await engines.sqlite.list(f, page), (sort, descending, offset)
    assert await engines.postgres.stats(f) == await engines.sqlite.stats(f)
    assert await engines.postgres.by_virtual_key(f) == await engines.sqlite.by_virtual_key(f)
    assert await engines.postgres.by_virtual_key(f, limit=2) == await engines.sqlite.by_virtual_key(f, limit=2)


@pytest.mark.parametrize("buckets", [1, 7, 60, 500])
async def test_histograms_agree(engines: Engines, buckets: int) -> None:
    for f in FILTERS:
        f = LogFilter(
            **{
                **{k: getattr(f, k) for k in f.__dataclass_fields__},
                "since_ms": f.since_ms or NOW - 80 * HOUR_MS,
                "until_ms": f.until_ms or NOW + 1,
            }
        )
        assert await engines.postgres.histogram(f, buckets) == await engines.sqlite.histogram(f, buckets), f


def _expected(f: LogFilter) -> set[str]:
    """The ids `f`'s guardrail conditions select, computed here from the rows (not by either engine)."""
    out = set()
    for i in range(300):
        for entry in guardrails_of(i) or ():
            if f.guardrail in (None, entry["rule"]) and f.guardrail_action in (None, entry["action"]):
                out.add(f"r{i}")
    return out


@pytest.mark.parametrize(
    "f",
    [
        LogFilter(guardrail="mask-pii"),
        LogFilter(guardrail_action="block"),
        LogFilter(guardrail="mask-pii", guardrail_action="flag"),
        LogFilter(guardrail="mask-pii", guardrail_action="block"),
        LogFilter(guardrail_action="flag"),
        LogFilter(guardrail="judge"),
    ],
)
async def test_guardrail_filters_select_the_rows_where_the_rule_acted(engines: Engines, f: LogFilter) -> None:
    expected = _expected(f)
    for engine in (engines.sqlite, engines.postgres):
        answer = await engine.list(f, Page(limit=500))
        assert {item["id"] for item in answer["items"]} == expected
        assert answer["total"] == len(expected)
        for item in answer["items"]:  # the column comes back decoded, as logged
            assert item["guardrails"] == guardrails_of(int(item["id"][1:]))
    assert len(_expected(LogFilter(guardrail="mask-pii"))) == 60
    assert _expected(LogFilter(guardrail="mask-pii", guardrail_action="block")) == set()


async def test_get_facets_and_tail_agree(engines: Engines) -> None:
    for i in (0, 1, 3, 4, 7, 99, 150, 299):
        assert await engines.postgres.get(f"r{i}") == await engines.sqlite.get(f"r{i}")
    for engine in (engines.sqlite, engines.postgres):
        detail = await engine.get("r4")
        assert detail is not None and detail["guardrails"] == [KEYS, PII_FLAG]
        assert (await engine.get("r0") or {})["guardrails"] is None
    assert await engines.postgres.get("missing") is None
    assert await engines.postgres.facets() == await engines.sqlite.facets()
    assert await engines.postgres.last_rowid() == await engines.sqlite.last_rowid() == 300
    assert await engines.postgres.tail(0, 1000) == await engines.sqlite.tail(0, 1000)
    assert await engines.postgres.tail(290, 5) == await engines.sqlite.tail(290, 5)


def _latency_close(bucketed: float | None, exact: float | None) -> bool:
    """A bucketed percentile (ms) lies within one latency bucket's width of the exact one."""
    if bucketed is None or exact is None:
        return bucketed is exact
    return exact / rollup.LAT_RATIO <= bucketed <= exact * rollup.LAT_RATIO


def _split_percentiles(answer: dict[str, Any]) -> tuple[float | None, float | None]:
    return answer.pop("p50_latency_ms"), answer.pop("p99_latency_ms")


@pytest.mark.parametrize("f", FILTERS, ids=[str(i) for i in range(len(FILTERS))])
async def test_stats_and_histograms_with_bucketed_percentiles_agree_within_a_bucket(
    engines: Engines, f: LogFilter
) -> None:
    """With percentiles from the rollup's latency buckets (what ranges of more than SAMPLE_TARGET rows
    get), p50/p99 are within one bucket's width of the exact ones; every other value is still equal."""
    engines.postgres.exact_percentiles_up_to = 0
    pg, lite = await engines.postgres.stats(f), await engines.sqlite.stats(f)
    pg_pct, lite_pct = _split_percentiles(pg), _split_percentiles(lite)
    bucketed = rollup_reads.grouped_sql(f, Params(), ()) is not None and pg["count"] > 0
    if bucketed:  # the rollup answered: percentiles from buckets, flagged
        assert pg.pop("percentiles") == {
            "sampled": True,
            "sample_size": pg["count"],
            "latency_buckets": rollup.LATENCY_BUCKETS,
        }
        lite.pop("percentiles")
        assert all(_latency_close(a, b) for a, b in zip(pg_pct, lite_pct, strict=True)), (pg_pct, lite_pct)
    else:  # text search / latency bounds: the raw table, exact
        assert pg_pct == lite_pct
    assert pg == lite
    hf = LogFilter(
        **{
            **{k: getattr(f, k) for k in f.__dataclass_fields__},
            "since_ms": f.since_ms or NOW - 80 * HOUR_MS,
            "until_ms": f.until_ms or NOW + 1,
        }
    )
    for buckets in (1, 7):
        pg_h, lite_h = await engines.postgres.histogram(hf, buckets), await engines.sqlite.histogram(hf, buckets)
        if pg_h["percentiles"]["sampled"]:
            assert bucketed
            pg_h.pop("percentiles"), lite_h.pop("percentiles")
            for a, b in zip(pg_h["series"], lite_h["series"], strict=True):
                pa, pb = _split_percentiles(a), _split_percentiles(b)
                assert all(_latency_close(x, y) for x, y in zip(pa, pb, strict=True)), (pa, pb)
        assert pg_h == lite_h
