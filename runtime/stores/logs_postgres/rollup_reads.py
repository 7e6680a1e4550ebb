"""Aggregates over a time range from the hourly rollup (rollup.py) plus the raw rows at its edges.

A filter the rollup can answer (no text search, no latency bound, no guardrail filter: every other filter is a rollup
dimension) over [since, until) is split into
    whole hours [h1, h2)          read from bifrost_logs_hourly (one row per hour and combination),
    [since, h1) and [h2, until)   the partial hours at the edges, read from bifrost_logs,
    `excluded` hours              hours a histogram bucket edge cuts in two, read from bifrost_logs,
and `grouped_sql` groups both the same way (a log row is a group of n=1) and adds them up. The
rollup is written in the same statement as the rows (batch.py), so the two
parts never disagree. Counts, sums and averages stay exact; latency percentiles over many rows come from
the rollup's log-scale buckets (rollup.percentile: approximate, flagged in the answer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from runtime.requestlog.filters import LogFilter
from runtime.stores.logs_postgres.migrations import TABLE
from runtime.stores.logs_postgres.rollup import BUCKET_COLUMNS, BUCKET_SQL, HOUR_MS, HOURLY, STAGES

if TYPE_CHECKING:
    from runtime.stores.logs_postgres.queries import Params

# The relation's columns (rollup name <- log row expression).
_COMMON = "provider, model, virtual_key_id, status, stream"
_ROLLUP_COLUMNS = (
    f"hour_ms AS ts, {_COMMON}, n, latency_sum AS lat, overhead_sum AS over, "
    + ", ".join(f"{s}_sum AS {s}" for s in STAGES)
    + ", prompt_tokens AS pt, completion_tokens AS ct, total_tokens AS tt, cost, "
    + ", ".join(BUCKET_COLUMNS)
)
_RAW_COLUMNS = (
    f"ts_ms AS ts, {_COMMON}, 1::bigint AS n, latency_us AS lat, overhead_us AS over, "
    + ", ".join(STAGES)
    + ", coalesce(prompt_tokens, 0) AS pt, coalesce(completion_tokens, 0) AS ct, "
    "coalesce(total_tokens, 0) AS tt, cost, k"
)
_RAW_SOURCE = "ts_ms, provider, model, virtual_key_id, status, stream, latency_us, overhead_us, " + ", ".join(STAGES)
_RAW_SOURCE += f", prompt_tokens, completion_tokens, total_tokens, cost, {BUCKET_SQL} AS k"

# The sums per group (in this order: see `Sums`), as m0, m1, ...
MEASURES = (
    "sum(n)",
    "sum(n) FILTER (WHERE status < 400)",
    "sum(lat)",
    "sum(over)",
    "sum(n) FILTER (WHERE stream = 1)",
    *(f"sum({s})" for s in STAGES),
    "sum(pt)",
    "sum(ct)",
    "sum(tt)",
    "sum(cost)",
    *(f"sum({b})" for b in BUCKET_COLUMNS),
)
# Over log rows, grouped by the caller's keys and their latency bucket k: each group's rows go to one
# bucket column (per group, not 48 expressions per row: the edge hours of a month's histogram are
# ~1.7M rows at 10M).
RAW_MEASURES = (
    *MEASURES[: -len(BUCKET_COLUMNS)],
    *(f"CASE WHEN k = {i} THEN count(*) ELSE 0 END" for i in range(len(BUCKET_COLUMNS))),
)


@dataclasses.dataclass
class Sums:
    """MEASURES of one group, as Python numbers; `add` merges groups."""

    n: int = 0
    ok: int = 0
    lat: int = 0
    over: int = 0
    streams: int = 0
    stages: list[int] = dataclasses.field(default_factory=lambda: [0] * len(STAGES))
    pt: int = 0
    ct: int = 0
    tt: int = 0
    cost: float | None = None
    buckets: list[int] = dataclasses.field(default_factory=lambda: [0] * len(BUCKET_COLUMNS))

    @classmethod
    def of(cls, values: Sequence[Any]) -> Sums:
        """From the MEASURES columns of one result row."""
        v = [0 if x is None else int(x) for x in values[: 8 + len(STAGES)]]
        s = len(STAGES)
        cost = values[8 + s]
        return cls(
            n=v[0],
            ok=v[1],
            lat=v[2],
            over=v[3],
            streams=v[4],
            stages=v[5 : 5 + s],
            pt=v[5 + s],
            ct=v[6 + s],
            tt=v[7 + s],
            cost=None if cost is None else float(cost),
            buckets=[int(x or 0) for x in values[9 + s :]],
        )

    def add(self, other: Sums) -> None:
        self.n += other.n
        self.ok += other.ok
        self.lat += other.lat
        self.over += other.over
        self.streams += other.streams
        self.stages = [a + b for a, b in zip(self.stages, other.stages, strict=True)]
        self.pt += other.pt
        self.ct += other.ct
        self.tt += other.tt
        if other.cost is not None:
            self.cost = other.cost if self.cost is None else self.cost + other.cost
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]


def answerable(f: LogFilter) -> bool:
    """Whether the rollup holds every dimension `f` filters on."""
    return (
        not f.text
        and f.min_latency_us is None
        and f.max_latency_us is None
        and f.guardrail is None  # guardrails are no rollup dimension
        and f.guardrail_action is None
    )


def _ceil_hour(ms: int) -> int:
    return -(-ms // HOUR_MS) * HOUR_MS


def grouped_sql(f: LogFilter, p: Params, keys: Sequence[str], excluded_hours: Iterable[int] = ()) -> str | None:
    """`f`'s rows grouped by `keys` (SQL over the columns ts, provider, model, virtual_key_id, status,
    stream), whole hours from the rollup: columns k0.. (the keys) then m0.. (MEASURES). None when the
    rollup cannot answer `f` or its range holds no whole hour. Each part is grouped before the union
    (a few hundred groups, not every rollup row, reach the final GROUP BY)."""
    from runtime.stores.logs_postgres.queries import sql_where  # queries imports this module

    if not answerable(f):
        return None
    h1 = None if f.since_ms is None else _ceil_hour(f.since_ms)
    h2 = None if f.until_ms is None else f.until_ms // HOUR_MS * HOUR_MS
    if h1 is not None and h2 is not None and h1 >= h2:
        return None
    excluded = sorted({h for h in excluded_hours if (h1 is None or h >= h1) and (h2 is None or h < h2)})
    clauses = [sql_where(dataclasses.replace(f, since_ms=None, until_ms=None), p)]
    if h1 is not None:
        clauses.append(f"hour_ms >= {p.add(h1)}")
    if h2 is not None:
        clauses.append(f"hour_ms < {p.add(h2)}")
    if excluded:
        clauses.append(f"NOT (hour_ms = ANY({p.add(excluded)}::bigint[]))")
    ranges: list[tuple[int, int]] = []
    if f.since_ms is not None and h1 is not None and f.since_ms < h1:
        ranges.append((f.since_ms, h1))
    if f.until_ms is not None and h2 is not None and h2 < f.until_ms:
        ranges.append((h2, f.until_ms))
    ranges += [(h, h + HOUR_MS) for h in excluded]
    selected = ", ".join(
        [*(f"{k} AS k{i}" for i, k in enumerate(keys)), *(f"{m} AS m{i}" for i, m in enumerate(MEASURES))]
    )
    by = ", ".join(str(i + 1) for i in range(len(keys)))
    group = f" GROUP BY {by}" if keys else ""
    parts = [f"SELECT {selected} FROM (SELECT {_ROLLUP_COLUMNS} FROM {HOURLY} WHERE {' AND '.join(clauses)}) t{group}"]
    if ranges:
        lo, hi = p.add([r[0] for r in ranges]), p.add([r[1] for r in ranges])
        where = sql_where(f, p)
        # One index range scan per edge: a LATERAL subquery run once per range (OFFSET 0 keeps the
        # planner from flattening it into one join filtered over the whole time range).
        # virtual_key_id is not in the covering ts index: read it (from the table) only when grouped by.
        source = _RAW_SOURCE
        if not any("virtual_key_id" in k for k in keys):
            source = source.replace("virtual_key_id", "NULL::text AS virtual_key_id")
        raw_selected = ", ".join(
            [*(f"{k} AS k{i}" for i, k in enumerate(keys)), *(f"{m} AS m{i}" for i, m in enumerate(RAW_MEASURES))]
        )
        edges = f"unnest({lo}::bigint[], {hi}::bigint[]) AS r(lo, hi)"
        parts.append(
            f"SELECT {raw_selected} FROM (SELECT {_RAW_COLUMNS} FROM {edges}, "
            f"LATERAL (SELECT {source} FROM {TABLE} WHERE ts_ms >= r.lo AND ts_ms < r.hi AND {where} "
            f"OFFSET 0) x) t GROUP BY {by + ', ' if keys else ''}k"
        )
    outer = ", ".join([*(f"k{i}" for i in range(len(keys))), *(f"sum(m{i}) AS m{i}" for i in range(len(MEASURES)))])
    return f"SELECT {outer} FROM ({' UNION ALL '.join(parts)}) u{group}"


def cut_hours(since_ms: int, width: int, buckets: int) -> set[int]:
    """The hours a histogram bucket edge falls strictly inside (their rows are split between buckets)."""
    out = set()
    for k in range(1, buckets):
        edge = since_ms + k * width
        if edge % HOUR_MS:
            out.add(edge // HOUR_MS * HOUR_MS)
    return out
