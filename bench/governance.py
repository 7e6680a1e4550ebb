"""In-process cost of governance per request: `python -m bench.governance [--requests N] [--runs R]`.

Runs the bench's governance plugin (bench/governance_plugin.py: two budgets and a request + token rate
limit, on a real state.db in a temp dir) through pre_hook + on_finish for N requests, R times, and prints
the best and median microseconds per request, next to the cost of building the RequestContext alone
(a yardstick for how busy the machine was). The best run is the cost; the median shows the noise.
The gateway-level comparison is `python -m bench overhead --targets direct,bifrost,bifrost-gov`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from bench.governance_plugin import BenchGovernance
from runtime.core.context import RequestContext
from runtime.providers.base import Usage

BODY = b'{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'


async def _measure(requests: int, runs: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as app_dir:
        plugin = BenchGovernance({"app_dir": app_dir})
        usage = Usage(10, 20)

        async def one(i: int) -> None:
            ctx = RequestContext(str(i), "chat")
            ctx.body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
            ctx.input_raw = BODY
            await plugin.pre_hook(ctx)
            ctx.status, ctx.usage, ctx.provider, ctx.model = 200, usage, "openai", "gpt-4o-mini"
            plugin.on_finish(ctx)

        for i in range(1000):  # first leases, anchors, caches
            await one(i)
        out: dict[str, list[float]] = {"governed_us": [], "context_only_us": []}
        for _ in range(runs):
            t0 = time.perf_counter()
            for i in range(requests):
                await one(i)
            t1 = time.perf_counter()
            for i in range(requests):
                RequestContext(str(i), "chat")
            t2 = time.perf_counter()
            out["governed_us"].append((t1 - t0) / requests * 1e6)
            out["context_only_us"].append((t2 - t1) / requests * 1e6)
        await plugin.limits.close()
        await plugin.limits.ledger.store.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.governance", description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    result = asyncio.run(_measure(args.requests, args.runs))
    for name, values in result.items():
        print(f"{name:>16}: best {min(values):6.1f} us  median {statistics.median(values):6.1f} us per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
