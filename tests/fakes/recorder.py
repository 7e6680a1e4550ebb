"""Thread-safe record of what a fake provider received and what it served.

The fake's event loop runs in its own thread and writes here; the test thread reads. Every read
returns a copy, so a test can never observe a half-updated list.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # keys lower-cased
    body: Any  # parsed JSON, or None when the body was empty or not JSON
    raw: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[7:] if value.lower().startswith("bearer ") else None


class Recorder:
    """Requests received plus counters of what happened to them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._counts: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()
        self._in_flight = 0
        self._max_in_flight = 0

    # ---- written by the fake's thread ----

    def add(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def finished(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def count(self, event: str, n: int = 1) -> None:
        with self._lock:
            self._counts[event] += n

    def status(self, status: int) -> None:
        with self._lock:
            self._statuses[status] += 1

    # ---- read by tests ----

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def counts(self) -> dict[str, int]:
        """Events: served, streams_started, streams_completed, streams_cut, dropped, disconnects."""
        with self._lock:
            return dict(self._counts)

    @property
    def statuses(self) -> dict[int, int]:
        """How many responses were sent with each status (a dropped connection has none)."""
        with self._lock:
            return dict(self._statuses)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._counts.clear()
            self._statuses.clear()
            self._max_in_flight = self._in_flight


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
