"""Benchmark what one cache miss costs the semantic_cache plugin in process, hook by hook.

    python -m bench.cache_miss                 # 5,000 misses after 500 warm-up ones
    python -m bench.cache_miss --n 20000 --json

Method. The plugin as the gateway builds it for the `full` scenario's exact cache (direct mode, a default
cache key, the embedded SQLite store in a temporary directory), driven the way runtime/core/flow.py
drives it: for each request a fresh context with a new prompt (so every lookup misses), `pre_hook`
(key, lookup, flight), then the provider's answer as the OpenAI adapter parses it (a ~1 KB chat
completion, passed through as its own bytes), `post_hook`, `on_finish` (the answer copied, checked and
stored). Reported: the mean µs of each stage. The store's writer thread (one SQLite row per miss, in
batches) runs on the same interpreter and is not counted here. The young GC generation's threshold is
the gateway's (runtime/server.py GC_THRESHOLD), so collections land where they would in the gateway.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import ujson
import uvloop
from multidict import CIMultiDict, CIMultiDictProxy

from runtime.cache.plugin import SemanticCachePlugin
from runtime.cache.settings import parse_settings
from runtime.cache.sqlite_store import SqliteCacheStore
from runtime.core.context import RequestContext
from runtime.providers.openai import parse_openai_body
from runtime.server import GC_THRESHOLD

CONFIG = {"dimension": 1, "ttl": "1h", "default_cache_key": "bench"}  # bench/targets/bifrost.py FULL_CACHE
ANSWER = ujson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "lorem ipsum dolor sit amet " * 30},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 150, "total_tokens": 170},
    }
).encode()


async def measure(n: int, warm: int = 500) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-cache-miss-") as tmp:
        settings = parse_settings(CONFIG)
        store = SqliteCacheStore(
            Path(tmp) / "cache.db", max_entries=settings.max_entries, max_bytes=settings.max_bytes, dimension=1
        )
        plugin = SemanticCachePlugin(settings, store, providers=frozenset({"openai"}))
        headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
        totals = [0, 0, 0]
        misses_before = stored_before = 0
        try:
            for i in range(-warm, n):
                if i == 0:
                    misses_before, stored_before = plugin.counters.misses["direct"], plugin.counters.stored
                ctx = RequestContext(f"bench-{i}", "chat")
                ctx.headers = headers
                ctx.body = {
                    "model": "openai/gpt-4o-mini",
                    "messages": [
                        {"role": "system", "content": "You are a helpful assistant."},
                        {"role": "user", "content": f"Say hello in one short sentence. ({i})"},
                    ],
                    "max_tokens": 150,
                }
                t0 = time.perf_counter_ns()
                await plugin.pre_hook(ctx)
                t1 = time.perf_counter_ns()
                ctx.provider, ctx.model, ctx.status, ctx.cost = "openai", "gpt-4o-mini", 200, 0.0001
                await plugin.post_hook(ctx, parse_openai_body("chat", ANSWER))
                t2 = time.perf_counter_ns()
                plugin.on_finish(ctx)
                t3 = time.perf_counter_ns()
                if i >= 0:
                    totals[0] += t1 - t0
                    totals[1] += t2 - t1
                    totals[2] += t3 - t2
            misses = plugin.counters.misses["direct"] - misses_before
            stored = plugin.counters.stored - stored_before
        finally:
            await plugin.aclose()
    pre, post, finish = (round(t / n / 1000, 1) for t in totals)
    return {
        "n": n,
        "pre_hook_us": pre,
        "post_hook_us": post,
        "on_finish_us": finish,
        "total_us": round(pre + post + finish, 1),
        "misses": misses,
        "stored": stored,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cache_miss", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="measured misses (after 500 warm-up ones)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    gc.set_threshold(*GC_THRESHOLD)
    result = uvloop.run(measure(args.n))
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"cache miss, in process, mean of {result['n']}: pre_hook {result['pre_hook_us']} µs, post_hook "
            f"{result['post_hook_us']} µs (with the adapter's parse), on_finish {result['on_finish_us']} µs; "
            f"{result['misses']} misses, {result['stored']} stored"
        )


if __name__ == "__main__":
    main()
