"""One worker process of the shared-state tests: its own event loop and its own store on a shared file.

    python shared_worker.py ENGINE LOCATION GO_FILE OP ARGS...     (LOCATION: a file, or redis://host:port/db)
        incr KEY N              N increments of 1; prints the last total seen
        reserve KEY N LIMIT     N reserve(1, LIMIT) calls; prints how many were granted
        subscribe CHANNEL N     prints each of N messages as it arrives (JSON lines)
        publish CHANNEL MSG...  publishes each MSG

It prints "ready" once its store is open, then waits for GO_FILE so that every process starts its
loop at the same moment (the test creates the file once all are ready).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from runtime.stores.engines import open_shared_state_engine


async def main(engine: str, location: str, go_file: str, op: str, *args: str) -> None:
    store = await open_shared_state_engine(engine, location)
    try:
        sub = await store.subscribe(args[0]) if op == "subscribe" else None
        print("ready", flush=True)
        go = Path(go_file)
        while not go.exists():
            await asyncio.sleep(0.001)
        if op == "incr":
            last = 0
            for _ in range(int(args[1])):
                last = await store.incr(args[0], 1)
            print(json.dumps(last), flush=True)
        elif op == "reserve":
            granted = 0
            for _ in range(int(args[1])):
                granted += await store.reserve(args[0], 1, int(args[2]))
            print(json.dumps(granted), flush=True)
        elif op == "subscribe":
            assert sub is not None
            count = int(args[1])
            async for message in sub:
                print(json.dumps(message), flush=True)
                count -= 1
                if count == 0:
                    break
        elif op == "publish":
            for message in args[1:]:
                await store.publish(args[0], message)
        else:
            raise SystemExit(f"unknown op {op!r}")
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
