"""`import_rows`: copy request-log rows (as logs.db holds them) into the PostgreSQL log, idempotently.

Used by `bifrost migrate` to move an embedded log into a cluster's database. Rows are in
`record.COLUMNS` order with content columns already JSON text (as the SQLite writer stored them), so
they are only type-checked (batch.coerce), never re-encoded. A row whose (id, ts_ms) is already present
is skipped, so an interrupted import can simply be run again. Creates the schema when it is missing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable

from runtime.config.model import PostgresSettings
from runtime.stores import pg
from runtime.stores.logs import Row
from runtime.stores.logs_postgres import batch as batches
from runtime.stores.logs_postgres.migrations import migrate

log = logging.getLogger("bifrost.requestlog")


async def _aiter(rows: Iterable[Row] | AsyncIterable[Row]) -> AsyncIterator[Row]:
    if isinstance(rows, AsyncIterable):
        async for row in rows:
            yield row
    else:
        for row in rows:
            yield row


async def import_rows(
    settings: PostgresSettings, rows: Iterable[Row] | AsyncIterable[Row], *, batch: int = 5000
) -> int:
    """Insert `rows` into the log at `settings`, `batch` rows per transaction; returns the rows inserted
    (rows already present, and rows that cannot be stored, are not counted; the latter are logged).
    Raises pg.PostgresUnavailable when the server cannot be reached."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    conn = await pg.connect(settings)
    inserted = refused = 0
    try:
        try:
            await migrate(conn)
            days: set[int] | None = None
            pairs: set[tuple[str | None, str | None]] = set()
            chunk: list[Row] = []
            async for row in _aiter(rows):
                try:
                    chunk.append(batches.coerce(row))
                except (TypeError, ValueError) as exc:
                    refused += 1
                    if refused <= 10:
                        log.error("log import: skipped row %.64r (cannot be stored: %s)", row[:1], exc)
                    continue
                if len(chunk) >= batch:
                    n, days = await batches.insert(conn, chunk, days, pairs)
                    inserted += n
                    chunk = []
            if chunk:
                n, days = await batches.insert(conn, chunk, days, pairs)
                inserted += n
        except pg.CONNECTION_ERRORS as exc:
            raise pg.unavailable(settings, exc) from None
    finally:
        await batches.close_quietly(conn)
    if refused:
        log.error("log import: %d rows could not be stored and were skipped", refused)
    return inserted
