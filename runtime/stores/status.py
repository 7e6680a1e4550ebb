"""What /health and /ready say about each store: one small record per store, read without I/O.

Every store engine that can be unavailable (a server that is down, slow or refusing) keeps a
`StoreStatus` up to date as its own operations succeed and fail, and exposes it as `status`. The
health route reads them (never pings a server on the request of a probe: a probe must stay cheap and
cannot hang). States:

    up       the last operation succeeded
    down     the last operation (or connection attempt) failed; `error` says why, never a secret
    standby  nothing has needed the store yet (opened on first use)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

UP = "up"
DOWN = "down"
STANDBY = "standby"


class StoreUnavailable(Exception):
    """A store's server cannot do an operation right now (down, refusing, too slow). Engines raise their own
    subclass (runtime/stores/pg.py PostgresUnavailable); routes catch this one, so they import no driver.
    The message names the server, never a credential."""


@dataclass(slots=True)
class StoreStatus:
    engine: str  # "sqlite" | "postgres" | "redis"
    target: str  # where: a file name or host:port/db, never a credential
    state: str = STANDBY
    error: str | None = None
    since: float = field(default_factory=time.time)  # when `state` last changed
    failures: int = 0  # operations that failed since start

    def ok(self) -> None:
        if self.state != UP:
            self.state, self.error, self.since = UP, None, time.time()

    def failed(self, error: str) -> None:
        self.failures += 1
        self.error = error
        if self.state != DOWN:
            self.state, self.since = DOWN, time.time()

    def view(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "target": self.target,
            "state": self.state,
            "error": self.error,
            "since": round(self.since, 3),
            "failures": self.failures,
        }


@runtime_checkable
class Monitored(Protocol):
    """A store that reports its state."""

    @property
    def status(self) -> StoreStatus: ...
