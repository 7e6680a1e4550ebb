"""Small file helpers of the embedded engines: replace a file atomically, notice that it changed.

Also used by the admin sessions file and the per-worker metrics snapshots.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from runtime.stores.config import ConfigWriteError

Signature = tuple[int, int, int]


def file_signature(path: Path) -> Signature | None:
    """What changes whenever the file is replaced or rewritten (mtime, size, inode)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that a crash or a full disk never leaves a partial file behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600  # the file holds provider keys: owner only
    data = text.encode("utf-8")  # before the temp file exists: text it cannot hold leaves nothing behind
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:  # any failure (even a cancel) removes the temp file
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ConfigWriteError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    # Make the rename itself durable; not possible (nor needed) on every platform.
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
