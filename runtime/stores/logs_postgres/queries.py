"""Read side of the PostgreSQL request log: the same answers as the SQLite engine (logs_sqlite/queries.py)
for the same rows, in PostgreSQL's SQL.

- Filters: `sql_where` is LogFilter.where (runtime/requestlog/filters.py) for PostgreSQL: $n parameters,
  boolean clauses, and ILIKE for the text search (SQLite's LIKE ignores ASCII case).
- Orders: SQLite sorts NULL lowest; PostgreSQL highest. Every ORDER BY over a nullable column says
  NULLS FIRST/LAST so pages come out as SQLite's; ties break on seq, the insertion order (SQLite: rowid).
- Per-(provider, model) views and facets read `bifrost_logs_pairs` (the writers keep it), never a
  DISTINCT over the table. Aggregates are GROUP BYs over the filter's range (PostgreSQL's planner walks the
  day partitions the range touches: partition pruning on ts_ms).
- Totals are exact up to TOTAL_CAP rows, then the planner's estimate (`total_exact: false`).
- Stats, per-key views and histograms read the hourly rollup for the whole hours of their range and the
  table for the edges (rollup_reads.py); p50/p99 there are exact up to SAMPLE_TARGET rows, else from the
  rollup's latency buckets. Filters the rollup cannot answer read the table: p50/p99 exact up to
  SAMPLE_TARGET rows, else over every k-th seq, as SQLite does over rowid.
- A text search sorted by time reads windows newest first and stops at a full page or SEARCH_BUDGET_S.
- Every query runs on a pooled connection with a time budget (asyncpg cancels it server-side when it
  passes): LogQueryTooSlow. A server that cannot be reached: LogReadError (the admin API answers 503
  for both), and the shared `status` says so.
- The schema is created on first use (migrate is idempotent), so a reader started before any writer
  answers "empty", not an error.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import json
import time
from typing import Any

import asyncpg

from runtime.config.model import PostgresSettings
from runtime.requestlog.filters import SORTS, LogFilter, Page
from runtime.requestlog.record import COLUMNS, JSON_COLUMNS
from runtime.stores import pg
from runtime.stores.logs import LogQueryTooSlow, LogReadError
from runtime.stores.logs_postgres import rollup, rollup_reads
from runtime.stores.logs_postgres.migrations import PAIRS, TABLE, migrate
from runtime.stores.logs_sqlite.queries import (
    LIST_COLUMNS,
    SAMPLE_TARGET,
    STAGES,
    _json_or_text,
    _ms,
    _percentile,
    _roll_up,
)
from runtime.stores.status import StoreStatus

QUERY_BUDGET_S = 10.0  # no admin query may hold a connection longer than this
# /api/logs totals are exact up to this many rows, then estimated ("total_exact": false): see _total.
TOTAL_CAP = 10_000
# A text search sorted by time stops after this long and says how far it searched (_search_by_time).
SEARCH_BUDGET_S = 2.0
_PG_STATUS = {
    "success": "{a}status < 400",
    "error": "{a}status >= 400",
    "2xx": "{a}status BETWEEN 200 AND 299",
    "4xx": "{a}status BETWEEN 400 AND 499",
    "5xx": "{a}status BETWEEN 500 AND 599",
}


class Params:
    """Positional parameters for one statement: `add(value)` returns its placeholder ($n)."""

    def __init__(self, *values: Any) -> None:
        self.values: list[Any] = list(values)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def sql_where(f: LogFilter, p: Params, alias: str = "") -> str:
    """LogFilter.where for PostgreSQL; "TRUE" when nothing filters."""
    a = f"{alias}." if alias else ""
    clauses: list[str] = []
    if f.since_ms is not None:
        clauses.append(f"{a}ts_ms >= {p.add(f.since_ms)}")
    if f.until_ms is not None:
        clauses.append(f"{a}ts_ms < {p.add(f.until_ms)}")
    for column, values in (("provider", f.providers), ("model", f.models)):
        if values:
            clauses.append(f"{a}{column} = ANY({p.add(list(values))}::text[])")
    if f.statuses:
        parts = []
        for status in f.statuses:
            if status in _PG_STATUS:
                parts.append(_PG_STATUS[status].format(a=a))
            else:
                parts.append(f"{a}status = {p.add(int(status))}")
        clauses.append("(" + " OR ".join(parts) + ")")
    if f.stream is not None:
        clauses.append(f"{a}stream = {p.add(1 if f.stream else 0)}")
    if f.endpoint is not None:
        clauses.append(f"{a}endpoint = {p.add(f.endpoint)}")
    if f.min_latency_us is not None:
        clauses.append(f"{a}latency_us >= {p.add(f.min_latency_us)}")
    if f.max_latency_us is not None:
        clauses.append(f"{a}latency_us <= {p.add(f.max_latency_us)}")
    if f.virtual_key_ids is not None:
        if f.virtual_key_ids:
            clauses.append(f"{a}virtual_key_id = ANY({p.add(list(f.virtual_key_ids))}::text[])")
        else:
            clauses.append("FALSE")
    if f.cache is not None:
        if f.cache == "hit":
            clauses.append(f"{a}cache LIKE 'hit-%'")
        elif f.cache == "none":
            clauses.append(f"{a}cache IS NULL")
        else:
            clauses.append(f"{a}cache = {p.add(f.cache)}")
    if f.guardrail is not None or f.guardrail_action is not None:
        # As the SQLite engine: one element of the row's JSON array matches every condition given. The
        # writers store only JSON arrays here (batch.coerce); anything else matches nothing, never an error.
        conditions = [
            f"g->>'{field}' = {p.add(value)}"
            for field, value in (("rule", f.guardrail), ("action", f.guardrail_action))
            if value is not None
        ]
        clauses.append(
            f"({a}guardrails IS NOT NULL AND EXISTS (SELECT 1 FROM json_array_elements(CASE WHEN "
            f"left({a}guardrails, 1) = '[' THEN {a}guardrails::json END) AS g WHERE json_typeof(g) = 'object' "
            f"AND {' AND '.join(conditions)}))"
        )
    if f.text:
        pattern = p.add("%" + f.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        clauses.append(
            f"({a}input ILIKE {pattern} OR {a}output ILIKE {pattern} OR {a}error ILIKE {pattern} "
            f"OR {a}id = {p.add(f.text)})"
        )
    return " AND ".join(clauses) or "TRUE"


# Sort columns that may be NULL. Only these say NULLS FIRST/LAST: on a NOT NULL column the clause would
# stop PostgreSQL from reading the order off an index (it matches NULLS placement literally).
NULLABLE_SORTS = frozenset({"total_tokens"})


def _direction(column: str, descending: bool) -> str:
    """`column`'s sort direction as SQLite orders (NULL lowest)."""
    if column not in NULLABLE_SORTS:
        return "DESC" if descending else "ASC"
    return "DESC NULLS LAST" if descending else "ASC NULLS FIRST"


