"""Read side of the request log: list, one record, stats and time histograms for the admin API.

Reads go through their own read-only aiosqlite connections (never the writer's), so a slow query
never delays a flush; WAL lets them read while the writer commits. Every view is shaped to be
answered from the covering indexes of migration m002 (see bench/logs_query.py for the numbers on
1,000,000 rows):

- totals: one aggregate over `logs_ts_cover`'s time range;
- per provider/model: one correlated range seek into `logs_pm_cover` per distinct (provider, model),
  so there is no GROUP BY sort over the range;
- histograms: one correlated range seek per time bucket (a recursive CTE generates the buckets),
  again without a sort;
- p50/p99: exact up to SAMPLE_TARGET rows, otherwise over every k-th rowid (a uniform sample that
  still only reads the index), and the answer says it was sampled.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiosqlite

from runtime.requestlog.filters import SORTS, LogFilter, Page
from runtime.requestlog.record import COLUMNS, JSON_COLUMNS
from runtime.stores.logs import LogQueryTooSlow, LogReadError

SAMPLE_TARGET = 20_000
LIST_COLUMNS = tuple(c for c in COLUMNS if c not in ("input", "output", "attempts"))
STAGES = ("queue_wait_us", "key_select_us", "build_us", "encode_us", "upstream_us", "parse_us")
QUERY_BUDGET_S = 10.0  # no admin query may hold a read connection longer than this


def _json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _percentile(sorted_values: list[int], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000.0, 3)


class LogQueries:
    """A small pool of read-only connections to logs.db, opened on first use."""

    def __init__(self, path: Path, pool_size: int = 2, budget_s: float = QUERY_BUDGET_S) -> None:
        self.path = Path(path)
        self.budget_s = budget_s
        self.pool_size = pool_size
        self._pool: asyncio.Queue[aiosqlite.Connection] | None = None
        self._all: list[aiosqlite.Connection] = []
        self._opening = asyncio.Lock()
        # Distinct (provider, model) pairs, kept up to date by scanning only rows added since the last
        # look (rowid only grows): a DISTINCT over the whole index costs ~70 ms on 1M rows.
        self._pairs: set[tuple[str | None, str | None]] = set()
        self._pairs_rowid = 0
        self._deadlines: dict[int, list[float]] = {}

    def available(self) -> bool:
        return self.path.exists()

    async def _open(self) -> asyncio.Queue[aiosqlite.Connection]:
        async with self._opening:
            if self._pool is None:
                pool: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
                for _ in range(self.pool_size):
                    db = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True)
                    await db.execute("PRAGMA busy_timeout = 5000")
                    await db.execute("PRAGMA query_only = 1")
                    await db.execute("PRAGMA mmap_size = 268435456")
                    deadline = [float("inf")]

                    # Runs on the connection's thread every few thousand VM steps: past the deadline
                    # SQLite stops the statement ("interrupted") instead of holding the pool.
                    def past_deadline(d: list[float] = deadline) -> bool:
                        return time.monotonic() > d[0]

                    await db.set_progress_handler(past_deadline, 100_000)
                    self._deadlines[id(db)] = deadline
                    self._all.append(db)
                    pool.put_nowait(db)
                self._pool = pool
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosqlite.Connection]:
        pool = self._pool or await self._open()
        db = await pool.get()
        try:
            yield db
        finally:
            pool.put_nowait(db)

    async def close(self) -> None:
        for db in self._all:
            with contextlib.suppress(Exception):
                await db.close()
        self._all.clear()
        self._pool = None

    async def _fetch(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Every read goes through here: the driver's errors leave as the log store's own
        (LogQueryTooSlow, LogReadError), so nothing above the store imports aiosqlite."""
        try:
            async with self.connection() as db:
                deadline = self._deadlines[id(db)]
                deadline[0] = time.monotonic() + self.budget_s
                try:
                    async with db.execute(sql, params) as cursor:
                        # No row_factory is set: the rows are plain tuples (aiosqlite types them as Row).
                        return cast(builtins.list[tuple[Any, ...]], list(await cursor.fetchall()))
                finally:
                    deadline[0] = float("inf")
        except aiosqlite.OperationalError as exc:
            if "interrupt" in str(exc):
                raise LogQueryTooSlow(
                    f"the log query ran longer than {self.budget_s:g} s and was stopped; "
                    "narrow the time range or the filters"
                ) from None
            raise LogReadError(str(exc)) from exc
        except aiosqlite.Error as exc:
            raise LogReadError(str(exc)) from exc

    # -- list and detail -----------------------------------------------------------------------------
    async def list(self, f: LogFilter, page: Page) -> dict[str, Any]:
        where, params = f.where()
        column = SORTS[page.sort]
        direction = "DESC" if page.descending else "ASC"
        select = ", ".join(LIST_COLUMNS)
        if f.needs_table:
            source = f"logs WHERE {where} ORDER BY {column} {direction}, rowid {direction} LIMIT ? OFFSET ?"
        else:
            # Pick the page from the covering index alone (skipped rows never touch the table), then
            # read just those rows: a deep OFFSET costs an index walk, not a table scan.
            source = (
                f"logs WHERE rowid IN (SELECT rowid FROM logs INDEXED BY logs_ts_cover WHERE {where} "
                f"ORDER BY {column} {direction} LIMIT ? OFFSET ?) "
                f"ORDER BY {column} {direction}, rowid {direction}"
            )
        sql = f"SELECT {select}, substr(input, 1, 240), substr(output, 1, 240) FROM {source}"
        fetch_rows = self._fetch(sql, [*params, page.limit + 1, page.offset])
        if f.text:  # a count over a content search would scan every row: skip it
            rows, total = await fetch_rows, None
        else:
            rows, counted = await asyncio.gather(
                fetch_rows, self._fetch(f"SELECT count(*) FROM logs {_count_index(f)} WHERE {where}", params)
            )
            total = counted[0][0]
        items = []
        for row in rows[: page.limit]:
            item = dict(zip(LIST_COLUMNS, row, strict=False))
            item["stream"] = bool(item["stream"])
            if item["guardrails"] is not None:  # JSON text in the store; most rows have none
                item["guardrails"] = _json_or_text(item["guardrails"])
            item["input_preview"], item["output_preview"] = row[-2], row[-1]
            items.append(item)
        return {
            "items": items,
            "total": total,
            "limit": page.limit,
            "offset": page.offset,
            "has_more": len(rows) > page.limit,
            "sort": page.sort,
            "order": "desc" if page.descending else "asc",
        }

    async def get(self, log_id: str) -> dict[str, Any] | None:
        rows = await self._fetch(f"SELECT {', '.join(COLUMNS)}, extra FROM logs WHERE id = ?", (log_id,))
        if not rows:
            return None
        record = dict(zip((*COLUMNS, "extra"), rows[0], strict=False))
        record["stream"] = bool(record["stream"])
        for name in (*JSON_COLUMNS, "extra"):
            record[name] = _json_or_text(record[name])
        return record

    async def tail(self, after_rowid: int, limit: int = 500) -> builtins.list[tuple[int, tuple[Any, ...]]]:
        """Rows written after `after_rowid` (any worker's), oldest first: the multi-worker live feed."""
        rows = await self._fetch(
            f"SELECT rowid, {', '.join(COLUMNS)} FROM logs WHERE rowid > ? ORDER BY rowid LIMIT ?", (after_rowid, limit)
        )
        return [(r[0], tuple(r[1:])) for r in rows]

    async def last_rowid(self) -> int:
        rows = await self._fetch("SELECT max(rowid) FROM logs")
        return int(rows[0][0] or 0)

    # -- stats ---------------------------------------------------------------------------------------
    async def stats(self, f: LogFilter) -> dict[str, Any]:
        """Exact counts, success and token sums; p50/p99, stage averages, overhead and the stream share
        from a uniform sample of at most SAMPLE_TARGET rows (exact below that)."""
        where, params = f.where()
        index = "" if f.needs_table else "INDEXED BY logs_ts_cover"

        async def totals_and_sample() -> tuple[tuple[Any, ...], builtins.list[tuple[Any, ...]], int]:
            totals = (
                await self._fetch(
                    "SELECT count(*), sum(status < 400), avg(latency_us), sum(prompt_tokens), sum(completion_tokens), "
                    f"sum(total_tokens), sum(cost) FROM logs {index} WHERE {where}",
                    params,
                )
            )[0]
            count = int(totals[0] or 0)
            if not count:
                return totals, [], 1
            columns = f"latency_us, overhead_us, stream, {', '.join(STAGES)}"
            rows, step = await self._sample(f, count, SAMPLE_TARGET, columns)
            return totals, rows, step

        (totals, sample, step), groups = await asyncio.gather(totals_and_sample(), self._by_provider_model(f))
        count = int(totals[0] or 0)
        latencies = sorted(r[0] for r in sample)
        n = len(sample) or 1
        stage_avgs = {
            s[:-3]: round(sum(r[3 + i] for r in sample) / n, 1) if sample else None for i, s in enumerate(STAGES)
        }
        return {
            "range": {"since": f.since_ms, "until": f.until_ms},
            "count": count,
            "success": int(totals[1] or 0),
            "errors": count - int(totals[1] or 0),
            "success_rate": (totals[1] or 0) / count if count else None,
            "avg_latency_ms": _ms(totals[2]),
            "p50_latency_ms": _ms(_percentile(latencies, 0.5)),
            "p99_latency_ms": _ms(_percentile(latencies, 0.99)),
            "avg_overhead_us": round(sum(r[1] for r in sample) / n, 1) if sample else None,
            "prompt_tokens": int(totals[3] or 0),
            "completion_tokens": int(totals[4] or 0),
            "total_tokens": int(totals[5] or 0),
            "cost": totals[6],  # US dollars over the priced rows; None when no row was priced
            "streams": round(sum(r[2] for r in sample) * count / n) if sample else 0,
            "stages_avg_us": stage_avgs,
            "percentiles": {"sampled": step > 1, "sample_size": len(sample)},
            "by_model": groups,
            "by_provider": _roll_up(groups),
        }

    async def by_virtual_key(self, f: LogFilter, limit: int = 200) -> builtins.list[dict[str, Any]]:
        """Requests, successes, tokens and cost per virtual key (None: ungoverned), most requests first.

        One GROUP BY over the filter's range: the ts index narrows the rows, the table gives the key
        (no covering index holds virtual_key_id; see LogFilter.needs_table)."""
        where, params = f.where()
        rows = await self._fetch(
            "SELECT virtual_key_id, count(*), sum(status < 400), sum(total_tokens), sum(cost) "
            f"FROM logs WHERE {where} GROUP BY virtual_key_id ORDER BY count(*) DESC, virtual_key_id LIMIT ?",
            [*params, limit],
        )
        return [
            {"virtual_key_id": vk, "count": n, "success": int(ok or 0), "total_tokens": int(tokens or 0), "cost": cost}
            for vk, n, ok, tokens, cost in rows
        ]

    async def _sample(self, f: LogFilter, count: int, target: int, columns: str) -> tuple[builtins.list[tuple], int]:
        """Every k-th rowid in the filter's range (k = count // target): uniform, and read from the
        covering index. Returns (rows, k)."""
        where, params = f.where()
        index = "" if f.needs_table else "INDEXED BY logs_ts_cover"
        step = max(1, count // target)
        if step > 1:
            where += " AND (rowid % ?) = 0"
            params = [*params, step]
        rows = await self._fetch(f"SELECT {columns} FROM logs {index} WHERE {where}", params)
        return rows, step

    async def pairs(self) -> builtins.list[tuple[str | None, str | None]]:
        """Every (provider, model) in the log (pairs removed by retention linger; they count 0)."""
        rows = await self._fetch("SELECT max(rowid) FROM logs")
        top = int(rows[0][0] or 0)
        if top != self._pairs_rowid:
            if top < self._pairs_rowid:  # the file was replaced: start over
                self._pairs, self._pairs_rowid = set(), 0
            found = await self._fetch(
                "SELECT DISTINCT provider, model FROM logs WHERE rowid > ? AND rowid <= ?", (self._pairs_rowid, top)
            )
            self._pairs.update((p, m) for p, m in found)
            self._pairs_rowid = top
        return sorted(self._pairs, key=lambda pm: (pm[0] or "", pm[1] or ""))

    async def _by_provider_model(self, f: LogFilter) -> builtins.list[dict[str, Any]]:
        pairs = [pm for pm in await self.pairs() if not f.providers or pm[0] in f.providers]
        if not pairs:
            return []
        where, params = f.where("l")
        index = "" if f.needs_table else "INDEXED BY logs_pm_cover"
        values = ", ".join("(?, ?)" for _ in pairs)
        sql = (
            f"WITH d(provider, model) AS (VALUES {values}) "
            "SELECT d.provider, d.model, (SELECT json_array(count(*), sum(l.status < 400), avg(l.latency_us), "
            "avg(l.overhead_us), sum(l.prompt_tokens), sum(l.completion_tokens), sum(l.total_tokens), sum(l.cost)) "
            f"FROM logs l {index} WHERE l.provider IS d.provider AND l.model IS d.model AND {where}) FROM d"
        )
        out = []
        for provider, model, packed in await self._fetch(sql, [*(v for pm in pairs for v in pm), *params]):
            n, ok, lat, over, prompt, completion, total, cost = json.loads(packed)
            if not n:
                continue
            out.append(
                {
                    "provider": provider,
                    "model": model,
                    "count": n,
                    "success": ok or 0,
                    "success_rate": (ok or 0) / n,
                    "avg_latency_ms": _ms(lat),
                    "avg_overhead_us": None if over is None else round(over, 1),
                    "prompt_tokens": prompt or 0,
                    "completion_tokens": completion or 0,
                    "total_tokens": total or 0,
                    "cost": cost,
                }
            )
        out.sort(key=lambda g: -g["count"])
        return out

    # -- histograms ----------------------------------------------------------------------------------
    async def histogram(self, f: LogFilter, buckets: int = 60) -> dict[str, Any]:
        """Per-bucket requests, errors, latency (avg/p50/p99), tokens and overhead, overall and per
        provider, over [since, until). p50/p99 per bucket come from a uniform sample."""
        assert f.since_ms is not None and f.until_ms is not None
        width = max(1, -(-(f.until_ms - f.since_ms) // buckets))
        cte = "WITH RECURSIVE b(lo) AS (SELECT ? UNION ALL SELECT lo + ? FROM b WHERE lo + ? < ?) "
        cte_params = [f.since_ms, width, width, f.until_ms]
        (series, sampled), by_provider = await asyncio.gather(
            self._overall_series(f, width, cte, cte_params), self._provider_series(f, width, cte, cte_params)
        )
        return {
            "since": f.since_ms,
            "until": f.until_ms,
            "bucket_ms": width,
            "series": series,
            "by_provider": by_provider,
            "percentiles": {"sampled": sampled},
        }

    async def _overall_series(
        self, f: LogFilter, width: int, cte: str, cte_params: builtins.list[Any]
    ) -> tuple[builtins.list[dict[str, Any]], bool]:
        where, params = f.where("l")
        index = "" if f.needs_table else "INDEXED BY logs_ts_cover"
        agg = (
            "json_array(count(*), sum(l.status >= 400), avg(l.latency_us), sum(l.total_tokens), avg(l.overhead_us), "
            "sum(l.cost))"
        )
        sql = (
            cte + f"SELECT lo, (SELECT {agg} FROM logs l {index} WHERE l.ts_ms >= b.lo AND "
            f"l.ts_ms < b.lo + ? AND {where}) FROM b"
        )
        series = []
        total = 0
        for lo, packed in await self._fetch(sql, [*cte_params, width, *params]):
            n, err, lat, tokens, over, cost = json.loads(packed)
            total += n
            series.append(
                {
                    "t": lo,
                    "count": n,
                    "errors": err or 0,
                    "avg_latency_ms": _ms(lat),
                    "p50_latency_ms": None,
                    "p99_latency_ms": None,
                    "tokens": tokens or 0,
                    "avg_overhead_us": None if over is None else round(over, 1),
                    "cost": cost,
                }
            )
        if not total:
            return series, False
        samples, step = await self._sample(f, total, SAMPLE_TARGET * 2, "ts_ms, latency_us")
        per_bucket: dict[int, builtins.list[int]] = {}
        for ts, latency in samples:
            per_bucket.setdefault((ts - f.since_ms) // width, []).append(latency)
        for i, values in per_bucket.items():
            if 0 <= i < len(series):
                values.sort()
                series[i]["p50_latency_ms"] = _ms(_percentile(values, 0.5))
                series[i]["p99_latency_ms"] = _ms(_percentile(values, 0.99))
        return series, step > 1

    async def _provider_series(
        self, f: LogFilter, width: int, cte: str, cte_params: builtins.list[Any]
    ) -> dict[str, Any]:
        models: dict[str, builtins.list[str]] = {}
        for provider, model in await self.pairs():
            if provider is not None and model is not None and (not f.providers or provider in f.providers):
                models.setdefault(provider, []).append(model)
        where, params = f.where("l")
        index = "" if f.needs_table else "INDEXED BY logs_pm_cover"

        async def one(provider: str, names: builtins.list[str]) -> builtins.list[dict[str, Any]]:
            # provider = ? AND model IN (...) is one range seek per model on logs_pm_cover.
            in_models = "l.model IN (" + ", ".join("?" * len(names)) + ")"
            sql = (
                cte + "SELECT lo, (SELECT json_array(count(*), sum(l.status >= 400), avg(l.latency_us), "
                f"sum(l.total_tokens)) FROM logs l {index} WHERE l.provider = ? AND {in_models} AND "
                f"l.ts_ms >= b.lo AND l.ts_ms < b.lo + ? AND {where}) FROM b"
            )
            series = []
            for lo, packed in await self._fetch(sql, [*cte_params, provider, *names, width, *params]):
                n, err, lat, tokens = json.loads(packed)
                series.append(
                    {"t": lo, "count": n, "errors": err or 0, "avg_latency_ms": _ms(lat), "tokens": tokens or 0}
                )
            return series

        names = sorted(models)
        results = await asyncio.gather(*(one(p, models[p]) for p in names))
        return dict(zip(names, results, strict=True))

    async def facets(self) -> dict[str, Any]:
        """Providers and models present in the log."""
        pairs = await self.pairs()
        return {"providers": sorted({p for p, _ in pairs if p}), "models": sorted({m for _, m in pairs if m})}


def _count_index(f: LogFilter) -> str:
    """The index a count should walk. SQLite (without ANALYZE statistics) picks well when one narrow
    index covers the filter; with stream or latency bounds, or a model filter mixed with others, it
    would look rows up in the table, so walk the covering index instead."""
    if f.providers:
        return "INDEXED BY logs_pm_cover"
    mixed_model = bool(f.models) and (f.statuses or f.since_ms is not None or f.until_ms is not None)
    if f.stream is not None or f.min_latency_us is not None or f.max_latency_us is not None or mixed_model:
        return "INDEXED BY logs_ts_cover"
    return ""


def _roll_up(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by: dict[str, dict[str, Any]] = {}
    for g in groups:
        p = by.setdefault(
            g["provider"] or "",
            {
                "provider": g["provider"],
                "count": 0,
                "success": 0,
                "_lat": 0.0,
                "total_tokens": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cost": None,
            },
        )
        p["count"] += g["count"]
        p["success"] += g["success"]
        p["_lat"] += (g["avg_latency_ms"] or 0) * g["count"]
        for k in ("total_tokens", "prompt_tokens", "completion_tokens"):
            p[k] += g[k]
        if g["cost"] is not None:
            p["cost"] = (p["cost"] or 0.0) + g["cost"]
    out = []
    for p in by.values():
        lat = p.pop("_lat")
        p["success_rate"] = p["success"] / p["count"] if p["count"] else None
        p["avg_latency_ms"] = round(lat / p["count"], 3) if p["count"] else None
        out.append(p)
    out.sort(key=lambda g: -g["count"])
    return out
