"""The PostgreSQL log engine (`logs_store.type: postgres`): one time-partitioned table shared by every
gateway instance, a batched COPY writer per worker, pooled readers.

    migrations.py  the numbered schema migrations, recorded in bifrost_logs_migrations
    partitions.py  day partitions created ahead, dropped by retention
    batch.py       one batch: type-check, COPY to a staging table, idempotent INSERT in seq order
    writer.py      PostgresLogWriter: the bounded buffer, its flush task, reconnects and backoff
    queries.py     PostgresLogQueries: list/get/stats/histogram/facets/tail (LogReader)
    importer.py    import_rows: logs.db rows into the database (`bifrost migrate`)

See docs/logs-store.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runtime.config.model import GatewayConfig, PostgresSettings
from runtime.stores.logs import LogReader, LogStore
from runtime.stores.logs import LogWriter as LogWriterInterface
from runtime.stores.logs_postgres.importer import import_rows
from runtime.stores.logs_postgres.queries import PostgresLogQueries
from runtime.stores.logs_postgres.writer import PostgresLogWriter
from runtime.stores.spool import Spool
from runtime.stores.status import StoreStatus

SPOOL_DIR = "log-spool"  # in the app dir

__all__ = ["PostgresLogQueries", "PostgresLogStore", "PostgresLogWriter", "import_rows"]


class PostgresLogStore:
    """This worker's PostgreSQL log: one writer, readers on demand, one `status` they all keep current."""

    def __init__(self, settings: PostgresSettings, writer: PostgresLogWriter, status: StoreStatus) -> None:
        self.settings = settings
        self.writer = writer
        self.status = status

    @classmethod
    def from_config(cls, config: GatewayConfig) -> PostgresLogStore:
        settings = config.stores.logs
        if settings is None:
            raise ValueError("logs_store is not a postgres block (config.stores.logs is None)")
        status = StoreStatus("postgres", f"{settings.host}:{settings.port}/{settings.database}")
        writer = PostgresLogWriter(
            settings,
            status,
            capacity=config.client.initial_pool_size,
            batch_size=config.tuning.log_batch_size,
            flush_interval_s=config.tuning.log_flush_interval_ms / 1000.0,
            retention_days=config.client.log_retention_days,
            close_timeout_s=min(config.shutdown_grace_s, 10.0) if config.shutdown_grace_s > 0 else 10.0,
            spool=Spool(Path(config.app_dir) / SPOOL_DIR),  # a killed instance loses no answered request's row
        )
        return cls(settings, writer, status)

    def reader(self) -> PostgresLogQueries:
        return PostgresLogQueries(self.settings, self.status)


if TYPE_CHECKING:  # mypy holds the engine to the interfaces
    _engine: type[LogStore] = PostgresLogStore
    _writer: type[LogWriterInterface] = PostgresLogWriter
    _reader: type[LogReader] = PostgresLogQueries
