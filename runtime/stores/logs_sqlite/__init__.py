"""The embedded log engine: `<app_dir>/logs.db`, one batched writer per worker, read-only query pools.

    writer.py      LogWriter: the bounded buffer and its flush task (one transaction per batch)
    queries.py     LogQueries: list/get/stats/histogram/facets/tail over the covering indexes
    migrations.py  the numbered schema migrations, recorded by id

Every worker writes the same file (WAL: one writer at a time, readers never blocked).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runtime.config.model import GatewayConfig
from runtime.stores.logs import LogReader, LogStore
from runtime.stores.logs import LogWriter as LogWriterInterface
from runtime.stores.logs_sqlite.queries import LogQueries
from runtime.stores.logs_sqlite.writer import LogWriter
from runtime.stores.status import StoreStatus


class SQLiteLogStore:
    def __init__(self, path: Path, writer: LogWriter) -> None:
        self.path = Path(path)
        self.writer = writer

    @classmethod
    def from_config(cls, config: GatewayConfig) -> SQLiteLogStore:
        writer = LogWriter(
            config.log_db_path,
            capacity=config.client.initial_pool_size,
            batch_size=config.tuning.log_batch_size,
            flush_interval_s=config.tuning.log_flush_interval_ms / 1000.0,
            retention_days=config.client.log_retention_days,
        )
        return cls(config.log_db_path, writer)

    @property
    def status(self) -> StoreStatus:
        """The writer's: whether its last batch reached logs.db (runtime/stores/status.py)."""
        return self.writer.status

    def reader(self) -> LogQueries:
        return LogQueries(self.path)


if TYPE_CHECKING:  # mypy holds the engine to the interfaces
    _engine: type[LogStore] = SQLiteLogStore
    _writer: type[LogWriterInterface] = LogWriter
    _reader: type[LogReader] = LogQueries