def _order(column: str, descending: bool) -> str:
    """`column` ordered as SQLite orders it, ties by seq (insertion order, SQLite's rowid)."""
    return f"{column} {_direction(column, descending)}, seq {'DESC' if descending else 'ASC'}"


def _num(value: Any) -> Any:
    """numeric (PostgreSQL's sum/avg of integers) as Python's int or float, as SQLite returns them."""
    if value is None or isinstance(value, (int, float)):
        return value
    return int(value) if value == value.to_integral_value() else float(value)


def _avg(value: Any) -> float | None:
    return None if value is None else float(value)


class PostgresLogQueries:
    """The LogReader over `bifrost_logs`: a pool opened on first use, bounded queries."""

    def __init__(
        self,
        settings: PostgresSettings,
        status: StoreStatus,
        budget_s: float = QUERY_BUDGET_S,
        total_cap: int = TOTAL_CAP,
        exact_percentiles_up_to: int = SAMPLE_TARGET,
        search_budget_s: float = SEARCH_BUDGET_S,
    ) -> None:
        self.settings = settings
        self.status = status
        self.budget_s = budget_s
        self.total_cap = total_cap
        # stats/histograms over the rollup: exact p50/p99 (from the rows) up to this many rows, else from
        # the rollup's latency buckets (the SQLite engine samples past SAMPLE_TARGET rows).
        self.exact_percentiles_up_to = exact_percentiles_up_to
        self.search_budget_s = search_budget_s
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._open_error: pg.PostgresUnavailable | None = None  # how the last open attempt failed
        self._attempts_done = 0

    def available(self) -> bool:
        return True  # the server answers for itself: an outage is a LogReadError (503), not "no log"

    async def _open(self) -> asyncpg.Pool:
        """The pool, opened (and the schema made) on first use. Queries that waited for an open attempt
        that failed share its error: the concurrent queries of one admin view fail together after one
        bounded connect, not one connect timeout after another. A query arriving later tries again."""
        arrived = self._attempts_done
        async with self._opening:
            if self._pool is None:
                if self._open_error is not None and self._attempts_done > arrived:
                    raise self._open_error
                try:
                    pool = await pg.connect_pool(self.settings)
                    try:
                        async with pool.acquire(timeout=pg.CONNECT_TIMEOUT_S) as conn:
                            await migrate(conn)
                    except BaseException:
                        pool.terminate()
                        raise
                except pg.PostgresUnavailable as exc:
                    self._open_error = exc
                    raise
                except pg.CONNECTION_ERRORS as exc:
                    self._open_error = pg.unavailable(self.settings, exc)
                    raise self._open_error from None
                finally:
                    self._attempts_done += 1
                self._pool, self._open_error = pool, None
        return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 5.0)
            except Exception:
                pool.terminate()

    async def _fetch(
        self, sql: str, params: Params | list[Any] | tuple[Any, ...] = (), budget_s: float | None = None
    ) -> list[asyncpg.Record]:
        """Every read goes through here: driver errors leave as the log store's own (LogQueryTooSlow,
        LogReadError), and the outcome keeps `status` current. `budget_s`: a shorter budget than the
        reader's for this query."""
        values = params.values if isinstance(params, Params) else list(params)
        budget = self.budget_s if budget_s is None else min(budget_s, self.budget_s)
        started = time.monotonic()
        try:
            pool = self._pool or await self._open()
            left = max(0.1, budget - (time.monotonic() - started))
            async with pool.acquire(timeout=left) as conn:
                left = max(0.1, budget - (time.monotonic() - started))
                rows: list[asyncpg.Record] = await conn.fetch(sql, *values, timeout=left)
        except pg.PostgresUnavailable as exc:
            self.status.failed(str(exc))
            raise LogReadError(str(exc)) from None
        except (TimeoutError, asyncpg.exceptions.QueryCanceledError):
            if time.monotonic() - started < budget * 0.9:  # not ours: the connection timed out
                raise self._unavailable(TimeoutError("no answer")) from None
            raise LogQueryTooSlow(
                f"the log query ran longer than {budget:g} s and was stopped; narrow the time range or the filters"
            ) from None
        except pg.CONNECTION_ERRORS as exc:
            raise self._unavailable(exc) from None
        except asyncpg.PostgresError as exc:
            raise LogReadError(f"{type(exc).__name__}: {exc}") from None
        self.status.ok()
        return rows

    def _unavailable(self, exc: BaseException) -> LogReadError:
        message = str(pg.unavailable(self.settings, exc))
        self.status.failed(message)
        return LogReadError(message)

    # -- list and detail -----------------------------------------------------------------------------
    async def list(self, f: LogFilter, page: Page) -> dict[str, Any]:
        p = Params()
        where = sql_where(f, p)
        column = SORTS[page.sort]
        order = _order(column, page.descending)
        select = ", ".join(LIST_COLUMNS)
        limit, offset = p.add(page.limit + 1), p.add(page.offset)
        columns = f"{select}, left(input, 240) AS input_preview, left(output, 240) AS output_preview"
        if f.needs_table:
            sql = f"SELECT {columns} FROM {TABLE} WHERE {where} ORDER BY {order} LIMIT {limit} OFFSET {offset}"
        else:
            # Pick the page's keys from an index alone (a deep OFFSET walks index entries, not wide rows),
            # then read just those rows. As the SQLite engine pages: rows tied on the sort column are
            # picked oldest first (its index walk), then shown in (column, seq) order: same rows, same order.
            pick = order if column == "ts_ms" else f"{column} {_direction(column, page.descending)}, ts_ms, seq"
            sql = (
                f"SELECT {columns} FROM {TABLE} WHERE (ts_ms, seq) IN (SELECT ts_ms, seq FROM {TABLE} "
                f"WHERE {where} ORDER BY {pick} LIMIT {limit} OFFSET {offset}) ORDER BY {order}"
            )
        exact = True
        searched_until = None
        if f.text and column == "ts_ms":  # newest (oldest) first, a window at a time, within a budget
            rows, searched_until = await self._search_by_time(f, page, columns, order)
            total = None
        elif f.text:  # a count over a content search would scan every row: skip it
            rows, total = await self._fetch(sql, p), None
        else:
            rows, (total, exact) = await asyncio.gather(self._fetch(sql, p), self._total(f))
        items = []
        for row in rows[: page.limit]:
            item = dict(zip(LIST_COLUMNS, row, strict=False))
            item["stream"] = bool(item["stream"])
            if item["guardrails"] is not None:  # JSON text in the store; most rows have none
                item["guardrails"] = _json_or_text(item["guardrails"])
            item["input_preview"], item["output_preview"] = row[-2], row[-1]
            items.append(item)
        answer = {
            "items": items,
            "total": total,
            "total_exact": exact,
            "limit": page.limit,
            "offset": page.offset,
            "has_more": len(rows) > page.limit or searched_until is not None,
            "sort": page.sort,
            "order": "desc" if page.descending else "asc",
        }
        if searched_until is not None:
            answer["searched_until"] = searched_until
        return answer

    async def _search_by_time(
        self, f: LogFilter, page: Page, columns: str, order: str
    ) -> tuple[builtins.list[asyncpg.Record], int | None]:
        """A text search in time order, newest first (oldest first for order=asc): one window at a time
        (an hour, then twice as long each time), stopping when the page is full. The search has
        `search_budget_s`: when it runs out, the rows found so far are the answer and the second value
        is the point in time the search reached (`searched_until`: rows beyond it were not searched),
        else None. A content search reads every row of its range (no text index: docs/logs-store.md),
        so over a month of a busy log one query would run past the 10 s budget."""
        started = time.monotonic()
        bp = Params()
        bounds = sql_where(dataclasses.replace(LogFilter(), since_ms=f.since_ms, until_ms=f.until_ms), bp)
        lo_hi = await self._fetch(f"SELECT min(ts_ms), max(ts_ms) FROM {TABLE} WHERE {bounds}", bp)
        if lo_hi[0][0] is None:
            return [], None
        lo = f.since_ms if f.since_ms is not None else int(lo_hi[0][0])
        hi = f.until_ms if f.until_ms is not None else int(lo_hi[0][1]) + 1
        need = page.offset + page.limit + 1
        found: builtins.list[asyncpg.Record] = []
        edge, width = (hi, rollup.HOUR_MS) if page.descending else (lo, rollup.HOUR_MS)
        while len(found) < need and (lo < edge if page.descending else edge < hi):
            window = (max(lo, edge - width), edge) if page.descending else (edge, min(hi, edge + width))
            left = self.search_budget_s - (time.monotonic() - started)
            if left <= 0:
                return found[page.offset :], edge
            p = Params()
            where = sql_where(dataclasses.replace(f, since_ms=window[0], until_ms=window[1]), p)
            sql = f"SELECT {columns} FROM {TABLE} WHERE {where} ORDER BY {order} LIMIT {p.add(need - len(found))}"
            try:
                found += await self._fetch(sql, p, budget_s=max(0.2, left))
            except LogQueryTooSlow:
                return found[page.offset :], edge
            edge = window[0] if page.descending else window[1]
            width *= 2
        return found[page.offset :], None

    async def _total(self, f: LogFilter) -> tuple[int, bool]:
        """(rows matching `f`, exact?). Exact up to `total_cap` (a count over an index walk stopped at
        cap + 1 entries: milliseconds whatever the range holds); beyond it the planner's estimate for the
        filter (from the statistics autovacuum keeps), never less than cap + 1. An exact count(*) of a
        range is linear in its rows: 120 ms at 1M, over a second at 10M, on every page load."""
        cp = Params()
        where = sql_where(f, cp)
        cap = cp.add(self.total_cap + 1)
        counted = await self._fetch(f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} WHERE {where} LIMIT {cap}) s", cp)
        total = int(counted[0][0])
        if total <= self.total_cap:
            return total, True
        ep = Params()
        plan = await self._fetch(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {TABLE} WHERE {sql_where(f, ep)}", ep)
        estimate = int(json.loads(plan[0][0])[0]["Plan"]["Plan Rows"])
        return max(estimate, self.total_cap + 1), False

    async def get(self, log_id: str) -> dict[str, Any] | None:
        rows = await self._fetch(f"SELECT {', '.join(COLUMNS)}, extra FROM {TABLE} WHERE id = $1 LIMIT 1", (log_id,))
        if not rows:
            return None
        record = dict(zip((*COLUMNS, "extra"), rows[0], strict=False))
        record["stream"] = bool(record["stream"])
        for name in (*JSON_COLUMNS, "extra"):
            record[name] = _json_or_text(record[name])
        return record

    async def tail(self, after_rowid: int, limit: int = 500) -> builtins.list[tuple[int, tuple[Any, ...]]]:
        """Rows committed after cursor `after_rowid` by any instance, oldest first. seq is drawn in commit
        order (batch.py), so a row with a lower seq is never committed after one already returned."""
        rows = await self._fetch(
            f"SELECT seq, {', '.join(COLUMNS)} FROM {TABLE} WHERE seq > $1 ORDER BY seq LIMIT $2", (after_rowid, limit)
        )
        return [(r[0], tuple(r[1:])) for r in rows]

    async def last_rowid(self) -> int:
        rows = await self._fetch(f"SELECT max(seq) FROM {TABLE}")
        return int(rows[0][0] or 0)

    # -- stats ---------------------------------------------------------------------------------------
    async def stats(self, f: LogFilter) -> dict[str, Any]:
        """As the SQLite engine: exact counts and sums; p50/p99, stage averages, overhead and the stream
        share from a uniform sample of at most SAMPLE_TARGET rows (exact below that). Over whole hours
        from the rollup (_stats_rollup) when it can answer the filter."""
        rp = Params()
        grouped = rollup_reads.grouped_sql(f, rp, ("provider", "model"))
        if grouped is not None:
            return await self._stats_rollup(f, grouped, rp)

        async def totals_and_sample() -> tuple[Any, builtins.list[Any], int]:
            p = Params()
            where = sql_where(f, p)
            totals = (
                await self._fetch(
                    "SELECT count(*), sum((status < 400)::int), avg(latency_us), sum(prompt_tokens), "
                    f"sum(completion_tokens), sum(total_tokens), sum(cost) FROM {TABLE} WHERE {where}",
                    p,
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
        success = int(totals[1] or 0)
        latencies = sorted(r[0] for r in sample)
        n = len(sample) or 1
        stage_avgs = {
            s[:-3]: round(sum(r[3 + i] for r in sample) / n, 1) if sample else None for i, s in enumerate(STAGES)
        }
        return {
            "range": {"since": f.since_ms, "until": f.until_ms},
            "count": count,
            "success": success,
            "errors": count - success,
            "success_rate": success / count if count else None,
            "avg_latency_ms": _ms(_avg(totals[2])),
            "p50_latency_ms": _ms(_percentile(latencies, 0.5)),
            "p99_latency_ms": _ms(_percentile(latencies, 0.99)),
            "avg_overhead_us": round(sum(r[1] for r in sample) / n, 1) if sample else None,
            "prompt_tokens": int(totals[3] or 0),
            "completion_tokens": int(totals[4] or 0),
            "total_tokens": int(totals[5] or 0),
            "cost": totals[6],
            "streams": round(sum(r[2] for r in sample) * count / n) if sample else 0,
            "stages_avg_us": stage_avgs,
            "percentiles": {"sampled": step > 1, "sample_size": len(sample)},
            "by_model": groups,
            "by_provider": _roll_up(groups),
        }

    async def by_virtual_key(self, f: LogFilter, limit: int = 200) -> builtins.list[dict[str, Any]]:
        """Requests, successes, tokens and cost per virtual key (None: ungoverned), most requests first."""
        p = Params()
        grouped = rollup_reads.grouped_sql(f, p, ("virtual_key_id",))
        if grouped is not None:
            tt = 7 + len(STAGES)  # m<tt>: sum(tt), then sum(cost) (rollup_reads.MEASURES)
            rows = await self._fetch(
                f"SELECT k0, m0, m1, m{tt}, m{tt + 1} FROM ({grouped}) g "
                f"ORDER BY m0 DESC, k0 ASC NULLS FIRST LIMIT {p.add(limit)}",
                p,
            )
            return [
                {
                    "virtual_key_id": vk,
                    "count": int(n),
                    "success": int(ok or 0),
                    "total_tokens": int(tokens or 0),
                    "cost": cost,
                }
                for vk, n, ok, tokens, cost in rows
            ]
        where = sql_where(f, p)
        rows = await self._fetch(
            "SELECT virtual_key_id, count(*), sum((status < 400)::int), sum(total_tokens), sum(cost) "
            f"FROM {TABLE} WHERE {where} GROUP BY virtual_key_id "
            f"ORDER BY count(*) DESC, virtual_key_id ASC NULLS FIRST LIMIT {p.add(limit)}",
            p,
        )
        return [
            {"virtual_key_id": vk, "count": n, "success": int(ok or 0), "total_tokens": int(tokens or 0), "cost": cost}
            for vk, n, ok, tokens, cost in rows
        ]

    async def _sample(self, f: LogFilter, count: int, target: int, columns: str) -> tuple[builtins.list[Any], int]:
        """Every k-th seq in the filter's range (k = count // target): uniform. Returns (rows, k)."""
        p = Params()
        where = sql_where(f, p)
        step = max(1, count // target)
        if step > 1:
            where += f" AND (seq % {p.add(step)}) = 0"
        rows = await self._fetch(f"SELECT {columns} FROM {TABLE} WHERE {where}", p)
        return rows, step

    async def pairs(self) -> builtins.list[tuple[str | None, str | None]]:
        """Every (provider, model) ever logged (pairs removed by retention linger; they count 0)."""
        rows = await self._fetch(f"SELECT provider, model FROM {PAIRS}")
        return sorted(((r[0], r[1]) for r in rows), key=lambda pm: (pm[0] or "", pm[1] or ""))

    async def _by_provider_model(self, f: LogFilter) -> builtins.list[dict[str, Any]]:
        p = Params()
        where = sql_where(f, p)
        rows = await self._fetch(
            "SELECT provider, model, count(*), sum((status < 400)::int), avg(latency_us), avg(overhead_us), "
            f"sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost) FROM {TABLE} "
            f"WHERE {where} GROUP BY provider, model",
            p,
        )
        out = []
        # Pairs in the SQLite engine's order (its pairs() order, then a stable sort by count).
        for provider, model, n, ok, lat, over, prompt, completion, total, cost in sorted(
            rows, key=lambda r: (r[0] or "", r[1] or "")
        ):
            ok = int(ok or 0)
            out.append(
                {
                    "provider": provider,
                    "model": model,
                    "count": n,
                    "success": ok,
                    "success_rate": ok / n,
                    "avg_latency_ms": _ms(_avg(lat)),
                    "avg_overhead_us": None if over is None else round(float(over), 1),
                    "prompt_tokens": _num(prompt) or 0,
                    "completion_tokens": _num(completion) or 0,
                    "total_tokens": _num(total) or 0,
                    "cost": cost,
                }
            )
        out.sort(key=lambda g: -g["count"])
        return out

    async def _stats_rollup(self, f: LogFilter, grouped: str, p: Params) -> dict[str, Any]:
        """stats() over the rollup's whole hours and the raw edges: counts, sums and averages exact (the
        stage and overhead averages and the stream count too, where the SQLite engine samples); p50/p99
        exact up to `exact_percentiles_up_to` rows, else from the latency buckets (flagged)."""
        rows = await self._fetch(grouped, p)
        total = rollup_reads.Sums()
        groups = []
        for r in sorted(rows, key=lambda r: (r[0] or "", r[1] or "")):
            g = rollup_reads.Sums.of(r[2:])
            total.add(g)
            groups.append(
                {
                    "provider": r[0],
                    "model": r[1],
                    "count": g.n,
                    "success": g.ok,
                    "success_rate": g.ok / g.n,
                    "avg_latency_ms": _ms(g.lat / g.n),
                    "avg_overhead_us": round(g.over / g.n, 1),
                    "prompt_tokens": g.pt,
                    "completion_tokens": g.ct,
                    "total_tokens": g.tt,
                    "cost": g.cost,
                }
            )
        groups.sort(key=lambda g: -g["count"])
        count = total.n
        percentiles: dict[str, Any] = {"sampled": False, "sample_size": count}
        if 0 < count <= self.exact_percentiles_up_to:
            ep = Params()
            latencies = sorted(
                r[0] for r in await self._fetch(f"SELECT latency_us FROM {TABLE} WHERE {sql_where(f, ep)}", ep)
            )
            p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
        else:
            p50, p99 = rollup.percentile(total.buckets, 0.5), rollup.percentile(total.buckets, 0.99)
            if count:
                percentiles = {"sampled": True, "sample_size": count, "latency_buckets": rollup.LATENCY_BUCKETS}
        return {
            "range": {"since": f.since_ms, "until": f.until_ms},
            "count": count,
            "success": total.ok,
            "errors": count - total.ok,
            "success_rate": total.ok / count if count else None,
            "avg_latency_ms": _ms(total.lat / count) if count else None,
            "p50_latency_ms": _ms(p50),
            "p99_latency_ms": _ms(p99),
            "avg_overhead_us": round(total.over / count, 1) if count else None,
            "prompt_tokens": total.pt,
            "completion_tokens": total.ct,
            "total_tokens": total.tt,
            "cost": total.cost,
            "streams": total.streams,
            "stages_avg_us": {
                s[:-3]: round(total.stages[i] / count, 1) if count else None for i, s in enumerate(STAGES)
            },
            "percentiles": percentiles,
            "by_model": groups,
            "by_provider": _roll_up(groups),
        }

    async def _histogram_rollup(
        self, f: LogFilter, width: int, starts: builtins.list[int], grouped: str, p: Params
    ) -> dict[str, Any]:
        """histogram() over the rollup's hours that lie inside one bucket, and the raw rows of the
        hours a bucket edge cuts and of the range's edges. One GROUP BY gives the overall and the
        per-provider series."""
        rows = await self._fetch(grouped, p)
        overall: dict[int, rollup_reads.Sums] = {}
        per_provider: dict[tuple[str, int], rollup_reads.Sums] = {}
        for provider, has_model, b, *values in rows:
            group = rollup_reads.Sums.of(values)
            overall.setdefault(b, rollup_reads.Sums()).add(group)
            if provider is not None and has_model:
                per_provider.setdefault((provider, b), rollup_reads.Sums()).add(group)
        series = []
        total = 0
        for i, lo in enumerate(starts):
            g = overall.get(i)
            total += g.n if g else 0
            series.append(
                {
                    "t": lo,
                    "count": g.n if g else 0,
                    "errors": g.n - g.ok if g else 0,
                    "avg_latency_ms": _ms(g.lat / g.n) if g else None,
                    "p50_latency_ms": None,
                    "p99_latency_ms": None,
                    "tokens": g.tt if g else 0,
                    "avg_overhead_us": round(g.over / g.n, 1) if g else None,
                    "cost": g.cost if g else None,
                }
            )
        sampled = False
        if 0 < total <= self.exact_percentiles_up_to * 2:  # as the raw path: exact per bucket
            samples, _ = await self._sample(f, total, total, "ts_ms, latency_us")
            per_bucket: dict[int, builtins.list[int]] = {}
            for ts, latency in samples:
                per_bucket.setdefault((ts - f.since_ms) // width, []).append(latency)
            for i, values in per_bucket.items():
                if 0 <= i < len(series):
                    values.sort()
                    series[i]["p50_latency_ms"] = _ms(_percentile(values, 0.5))
                    series[i]["p99_latency_ms"] = _ms(_percentile(values, 0.99))
        elif total:
            sampled = True
            for i, item in enumerate(series):
                g = overall.get(i)
                if g:
                    item["p50_latency_ms"] = _ms(rollup.percentile(g.buckets, 0.5))
                    item["p99_latency_ms"] = _ms(rollup.percentile(g.buckets, 0.99))
        providers = sorted(
            {
                pr
                for pr, model in await self.pairs()
                if pr is not None and model is not None and (not f.providers or pr in f.providers)
            }
        )
        by_provider: dict[str, Any] = {}
        for provider in providers:
            items = []
            for i, lo in enumerate(starts):
                g = per_provider.get((provider, i))
                items.append(
                    {
                        "t": lo,
                        "count": g.n if g else 0,
                        "errors": g.n - g.ok if g else 0,
                        "avg_latency_ms": _ms(g.lat / g.n) if g else None,
                        "tokens": g.tt if g else 0,
                    }
                )
            by_provider[provider] = items
        return {
            "since": f.since_ms,
            "until": f.until_ms,
            "bucket_ms": width,
            "series": series,
            "by_provider": by_provider,
            "percentiles": {"sampled": sampled},
        }

    # -- histograms ----------------------------------------------------------------------------------
    async def histogram(self, f: LogFilter, buckets: int = 60) -> dict[str, Any]:
        """Per-bucket requests, errors, latency (avg/p50/p99), tokens and overhead, overall and per
        provider, over [since, until). p50/p99 per bucket come from a uniform sample."""
        assert f.since_ms is not None and f.until_ms is not None
        width = max(1, -(-(f.until_ms - f.since_ms) // buckets))
        starts = builtins.list(range(f.since_ms, f.until_ms, width))
        if width >= rollup.HOUR_MS:  # buckets of an hour or more: whole hours from the rollup
            rp = Params()
            keys = ("provider", "model IS NOT NULL", f"(ts - {rp.add(f.since_ms)}) / {rp.add(width)}")
            cut = rollup_reads.cut_hours(f.since_ms, width, len(starts))
            grouped = rollup_reads.grouped_sql(f, rp, keys, cut)
            if grouped is not None:
                return await self._histogram_rollup(f, width, starts, grouped, rp)
        (series, sampled), by_provider = await asyncio.gather(
            self._overall_series(f, width, starts), self._provider_series(f, width, starts)
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
        self, f: LogFilter, width: int, starts: builtins.list[int]
    ) -> tuple[builtins.list[dict[str, Any]], bool]:
        p = Params(f.since_ms, width)
        where = sql_where(f, p)
        rows = await self._fetch(
            "SELECT (ts_ms - $1) / $2 AS b, count(*), sum((status >= 400)::int), avg(latency_us), "
            f"sum(total_tokens), avg(overhead_us), sum(cost) FROM {TABLE} WHERE {where} GROUP BY b",
            p,
        )
        found = {r[0]: r for r in rows}
        series = []
        total = 0
        for i, lo in enumerate(starts):
            r = found.get(i)
            n = r[1] if r else 0
            total += n
            series.append(
                {
                    "t": lo,
                    "count": n,
                    "errors": int(r[2] or 0) if r else 0,
                    "avg_latency_ms": _ms(_avg(r[3])) if r else None,
                    "p50_latency_ms": None,
                    "p99_latency_ms": None,
                    "tokens": (_num(r[4]) or 0) if r else 0,
                    "avg_overhead_us": None if not r or r[5] is None else round(float(r[5]), 1),
                    "cost": r[6] if r else None,
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

    async def _provider_series(self, f: LogFilter, width: int, starts: builtins.list[int]) -> dict[str, Any]:
        providers = sorted(
            {
                pr
                for pr, model in await self.pairs()
                if pr is not None and model is not None and (not f.providers or pr in f.providers)
            }
        )
        if not providers:
            return {}
        p = Params(f.since_ms, width, providers)
        where = sql_where(f, p)
        rows = await self._fetch(
            "SELECT provider, (ts_ms - $1) / $2 AS b, count(*), sum((status >= 400)::int), avg(latency_us), "
            f"sum(total_tokens) FROM {TABLE} WHERE provider = ANY($3::text[]) AND model IS NOT NULL AND {where} "
            "GROUP BY provider, b",
            p,
        )
        found = {(r[0], r[1]): r for r in rows}
        out: dict[str, Any] = {}
        for provider in providers:
            series = []
            for i, lo in enumerate(starts):
                r = found.get((provider, i))
                series.append(
                    {
                        "t": lo,
                        "count": r[2] if r else 0,
                        "errors": int(r[3] or 0) if r else 0,
                        "avg_latency_ms": _ms(_avg(r[4])) if r else None,
                        "tokens": (_num(r[5]) or 0) if r else 0,
                    }
                )
            out[provider] = series
        return out

    async def facets(self) -> dict[str, Any]:
        """Providers and models present in the log."""
        pairs = await self.pairs()
        return {"providers": sorted({p for p, _ in pairs if p}), "models": sorted({m for _, m in pairs if m})}
