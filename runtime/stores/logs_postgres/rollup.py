"""The hourly rollup of the PostgreSQL request log (`bifrost_logs_hourly`, migration m003): what the
stats, histograms and per-key views need, per hour and per combination of the dimensions the /api/logs
filters use, so an aggregate over 30 days reads a few hundred thousand rollup rows instead of millions of
log rows.

- Key: hour_ms (UTC hour start) + provider, model, virtual_key_id, endpoint, cache, status, stream (every
  filter of runtime/requestlog/filters.py but the text search and the latency bounds, which read the log).
  '' is stored as NULL (the unique index coalesces NULL to '' as bifrost_logs_pairs does; no record
  carries an empty provider, model, key or cache).
- Values: n (rows), latency/overhead/stage sums, token sums, cost sum (NULL when no row was priced, as
  sum(cost) is), and LATENCY_BUCKETS counts of a fixed log-scale latency histogram (b0..bN columns, not an
  array: summing 48 integer columns over many rows is plain aggregation, an array would need unnesting).
- Maintained by every insert in the SAME statement as the rows (`upsert_sql` over the INSERT's
  RETURNING): only rows actually inserted are counted, so a batch retried after a lost commit, or an
  import run twice, adds nothing (its rows hit ON CONFLICT DO NOTHING and are not returned).
- Retention deletes the rollup hours of the days it drops (partitions.drop_expired).
"""

from __future__ import annotations

import math

HOURLY = "bifrost_logs_hourly"
HOUR_MS = 3_600_000

# Latency histogram: bucket i holds [LAT_BASE_US * R^i, LAT_BASE_US * R^(i+1)); bucket 0 also holds
# everything below, the last everything above. 48 buckets from 50 us by a factor of 1.42: up to ~1,000 s.
LATENCY_BUCKETS = 48
LAT_BASE_US = 50.0
LAT_RATIO = 1.42
# In double precision: numeric's ln() (what a bare 50.0 literal makes of it) costs ~50 us a row, which
# took the writer from ~24,000 to ~6,000 rows/s.
BUCKET_SQL = (
    f"least({LATENCY_BUCKETS - 1}, greatest(0, floor(ln(greatest(latency_us, 1)::float8 / {LAT_BASE_US}::float8) "
    f"/ ln({LAT_RATIO}::float8))))::int"
)
BUCKET_COLUMNS = tuple(f"b{i}" for i in range(LATENCY_BUCKETS))

DIMENSIONS = ("provider", "model", "virtual_key_id", "endpoint", "cache", "status", "stream")
STAGES = ("queue_wait_us", "key_select_us", "build_us", "encode_us", "upstream_us", "parse_us")
# (rollup column, SQL over a log row's columns summed into it).
SUMS: tuple[tuple[str, str], ...] = (
    ("n", "count(*)"),
    ("latency_sum", "sum(latency_us)"),
    ("overhead_sum", "sum(overhead_us)"),
    *((f"{s}_sum", f"sum({s})") for s in STAGES),
    ("prompt_tokens", "coalesce(sum(prompt_tokens), 0)"),
    ("completion_tokens", "coalesce(sum(completion_tokens), 0)"),
    ("total_tokens", "coalesce(sum(total_tokens), 0)"),
    ("cost", "sum(cost)"),
    *((b, f"count(*) FILTER (WHERE k = {i})") for i, b in enumerate(BUCKET_COLUMNS)),  # k: BUCKET_SQL
)
# The log columns an upsert reads (what the INSERT RETURNs).
SOURCE_COLUMNS = (
    "ts_ms, provider, model, virtual_key_id, endpoint, cache, status, stream, latency_us, overhead_us, "
    + ", ".join(STAGES)
    + ", prompt_tokens, completion_tokens, total_tokens, cost"
)
KEY_INDEX = (
    "hour_ms, (coalesce(provider, '')), (coalesce(model, '')), (coalesce(virtual_key_id, '')), endpoint, "
    "(coalesce(cache, '')), status, stream"
)


def create_sql() -> str:
    sums = ",\n    ".join(f"{name} {'double precision' if name == 'cost' else 'bigint NOT NULL'}" for name, _ in SUMS)
    return f"""
        CREATE TABLE {HOURLY} (
            hour_ms bigint NOT NULL,
            provider text, model text, virtual_key_id text, endpoint text NOT NULL, cache text,
            status integer NOT NULL, stream integer NOT NULL,
            {sums}
        );
        CREATE UNIQUE INDEX bifrost_logs_hourly_key ON {HOURLY} ({KEY_INDEX});
    """


def upsert_sql(source: str) -> str:
    """INSERT the aggregates of the log rows of `source` (a table or CTE name with SOURCE_COLUMNS) into
    the rollup, adding to the hours and combinations already there."""
    dims = ", ".join(
        f"nullif({d}, '')" if d in ("provider", "model", "virtual_key_id", "cache") else d for d in DIMENSIONS
    )
    names = ", ".join(name for name, _ in SUMS)
    values = ", ".join(expr for _, expr in SUMS)
    updates = ", ".join(
        "cost = CASE WHEN h.cost IS NULL THEN EXCLUDED.cost WHEN EXCLUDED.cost IS NULL THEN h.cost "
        "ELSE h.cost + EXCLUDED.cost END"
        if name == "cost"
        else f"{name} = h.{name} + EXCLUDED.{name}"
        for name, _ in SUMS
    )
    return (
        f"INSERT INTO {HOURLY} AS h (hour_ms, {', '.join(DIMENSIONS)}, {names}) "
        f"SELECT ts_ms / {HOUR_MS} * {HOUR_MS}, {dims}, {values} FROM (SELECT *, {BUCKET_SQL} AS k FROM {source}) s "
        f"GROUP BY 1, {', '.join(str(i) for i in range(2, 2 + len(DIMENSIONS)))} "
        f"ON CONFLICT ({KEY_INDEX}) DO UPDATE SET {updates}"
    )


def bucket_bounds(i: int) -> tuple[float, float]:
    """[lo, hi) in microseconds of latency bucket `i` (bucket 0 from 0, the last to infinity)."""
    lo = 0.0 if i == 0 else LAT_BASE_US * LAT_RATIO**i
    hi = math.inf if i == LATENCY_BUCKETS - 1 else LAT_BASE_US * LAT_RATIO ** (i + 1)
    return lo, hi


def bucket_of(latency_us: float) -> int:
    """The bucket of a latency (as BUCKET_SQL computes it, up to floating-point ties at the edges)."""
    if latency_us <= LAT_BASE_US:
        return 0
    return min(LATENCY_BUCKETS - 1, math.floor(math.log(latency_us / LAT_BASE_US) / math.log(LAT_RATIO)))


def percentile(counts: list[int], q: float) -> float | None:
    """The q-quantile of a bucketed latency histogram, as _percentile picks it from sorted values (the
    value of rank round(q * (n - 1))), interpolated geometrically inside its bucket: always within the
    bucket that holds the exact value."""
    n = sum(counts)
    if not n:
        return None
    rank = min(n - 1, max(0, round(q * (n - 1))))
    seen = 0
    for i, c in enumerate(counts):
        if rank < seen + c:
            lo, hi = bucket_bounds(i)
            lo = max(lo, LAT_BASE_US / LAT_RATIO) if i == 0 else lo
            hi = lo * LAT_RATIO if math.isinf(hi) else hi
            return round(lo * (hi / lo) ** ((rank - seen + 0.5) / c))
        seen += c
    return None
