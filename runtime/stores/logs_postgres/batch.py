"""One batch of rows into `bifrost_logs`: typed, staged with COPY, inserted idempotently in seq order.

Shared by the writer (live rows) and `import_rows` (rows of a logs.db):

1. `coerce` checks each value against its column's type in Python (a row that cannot be stored is
   refused alone, before any I/O) and makes text storable: PostgreSQL text holds no NUL and only valid
   UTF-8 (SQLite held both), so NUL becomes U+FFFD and lone surrogates are repaired.
2. The batch is COPYed (`copy_records_to_table`, the binary protocol: no SQL text per row) into a
   per-connection temporary table, then moved with one INSERT ... SELECT ... ON CONFLICT (id, ts_ms)
   DO NOTHING: a row already present (a batch retried after a commit whose answer was lost, or an
   import run twice) is skipped, never duplicated, never an error.
3. The INSERT runs under the LOG_WRITE_LOCK advisory lock (held to commit), so seq values are drawn in
   commit order across every instance: `tail` can never miss a row committed late with a lower seq.
   The lock covers only the INSERT ... SELECT of an already staged batch (milliseconds).
4. The same statement adds the rows it inserted (its RETURNING) to the hourly rollup (rollup.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any

import asyncpg

from runtime.core.text import repair
from runtime.requestlog.record import COLUMNS
from runtime.stores.logs import Row
from runtime.stores.logs_postgres import partitions, rollup
from runtime.stores.logs_postgres.migrations import COLUMN_TYPES, LOG_WRITE_LOCK, PAIRS, TABLE
from runtime.stores.pg import CONNECTION_ERRORS

log = logging.getLogger("bifrost.requestlog")

STAGE = "bifrost_logs_stage"
_COLS = ", ".join(COLUMNS)
_INT32 = 2**31
_INT64 = 2**63
TS_COL = COLUMNS.index("ts_ms")
PROVIDER_COL = COLUMNS.index("provider")
MODEL_COL = COLUMNS.index("model")
GUARDRAILS_COL = COLUMNS.index("guardrails")
# Per column: "t" text, "i" integer, "b" bigint, "f" double precision; "!" when NOT NULL; "0" when its
# default is 0 (a missing counter is stored as 0 rather than refusing the row).
_KINDS = tuple(
    (
        "t"
        if kind.startswith("text")
        else "i"
        if kind.startswith("integer")
        else "b"
        if kind.startswith("bigint")
        else "f"
    )
    + ("!" if "NOT NULL" in kind else "")
    + ("0" if "DEFAULT 0" in kind else "")
    for _, kind in COLUMN_TYPES
)
assert tuple(name for name, _ in COLUMN_TYPES) == COLUMNS, "migrations.COLUMN_TYPES must follow record.COLUMNS"


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8", "replace")
    elif not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    text = str(value)  # record.Clipped and other str subclasses: a plain str for the driver
    if not text.isascii():
        text = repair(text)
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _guardrails(text: str) -> str:
    """The guardrails column as the readers' JSON filter can always read it: a JSON array (the writers'
    own encoding) stays as it is; other text (a row made by hand in logs.db) is kept as a JSON string.
    A \\u0000 escape becomes U+FFFD's: PostgreSQL's JSON operators refuse NUL, as its text does."""
    if "\\u0000" in text:
        text = text.replace("\\u0000", "\\ufffd")
    try:
        if isinstance(json.loads(text), list):
            return text
    except ValueError:
        pass
    return json.dumps(text, ensure_ascii=False)


def coerce(row: Row) -> Row:
    """`row` with every value of its column's PostgreSQL type; raises ValueError/TypeError if it cannot be."""
    if len(row) != len(COLUMNS):
        raise ValueError(f"a log row has {len(COLUMNS)} values, got {len(row)}")
    out: list[Any] = []
    for value, kind in zip(row, _KINDS, strict=True):
        if value is None:
            if kind.endswith("0"):  # a counter with a default (as SQLite's column takes it): 0
                out.append(0)
                continue
            if kind.endswith("!"):
                raise ValueError("a required column is null")
            out.append(None)
        elif kind[0] == "t":
            out.append(_text(value))
        elif kind[0] == "f":
            if isinstance(value, str) or not isinstance(value, (int, float)):
                raise TypeError(f"expected a number, got {type(value).__name__}")
            out.append(float(value))
        else:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int):
                raise TypeError(f"expected an integer, got {type(value).__name__}")
            bound = _INT32 if kind[0] == "i" else _INT64
            if not -bound <= value < bound:
                raise ValueError(f"integer {value} out of range")
            out.append(int(value))
    if out[GUARDRAILS_COL] is not None:  # rare: a rule acted
        out[GUARDRAILS_COL] = _guardrails(out[GUARDRAILS_COL])
    return tuple(out)


