"""Run the gateway: uvloop, one or more worker processes sharing the port, signals and drain.

One worker serves in this process. Several workers are child processes that each bind the same
address with SO_REUSEPORT (the kernel spreads connections); this process then only supervises:
it forwards SIGTERM/SIGINT, restarts a worker that dies unexpectedly, and exits with the workers'
status. On a stop signal a worker stops accepting, lets in-flight requests and streams finish up to
`GatewayConfig.shutdown_grace_s` (client.shutdown_grace_in_seconds), ends the streams still running with
an error event, drains the request log, and exits 0 (runtime/http/drain.py has the order and bounds).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
import sys
import time

from aiohttp import web

from runtime.app import create_app
from runtime.config.model import GatewayConfig
from runtime.http import drain

log = logging.getLogger("bifrost")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # Windows: the default loop
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def serve(config: GatewayConfig, reuse_port: bool = False) -> None:
    """Serve until SIGTERM/SIGINT, then drain. Usable from tests and embedders."""
    app = create_app(config)
    # aiohttp's own shutdown wait gets only the short bound: the grace is spent once, by drain.stop.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=drain.CUT_S)
    await runner.setup()
    site = web.TCPSite(
        runner, config.host, config.port, reuse_port=reuse_port or None, backlog=config.tuning.listen_backlog
    )
    await site.start()
    addresses = [f"http://{a[0]}:{a[1]}" for a in runner.addresses if isinstance(a, tuple)]
    log.info("worker %d listening on %s", os.getpid(), ", ".join(addresses))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    # Start-up allocated long-lived objects (routes, config, modules): keep them out of GC scans so
    # full collections under load stay short.
    gc.collect()
    gc.freeze()
    threshold = os.environ.get("BIFROST_GC_THRESHOLD")
    if threshold:
        gc.set_threshold(*(int(x) for x in threshold.split(",")))
    try:
        await stop.wait()
        log.info("worker %d stopping: draining in-flight requests (up to %gs)", os.getpid(), config.shutdown_grace_s)
    finally:
        await drain.stop(runner, app[drain.DRAIN])
        log.info("worker %d stopped", os.getpid())


def _worker_main(config: GatewayConfig) -> None:
    _configure_logging(config.log_level)
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(serve(config, reuse_port=True))


def run(config: GatewayConfig) -> int:
    """Serve with `config.workers` processes; returns the exit status."""
    _configure_logging(config.log_level)
    if config.workers <= 1:
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            runner.run(serve(config))
        return 0
    return _supervise(config)


def _supervise(config: GatewayConfig) -> int:
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    mp = multiprocessing.get_context(method)
    workers: list[multiprocessing.process.BaseProcess] = []
    stopping = False

    def start_worker() -> multiprocessing.process.BaseProcess:
        proc = mp.Process(target=_worker_main, args=(config,), name="bifrost-worker", daemon=False)
        proc.start()
        return proc

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in workers:
            if proc.is_alive() and proc.pid:
                os.kill(proc.pid, signal.SIGTERM)

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    workers.extend(start_worker() for _ in range(config.workers))
    restarts: list[float] = []
    while True:
        for i, proc in enumerate(workers):
            if proc.is_alive() or stopping:
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60]
            if len(restarts) >= 5 * config.workers:
                log.error("workers keep dying (last exit code %s); stopping", proc.exitcode)
                on_signal(signal.SIGTERM, None)
                break
            log.warning("worker %s exited with %s; starting a new one", proc.pid, proc.exitcode)
            restarts.append(now)
            workers[i] = start_worker()
        if stopping and not any(p.is_alive() for p in workers):
            break
        time.sleep(0.2)
    codes = [p.exitcode or 0 for p in workers]
    return 0 if all(c == 0 for c in codes) else 1
