"""Throughput of the shared-state store's counters (`incr`, `reserve`) from one and from several processes.

    python -m bench.shared_state                      # 1 and 2 processes, 5,000 ops each, sequential awaits
    python -m bench.shared_state --ops 20000 --procs 1 2 4 --concurrency 8

Method. Each process opens its own store (own event loop, own connection and database thread) on one
database file in a temp dir, waits for a start file so that all begin together, and runs `--ops`
operations on ONE key (the worst case: every write contends for the same row), `--concurrency`
awaits in flight per process. A process reports its own wall time; the aggregate rate is total
operations / the longest process's time. The final total is checked to be exact (the point of the
store). The numbers are for budget and rate-limit planning: a request path that made one such
round trip per request would be capped by them, which is why those features will lease slices.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runtime.stores.engines import open_shared_state_engine


async def _worker(engine: str, path: Path, go: Path, op: str, ops: int, concurrency: int) -> None:
    store = await open_shared_state_engine(engine, path)
    try:
        print("ready", flush=True)
        while not go.exists():
            await asyncio.sleep(0.001)
        per_task = ops // concurrency

        async def run() -> None:
            for _ in range(per_task):
                if op == "incr":
                    await store.incr("bench", 1)
                else:
                    await store.reserve("bench", 1, 10**12)

        started = time.perf_counter()
        await asyncio.gather(*(run() for _ in range(concurrency)))
        print(json.dumps({"ops": per_task * concurrency, "s": time.perf_counter() - started}), flush=True)
    finally:
        await store.close()


def _round(engine: str, op: str, procs: int, ops: int, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path, go = Path(tmp) / "state.db", Path(tmp) / "go"
        cmd = [sys.executable, "-m", "bench.shared_state", "--worker", engine, str(path), str(go), op]
        cmd += [str(ops), str(concurrency)]
        children = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        go.touch()
        results = [json.loads(child.communicate()[0].splitlines()[-1]) for child in children]

        async def total() -> float:
            store = await open_shared_state_engine(engine, path)
            try:
                return float(await store.total("bench"))
            finally:
                await store.close()

        done = sum(r["ops"] for r in results)
        final = asyncio.run(total())
        assert final == done, f"lost updates: {final} != {done}"
        slowest = max(r["s"] for r in results)
        return {"ops": done, "seconds": round(slowest, 3), "ops_per_s": round(done / slowest)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        engine, path, go, op, ops, concurrency = argv[1:7]
        asyncio.run(_worker(engine, Path(path), Path(go), op, int(ops), int(concurrency)))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.shared_state")
    parser.add_argument("--engine", default="sqlite")
    parser.add_argument("--ops", type=int, default=5000, help="operations per process")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1], help="awaits in flight per process")
    parser.add_argument("--op", nargs="+", default=["incr", "reserve"], choices=["incr", "reserve"])
    args = parser.parse_args(argv)
    print(f"engine={args.engine} cpus={os.cpu_count()} ops/process={args.ops}")
    for op in args.op:
        for procs in args.procs:
            for concurrency in args.concurrency:
                r = _round(args.engine, op, procs, args.ops, concurrency)
                print(f"{op:8} procs={procs} in-flight/proc={concurrency:<3} {r['ops_per_s']:>8} ops/s  ({r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
