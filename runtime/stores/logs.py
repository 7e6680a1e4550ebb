"""The log store: where finished requests are written, and what the admin API reads back.

Two sides, because they have opposite needs:

- `LogWriter` (one per worker): `submit(row)` is called in `on_finish` of every request, so it only
  appends to a bounded in-memory buffer (never an await, never a lock, never I/O); the engine writes
  buffered rows in batches from its own task and drains them in `close()`. Counters (`written`,
  `dropped`, `failed`, `pending`) feed /metrics and /health. `listeners` are called with each
  committed batch (the live feed of /ws in single-worker mode).
- `LogReader` (the admin API, per worker): list/get/stats/histogram/facets for /api/logs and a
  `tail` cursor for the multi-worker live feed. Every query has a time budget (`LogQueryTooSlow`);
  a store that cannot answer right now raises `LogReadError` (both become a readable 503).

Rows are tuples in `runtime.requestlog.record.COLUMNS` order (built by `record.to_row`); filters and
pages are `runtime.requestlog.filters` objects. Engines: `logs_sqlite` (embedded). A PostgreSQL
engine would batch with COPY/executemany in its writer task and answer the same queries.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from runtime.config.model import GatewayConfig
    from runtime.requestlog.filters import LogFilter, Page

Row = tuple[Any, ...]


class LogQueryTooSlow(Exception):
    """A log query passed its time budget and was interrupted."""


class LogReadError(Exception):
    """The log store cannot be read right now (locked, missing, unreachable); the message says why."""


class LogWriter(Protocol):
    capacity: int  # rows the buffer may hold; beyond it rows are dropped and counted
    retention_days: int  # 0 keeps everything
    written: int
    dropped: int  # rows never written, for any reason
    failed: int  # of `dropped`: rows the store refused
    listeners: list[Callable[[list[Row]], None]]

    def submit(self, row: Row) -> None:
        """Buffer one row. Never blocks, never raises for a full buffer (counts it in `dropped`)."""

    @property
    def pending(self) -> int:
        """Rows buffered, not yet written."""

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Write what is buffered (bounded wait), then release the store. Never hangs a shutdown."""


class LogReader(Protocol):
    def available(self) -> bool:
        """Whether there is a log to read (an embedded store that was never written has none)."""

    async def list(self, f: LogFilter, page: Page) -> dict[str, Any]: ...

    async def get(self, log_id: str) -> dict[str, Any] | None: ...

    async def stats(self, f: LogFilter) -> dict[str, Any]: ...

    async def by_virtual_key(self, f: LogFilter, limit: int = 200) -> builtins.list[dict[str, Any]]: ...

    async def histogram(self, f: LogFilter, buckets: int = 60) -> dict[str, Any]: ...

    async def facets(self) -> dict[str, Any]: ...

    async def last_rowid(self) -> int:
        """The tail cursor of the newest row (0 when empty)."""

    async def tail(self, after_rowid: int, limit: int = 500) -> builtins.list[tuple[int, Row]]:
        """(cursor, row) of the rows written after `after_rowid` by any worker, oldest first."""

    async def close(self) -> None: ...


class LogStore(Protocol):
    """One engine's log store for this worker: its writer and a factory for read sides."""

    @property
    def writer(self) -> LogWriter:
        """This worker's writer (one per store)."""

    @classmethod
    def from_config(cls, config: GatewayConfig) -> LogStore: ...

    def reader(self) -> LogReader: ...
