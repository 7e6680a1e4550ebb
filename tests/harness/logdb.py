"""Read the gateway's request log (<app-dir>/logs.db, table `logs`) from the test process.

Opened read-only per query, so the test never holds a lock the gateway's writer would wait on.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

Row = dict[str, Any]


class LogDB:
    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def rows(self, where: str = "", params: tuple[Any, ...] = ()) -> list[Row]:
        if not self.path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            sql = "SELECT * FROM logs" + (f" WHERE {where}" if where else "") + " ORDER BY ts_ms, rowid"
            return [dict(r) for r in conn.execute(sql, params)]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            conn.close()

    def columns(self) -> list[str]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            return [r[1] for r in conn.execute("PRAGMA table_info(logs)")]
        finally:
            conn.close()

    def wait_rows(self, n: int, timeout: float = 15.0, where: str = "", params: tuple[Any, ...] = ()) -> list[Row]:
        """Poll until at least n rows match (the writer flushes about every 100 ms)."""
        deadline = time.monotonic() + timeout
        rows = self.rows(where, params)
        while len(rows) < n and time.monotonic() < deadline:
            time.sleep(0.05)
            rows = self.rows(where, params)
        return rows

    def row_for(self, request_id: str, timeout: float = 15.0) -> Row:
        rows = self.wait_rows(1, timeout, "id = ?", (request_id,))
        assert rows, f"no request-log row with id {request_id!r} in {self.path}"
        return rows[0]
