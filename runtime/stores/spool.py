"""A local spool for the rows a log writer has accepted but not yet written to its (remote) database.

Why: a PostgreSQL log writer buffers rows in memory and writes them in batches, off the request path. A
process killed outright (SIGKILL, the OOM killer, a crash) would lose the rows of requests it had already
answered. The spool keeps a copy of every accepted row in a local file until the database has it; the
next process started on the same app dir (systemd restarts it) replays what a dead one left.

    append(row)    on submit: one list append; the rows of one event-loop turn are written to the
                   current segment by a single os.write scheduled with call_soon (no await, no thread
                   hop), or sooner by flush_pending(), which the gateway calls before it hands a request's
                   answer to the HTTP server (a write in the same loop turn could otherwise reach the
                   client before its row reached the file). The write lands in the OS page cache: it
                   survives the process, not a power cut (no fsync per turn: that would cost
                   milliseconds; the kernel writes it out within seconds).
    resolved(n)    the writer reports that its n oldest outstanding rows are settled (written, or refused
                   for good); a segment whose rows are all settled is deleted. Rows are settled in the
                   order they were appended: the writer keeps its buffer in order.
    orphans()      at start: the segments of processes that are gone (their lock is free), locked by us,
                   and their rows, to be written first; the writer inserts idempotently (by row id), so a
                   row that was written just before its process died is not written twice.
    close(keep)    a clean stop deletes fully settled segments; rows still unsettled (the database was
                   down) stay on disk for the next start rather than being lost.

Segments are files `<dir>/<pid>-<n>.spool` (0600), each a sequence of length-prefixed pickles, sealed at
`segment_bytes`. Every live process holds an exclusive flock on its open segments, which is how a starting
process tells a dead one's files (lock free) from a live sibling worker's (lock held). pickle: the rows
are tuples of str/bytes/int/float/None written and read only by this gateway, in files only its user can
read, like config.json beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pickle
import struct
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("bifrost.requestlog")

SEGMENT_BYTES = 8 << 20
_LEN = struct.Struct("<I")


class _Segment:
    __slots__ = ("fd", "path", "pending", "sealed", "size")

    def __init__(self, path: Path, fd: int, pending: int = 0, sealed: bool = False) -> None:
        self.path = path
        self.fd = fd
        self.size = 0
        self.pending = pending  # rows appended to it and not yet settled
        self.sealed = sealed  # no more rows will be appended

    def remove(self) -> None:
        if self.fd < 0:
            return  # never had a file
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self.fd)  # closing releases the lock


class Spool:
    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        self._queue: deque[_Segment] = deque()  # segments with unsettled rows, oldest first
        self._current: _Segment | None = None
        self._pending: list[bytes] = []  # rows of this loop turn, not yet written
        self._scheduled = False
        self._counter = 0
        self.errors = 0  # failed writes (the row is still in memory; only a crash would lose it)
        self.replayed = 0

    # -- starting ------------------------------------------------------------------------------------
    def orphans(self) -> list[Any]:
        """The rows dead processes left, oldest segment first; their segments are ours until settled."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        rows: list[Any] = []
        for path in sorted(self.dir.glob("*.spool"), key=lambda p: p.stat().st_mtime):
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue  # removed by its owner meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # a live process's segment
                continue
            found = list(_read(path))
            segment = _Segment(path, fd, pending=len(found), sealed=True)
            if not found:
                segment.remove()
                continue
            self._queue.append(segment)
            rows.extend(found)
        self.replayed = len(rows)
        if rows:
            log.info("request log: %d row(s) left by a stopped process are written first", len(rows))
        return rows

    # -- writing -------------------------------------------------------------------------------------
    def append(self, row: Any) -> None:
        """Spool one accepted row (written at the end of this loop turn)."""
        self._pending.append(pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush_pending(self) -> None:
        """Write now what this turn appended (the gateway calls it before handing an answer to the server:
        the row of an answered request must be on disk before the answer can reach the client)."""
        if self._pending:
            self.flush()

    def flush(self) -> None:
        """Write the rows appended since the last flush (one os.write)."""
        self._scheduled = False
        pending, self._pending = self._pending, []
        if not pending:
            return
        segment = self._current
        if segment is None or segment.size >= self.segment_bytes or segment.fd < 0:
            if segment is not None:
                segment.sealed = True
                self._release_settled()
            segment = self._current = self._open_segment()
            self._queue.append(segment)
        # Counted even when the write fails, so the writer's settled counts stay aligned with segments.
        segment.pending += len(pending)
        data = b"".join(_LEN.pack(len(p)) + p for p in pending)
        segment.size += len(data)
        if segment.fd < 0:
            self.errors += len(pending)
            return
        try:
            os.write(segment.fd, data)
        except OSError as exc:
            self.errors += len(pending)
            log.warning("request log: the spool cannot be written (%s); rows stay in memory only", exc.strerror)

    def _open_segment(self) -> _Segment:
        """A new segment, locked; one without a file (fd -1) when the directory cannot be written, so that
        counting goes on and the next turn tries again."""
        self._counter += 1
        path = self.dir / f"{os.getpid()}-{self._counter}.spool"
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            log.warning("request log: cannot open a spool segment in %s: %s", self.dir, exc.strerror)
            return _Segment(path, -1)
        return _Segment(path, fd)

    # -- settling ------------------------------------------------------------------------------------
    def resolved(self, n: int) -> None:
        """The writer's `n` oldest outstanding rows are settled (written, or refused for good)."""
        if self._pending:
            self.flush()  # rows are counted per segment when written: settle against written counts
        queue = self._queue
        while n > 0 and queue:
            segment = queue[0]
            take = min(n, segment.pending)
            segment.pending -= take
            n -= take
            if segment.pending > 0:
                break
            if segment is self._current:
                break  # kept open for the next rows; emptied when it is sealed
            queue.popleft()
            segment.remove()

    def _release_settled(self) -> None:
        while self._queue and self._queue[0].sealed and self._queue[0].pending == 0:
            self._queue.popleft().remove()

    def close(self) -> None:
        """Delete what is settled; keep unsettled rows on disk for the next start."""
        self.flush()
        for segment in self._queue:
            if segment.pending == 0:
                segment.remove()
            elif segment.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(segment.fd)
        self._queue.clear()
        self._current = None


def _read(path: Path) -> Iterator[Any]:
    """The rows of one segment; a torn last record (the process died mid-write) ends it."""
    try:
        data = path.read_bytes()
    except OSError:
        return
    at = 0
    while at + _LEN.size <= len(data):
        (size,) = _LEN.unpack_from(data, at)
        start = at + _LEN.size
        if start + size > len(data):
            return
        try:
            yield pickle.loads(data[start : start + size])
        except Exception:
            return
        at = start + size
