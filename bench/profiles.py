"""Do the tuning profiles behave differently under load? Memory against latency, cost vs speed.

    python bench/profiles.py                        # concurrency 32 and 256, 8 s each, both profiles
    python bench/profiles.py --concurrency 64 --seconds 15

Method: for each profile, start the gateway from this checkout (`python -m bifrost_cli serve
--profile X`, fresh app dir, built-in `mock` provider so only the gateway is measured), let it
settle, warm it up for 2 s, then run a closed loop of N concurrent keep-alive connections sending
the same chat completion for the given time from one asyncio client in this process. Reported:
requests per second, p50/p99 latency as the client saw it, non-200 answers, and the proportional
set size (PSS: shared pages split between the processes that share them) of the gateway's whole
process tree, idle and right after the load. The client shares the machine with the gateway, so
absolute numbers are lower than on separate machines; the comparison between profiles is the point.

This is a standalone script on purpose (stdlib + aiohttp + psutil); the full benchmark suite lives in
`python -m bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

REPO = Path(__file__).resolve().parents[1]
BODY = json.dumps({"model": "mock/mock-chat", "messages": [{"role": "user", "content": "hello there " * 20}]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_pss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0
    for proc in (root, *root.children(recursive=True)):
        info = proc.memory_full_info()
        total += getattr(info, "pss", info.rss)  # PSS is Linux-only
    return total / 1e6


async def closed_loop(port: int, concurrency: int, seconds: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    errors = 0
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        end = time.monotonic() + seconds

        async def user() -> None:
            nonlocal errors
            while time.monotonic() < end:
                started = time.perf_counter()
                async with session.post(url, data=BODY, headers=headers) as resp:
                    await resp.read()
                    errors += resp.status != 200
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(user() for _ in range(concurrency)))
    return latencies, errors


def wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    async def poll() -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                if proc.poll() is not None:
                    raise SystemExit(f"gateway exited with {proc.returncode}")
                try:
                    async with session.get(f"http://127.0.0.1:{port}/health") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            raise SystemExit("gateway did not become healthy")

    asyncio.run(poll())


def measure(profile: str, concurrency: int, seconds: float) -> dict[str, object]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIFROST_")}
    with tempfile.TemporaryDirectory() as app_dir:
        cmd = [sys.executable, "-m", "bifrost_cli", "serve", "--port", str(port), "--app-dir", app_dir]
        cmd += ["--profile", profile, "--log-level", "warning"]
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            wait_healthy(port, proc)
            time.sleep(1.0)  # let every worker finish start-up
            workers = 1 + len(psutil.Process(proc.pid).children())
            idle = tree_pss_mb(proc.pid)
            asyncio.run(closed_loop(port, concurrency, 2.0))  # warm-up
            latencies, errors = asyncio.run(closed_loop(port, concurrency, seconds))
            loaded = tree_pss_mb(proc.pid)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    latencies.sort()
    n = len(latencies)
    return {
        "profile": profile,
        "processes": workers,
        "concurrency": concurrency,
        "rps": round(n / seconds),
        "p50_ms": round(latencies[n // 2] * 1e3, 1),
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1e3, 1),
        "errors": errors,
        "pss_idle_mb": round(idle, 1),
        "pss_loaded_mb": round(loaded, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--profiles", nargs="+", default=["cost", "speed"])
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; client: one asyncio process; provider: built-in mock")
    print("| profile | processes | concurrency | req/s | p50 ms | p99 ms | errors | PSS idle MB | PSS loaded MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for concurrency in args.concurrency:
        for profile in args.profiles:
            row = measure(profile, concurrency, args.seconds)
            print("| " + " | ".join(str(v) for v in row.values()) + " |", flush=True)


if __name__ == "__main__":
    main()
