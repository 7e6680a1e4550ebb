"""Signed-in browsers: sessions that logging out really ends, in every worker.

The UI's sign-in exchanges the admin token for a random session id (the `bifrost_admin` cookie);
the token itself never goes into a cookie. Sessions live in `<app_dir>/admin_sessions.json` (0600)
as SHA-256 hashes with an expiry, so the file is no more useful to a reader than the token hash
next to it. Every worker reads the same file: a sign-in or a sign-out in one worker is seen by the
others at their next admin request (one stat tells whether the file changed; it is reread only
then). Writes happen under a file lock, through a temp file and a rename, off the event loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from runtime.stores.files import file_signature, write_atomic

try:  # POSIX: serialise writers across worker processes
    import fcntl
except ImportError:  # pragma: no cover - Windows runs one worker
    fcntl = None  # type: ignore[assignment]

SESSIONS_FILE = "admin_sessions.json"
SESSION_TTL_S = 30 * 86400  # the cookie's max-age
MAX_SESSIONS = 1000  # the oldest are dropped beyond this (each sign-in adds one)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


class SessionStore:
    def __init__(self, path: Path, ttl_s: float = SESSION_TTL_S) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self._lock_path = path.with_name(f".{path.name}.lock")
        self._sessions: dict[str, float] = {}  # hash -> expiry (unix seconds)
        self._signature: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    # -- reading (event loop: one stat, a read only when another worker wrote) -------------------------
    def valid(self, session_id: str | None) -> bool:
        if not session_id:
            return False
        self._refresh()
        expiry = self._sessions.get(_hash(session_id))
        return expiry is not None and expiry > time.time()

    def _refresh(self) -> None:
        signature = file_signature(self.path)
        if signature == self._signature:
            return
        self._sessions = self._read()
        self._signature = signature

    def _read(self) -> dict[str, float]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # missing or damaged: nobody is signed in (signing in again rewrites it)
        if not isinstance(data, dict):
            return {}
        return {k: float(v) for k, v in data.items() if isinstance(k, str) and isinstance(v, (int, float))}

    # -- writing (blocking: call in a thread) ---------------------------------------------------------
    def create(self) -> str:
        """A new session id (store its hash; the id itself is only ever in the browser's cookie)."""
        session_id = secrets.token_urlsafe(32)
        with self._edit() as sessions:
            sessions[_hash(session_id)] = time.time() + self.ttl_s
        return session_id

    def revoke(self, session_id: str) -> None:
        with self._edit() as sessions:
            sessions.pop(_hash(session_id), None)

    def revoke_all(self) -> None:
        """Every browser signs in again (the admin token changed)."""
        with self._edit() as sessions:
            sessions.clear()

    @contextlib.contextmanager
    def _edit(self) -> Iterator[dict[str, float]]:
        with self._lock, self._locked():
            sessions = self._read()  # what every worker wrote, not our possibly stale copy
            now = time.time()
            sessions = {k: v for k, v in sessions.items() if v > now}
            yield sessions
            if len(sessions) > MAX_SESSIONS:
                sessions = dict(sorted(sessions.items(), key=lambda kv: kv[1])[-MAX_SESSIONS:])
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(sessions))
            self._sessions = sessions
            self._signature = file_signature(self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock
