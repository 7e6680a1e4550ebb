"""Throughput of the shared-state store's counters (`incr`, `reserve`) from one and from several processes.

    python -m bench.shared_state                      # both engines, 1 and 2 processes, 5,000 ops each
    python -m bench.shared_state --engine redis --ops 20000 --procs 1 2 4 --concurrency 8

Method. Each process opens its own store (own event loop, own connection and database thread) on one
database file in a temp dir (sqlite), or on one redis-server that the bench starts on a free loopback
port in a temp dir without persistence (redis; Debian's `redis-server` must be installed, it is
emptied before each round), waits for a start file so that all begin together, and runs `--ops`
operations on ONE key (the worst case: every write contends for the same row), `--concurrency`
awaits in flight per process. A process reports its own wall time; the aggregate rate is total
operations / the longest process's time. The final total is checked to be exact (the point of the
store). The numbers are for budget and rate-limit planning: a request path that made one such
round trip per request would be capped by them, which is why those features will lease slices.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from runtime.stores.engines import open_shared_state_engine


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port (no persistence); yields its redis:// URL."""
    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin")
    if binary is None:
        raise SystemExit("the redis engine needs redis-server (Debian: apt-get install redis-server)")
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--save", "", "--appendonly", "no"]
        with open(Path(tmp) / "redis.log", "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while _redis_command(port, "PING") != b"+PONG\r\n":
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"redis-server did not start: {(Path(tmp) / 'redis.log').read_text()[-2000:]}")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()


def _redis_command(port: int, command: str) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(command.encode() + b"\r\n")
            return s.recv(1024)
    except OSError:
        return b""


async def _worker(engine: str, location: str, go: Path, op: str, ops: int, concurrency: int) -> None:
    store = await open_shared_state_engine(engine, location)
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


def _round(engine: str, op: str, procs: int, ops: int, concurrency: int, redis_url: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        go = Path(tmp) / "go"
        path = str(Path(tmp) / "state.db")
        if engine == "redis":
            assert redis_url is not None
            path = redis_url
            assert _redis_command(int(redis_url.rsplit(":", 1)[1].split("/")[0]), "FLUSHALL") == b"+OK\r\n"
        cmd = [sys.executable, "-m", "bench.shared_state", "--worker", engine, path, str(go), op]
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
        asyncio.run(_worker(engine, path, Path(go), op, int(ops), int(concurrency)))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.shared_state")
    parser.add_argument("--engine", nargs="+", default=["sqlite", "redis"], choices=["sqlite", "redis"])
    parser.add_argument("--ops", type=int, default=5000, help="operations per process")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1], help="awaits in flight per process")
    parser.add_argument("--op", nargs="+", default=["incr", "reserve"], choices=["incr", "reserve"])
    args = parser.parse_args(argv)
    for engine in args.engine:
        with redis_server() if engine == "redis" else contextlib.nullcontext() as redis_url:
            print(f"engine={engine} cpus={os.cpu_count()} ops/process={args.ops}")
            for op in args.op:
                for procs in args.procs:
                    for concurrency in args.concurrency:
                        r = _round(engine, op, procs, args.ops, concurrency, redis_url)
                        line = f"{op:8} procs={procs} in-flight/proc={concurrency:<3} {r['ops_per_s']:>8} ops/s  ({r})"
                        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
