"""The log writer's local spool (runtime/stores/spool.py): rows a killed process had accepted are replayed
by the next one; settled segments are deleted; a live sibling's segments are left alone."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from runtime.stores.spool import Spool

REPO = Path(__file__).resolve().parents[2]


def _row(i: int) -> tuple[object, ...]:
    return (f"r{i}", 1_700_000_000_000 + i, "chat", b'{"q": "x"}', None, 1.5)


async def test_rows_are_written_once_per_loop_turn_and_settled_segments_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=200)  # a few rows per segment: rotation is exercised
    for i in range(10):
        spool.append(_row(i))
    assert not list(tmp_path.glob("*.spool"))  # nothing written inside the turn
    await asyncio.sleep(0)
    files = list(tmp_path.glob("*.spool"))
    assert len(files) == 1
    for i in range(10, 40):
        spool.append(_row(i))
        await asyncio.sleep(0)  # one turn per row: the segment fills and rotates
    assert len(list(tmp_path.glob("*.spool"))) > 3
    spool.resolved(40)  # everything settled: only the open segment remains, empty of unsettled rows
    assert len(list(tmp_path.glob("*.spool"))) <= 1
    spool.close()
    assert not list(tmp_path.glob("*.spool"))


async def test_flush_pending_writes_within_the_turn_and_the_scheduled_flush_then_writes_nothing(
    tmp_path: Path,
) -> None:
    """What the gateway calls before handing an answer to the server: the row is in the file before the
    answer can be written, even in the same loop turn."""
    spool = Spool(tmp_path)
    spool.flush_pending()  # nothing appended: no file
    assert not list(tmp_path.glob("*.spool"))
    spool.append(_row(1))
    spool.flush_pending()
    (segment,) = tmp_path.glob("*.spool")
    size = segment.stat().st_size
    assert size > 0
    await asyncio.sleep(0)  # the flush scheduled by append finds nothing left to write
    assert segment.stat().st_size == size
    spool.close()


async def test_a_clean_close_keeps_rows_the_database_never_got(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append(_row(i))
    spool.resolved(2)  # flushes the turn first, then settles the two oldest
    spool.close()
    again = Spool(tmp_path)
    # Everything of the unsettled segment comes back (the settled rows too: the writer skips them by id).
    assert [r[0] for r in again.orphans()] == [f"r{i}" for i in range(5)]
    again.resolved(5)
    again.close()
    assert not list(tmp_path.glob("*.spool"))


def test_a_killed_process_rows_are_replayed_by_the_next(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from runtime.stores.spool import Spool
        async def main():
            spool = Spool({str(tmp_path)!r}, segment_bytes=300)
            for i in range(50):
                spool.append(("r%d" % i, i, "chat", b"x" * 20, None, 0.5))
                if i % 7 == 0:
                    await asyncio.sleep(0)
            spool.resolved(10)  # the database had the first ten
            await asyncio.sleep(0)
            os.kill(os.getpid(), signal.SIGKILL)  # no close, no cleanup
        asyncio.run(main())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert done.returncode == -signal.SIGKILL
    spool = Spool(tmp_path)
    rows = spool.orphans()
    ids = [r[0] for r in rows]
    # Every row of the segments not yet settled is back (settled ones may reappear: written idempotently).
    assert set(ids) >= {f"r{i}" for i in range(10, 50)}
    assert len(ids) == len(set(ids))
    assert spool.replayed == len(rows)
    spool.resolved(len(rows))
    spool.close()
    assert not list(tmp_path.glob("*.spool"))


async def test_a_live_siblings_segments_are_not_taken(tmp_path: Path) -> None:
    live = Spool(tmp_path)
    live.append(_row(1))
    await asyncio.sleep(0)
    other = Spool(tmp_path)
    assert other.orphans() == []  # the sibling holds its segment's lock
    live.resolved(1)
    live.close()


def test_a_torn_last_record_ends_the_segment(tmp_path: Path) -> None:
    async def write() -> None:
        spool = Spool(tmp_path)
        for i in range(3):
            spool.append(_row(i))
        await asyncio.sleep(0)
        spool.close()  # unsettled: kept

    asyncio.run(write())
    (path,) = tmp_path.glob("*.spool")
    data = path.read_bytes()
    path.write_bytes(data[:-5])  # the process died mid-write
    spool = Spool(tmp_path)
    rows = spool.orphans()
    assert [r[0] for r in rows] == ["r0", "r1"]
    spool.close()