async def _stage(conn: asyncpg.Connection) -> None:
    columns = ", ".join(
        f"{name} {kind.split()[0] if kind.split()[0] != 'double' else 'double precision'}"
        for name, kind in COLUMN_TYPES
    )
    await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} ({columns}) ON COMMIT DELETE ROWS")


async def insert(
    conn: asyncpg.Connection,
    rows: list[Row],
    known_days: set[int] | None = None,
    known_pairs: set[tuple[str | None, str | None]] | None = None,
) -> tuple[int, set[int]]:
    """Insert coerced `rows` in one transaction; returns (rows inserted, days known to have a partition).

    `known_pairs` (updated here) saves the pairs upsert when the batch holds no new (provider, model)."""
    days = {partitions.day_of(r[TS_COL]) for r in rows}
    try:
        known = await partitions.ensure(conn, days, known_days)
    except CONNECTION_ERRORS:
        raise
    except asyncpg.PostgresError as exc:
        # A partition could not be made now (its table lock waited past DDL_LOCK_TIMEOUT behind a long
        # query): the rows go to the default partition and move out when the partition is made.
        log.warning(
            "request log: partition not created yet (%s: %s); rows go to the default partition", type(exc).__name__, exc
        )
        known = set(known_days or ())
    pairs = {(r[PROVIDER_COL], r[MODEL_COL]) for r in rows}
    new_pairs = pairs if known_pairs is None else pairs - known_pairs
    async with conn.transaction():
        await _stage(conn)
        await conn.copy_records_to_table(STAGE, records=rows, columns=COLUMNS)
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOG_WRITE_LOCK)
        done = await conn.fetchval(INSERT_SQL)
        if new_pairs:
            await conn.executemany(
                f"INSERT INTO {PAIRS} (provider, model) VALUES ($1, $2) "
                "ON CONFLICT ((coalesce(provider, '')), (coalesce(model, ''))) DO NOTHING",
                sorted(new_pairs, key=lambda pm: (pm[0] or "", pm[1] or "")),
            )
    if known_pairs is not None:
        known_pairs |= new_pairs
    return int(done), known


# The batch's rows, then the hourly rollup of exactly the rows inserted (RETURNING: a row skipped by
# ON CONFLICT is not counted again), in one statement; answers how many rows were inserted.
INSERT_SQL = (
    f"WITH ins AS (INSERT INTO {TABLE} ({_COLS}) SELECT {_COLS} FROM {STAGE} ON CONFLICT (id, ts_ms) DO NOTHING "
    f"RETURNING {rollup.SOURCE_COLUMNS}), up AS ({rollup.upsert_sql('ins')}) SELECT count(*) FROM ins"
)


def chunks(rows: Iterable[Row], size: int) -> Iterable[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def close_quietly(conn: asyncpg.Connection, timeout_s: float = 5.0) -> None:
    """Close `conn` within `timeout_s`, else drop it (a server that went away must not hold a shutdown)."""
    if conn.is_closed():
        return
    try:
        await asyncio.wait_for(conn.close(), timeout_s)
    except Exception:
        conn.terminate()
