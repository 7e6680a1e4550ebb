"""Run the gateway: uvloop, one or more worker processes sharing the port, signals and drain.

One worker serves in this process. Several workers are child processes that each bind the same
address with SO_REUSEPORT (the kernel spreads connections); this process then only supervises:
it forwards SIGTERM/SIGINT, restarts a worker that dies unexpectedly, and exits with the workers'
status. On a stop signal a worker stops accepting, lets in-flight requests and streams finish up to
`GatewayConfig.shutdown_grace_s` (client.shutdown_grace_in_seconds), ends the streams still running with
an error event, drains the request log, and exits 0 (runtime/http/drain.py has the order and bounds).

Before any worker starts, this process binds the address once, so a port in use (or any other bind
error) ends the start at once with one line (ListenError), and `--port 0` is resolved to the real port
that the banner shows and every worker binds. Workers start with `fork` on Linux and `spawn` elsewhere;
`BIFROST_MP_START=spawn` forces spawn (the config pickles).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

from runtime.app import create_app
from runtime.config.model import GatewayConfig
from runtime.http import drain
from runtime.http.body import BODY_READING, BodyReading
from runtime.http.protocol import HardenedAppRunner
from runtime.listen import ListenError, StartError, bind_sockets, bound_port
from runtime.stores import engines
from runtime.stores.config import ConfigStore

log = logging.getLogger("bifrost")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A worker that cannot bind exits with this code; the supervisor then stops instead of restarting it.
EXIT_CANNOT_LISTEN = 3
# Likewise a worker that cannot open its config store (PostgreSQL down for STORE_RETRY_S, a wrong key).
EXIT_CANNOT_START = 4
STORE_RETRY_S = 30.0  # how long start-up waits for a config store server that is down
STORE_RETRY_ENV = "BIFROST_STORE_RETRY_S"  # overrides it (seconds; 0: one attempt)
# Forces the worker start method ("spawn", "fork", "forkserver"); spawn is what macOS and Windows use.
START_METHOD_ENV = "BIFROST_MP_START"


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


def _store_retry_s() -> float:
    try:
        return max(0.0, float(os.environ.get(STORE_RETRY_ENV, STORE_RETRY_S)))
    except ValueError:
        return STORE_RETRY_S


async def open_config_store(config: GatewayConfig, retry_s: float | None = None) -> ConfigStore:
    """The config store `config` names, opened: the embedded one at once; a server that is down is retried
    for up to `retry_s` (default STORE_RETRY_S, env BIFROST_STORE_RETRY_S) with one log line per attempt.
    Raises StartError with the reason (never a secret)."""
    deadline = time.monotonic() + (_store_retry_s() if retry_s is None else retry_s)
    delay, attempt = 0.5, 0
    while True:
        attempt += 1
        try:
            return await engines.open_config_store(config)
        except Exception as exc:
            retryable = getattr(exc, "retryable", None)  # the server engines' open error (config_postgres)
            if retryable is None:
                raise
            left = deadline - time.monotonic()
            if not retryable or left <= 0:
                raise StartError(f"cannot open the config store: {exc}") from None
            log.warning("config store not reachable (attempt %d; retrying for %.0f s more): %s", attempt, left, exc)
            await asyncio.sleep(min(delay, max(left, 0.05)))
            delay = min(delay * 2, 5.0)


async def serve(config: GatewayConfig, reuse_port: bool = False, sockets: list[socket.socket] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain. Usable from tests and embedders.

    `sockets`: already bound listening sockets (run() binds before starting); else binds config.host/port
    here (raises ListenError) before the app starts anything. The config store is opened first (each worker
    its own): with PostgreSQL the config that runs is the database's document, not the file's.
    """
    # The loop's stop handlers go in first, before anything else runs on the loop: a stop signal that arrives
    # while the app starts then only sets `stop` (the start-up finishes or is abandoned, then we drain). The
    # worker's pre-loop handler (raise SystemExit) must never fire inside a start-up task: it would leave a
    # task holding SystemExit and print its traceback.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    if sockets is None:
        sockets = bind_sockets(
            config.host, config.port, backlog=config.tuning.listen_backlog, listen=True, reuse_port=reuse_port
        )
    store = await _unless_stopped(open_config_store(config), stop)
    if store is None:  # stopped while the config store was still being reached
        return
    config = store.current
    client = config.client
    app = create_app(config, config_store=store)
    app[BODY_READING] = BodyReading.from_client(client, config.workers)
    runner = HardenedAppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        # aiohttp's own shutdown wait gets only the short bound: the grace is spent once, by drain.stop.
        shutdown_timeout=drain.CUT_S,
        # Slow clients: an idle connection, and a request head that is not complete in time, are closed.
        keepalive_timeout=client.keepalive_idle_timeout_in_seconds,
        header_read_timeout=client.header_read_timeout_in_seconds,
    )
    await runner.setup()
    for sock in sockets:
        await web.SockSite(runner, sock, backlog=config.tuning.listen_backlog).start()
    addresses = [f"http://{a[0]}:{a[1]}" for a in runner.addresses if isinstance(a, tuple)]
    log.info("worker %d listening on %s", os.getpid(), ", ".join(addresses))
    # Start-up allocated long-lived objects (routes, config, modules): keep them out of GC scans so
    # full collections under load stay short.
    gc.collect()
    gc.freeze()
    # Collect the young generation every 20,000 allocations instead of 700, and the old one far more
    # rarely: under load the default thresholds run full collections of every live object often enough
    # to stall the loop for tens of ms at a time. Measured (`python -m bench frontier`): 4,000 -> 4,500
    # sustained RPS on one core. BIFROST_GC_THRESHOLD="g0,g1,g2" overrides it.
    threshold = os.environ.get("BIFROST_GC_THRESHOLD")
    gc.set_threshold(*(int(x) for x in threshold.split(",")) if threshold else GC_THRESHOLD)
    # A thread that holds the GIL (the request log's writer encoding a batch) keeps the loop from running for
    # up to the switch interval once the loop needs it: Python's default 5 ms became the c=1 tail. 0.5 ms
    # bounds that wait; the loop is the only thread that runs often, so the extra switches cost nothing.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        await stop.wait()
        log.info("worker %d stopping: draining in-flight requests (up to %gs)", os.getpid(), config.shutdown_grace_s)
    finally:
        await drain.stop(runner, app[drain.DRAIN])
        log.info("worker %d stopped", os.getpid())


GC_THRESHOLD = (20_000, 20, 100)
SWITCH_INTERVAL_S = 0.0005

_T = TypeVar("_T")


async def _unless_stopped(start: Coroutine[Any, Any, _T], stop: asyncio.Event) -> _T | None:
    """`start`'s result, or None (and `start` cancelled) if `stop` is set first."""
    task = asyncio.ensure_future(start)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


def _stop_before_serving(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _worker_main(config: GatewayConfig) -> None:
    # A forked worker inherits the supervisor's signal handlers. Until serve() installs the loop's own, a
    # stop signal (the supervisor forwards SIGTERM to workers that may still be starting) must end this
    # worker cleanly, not run the supervisor's handler here (it would signal its siblings and poll
    # processes that are not this one's children, and hang or exit 1).
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop_before_serving)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the supervisor across the fork
    _configure_logging(config.log_level)
    try:
        # Bound here, before the event loop and the app: a worker that cannot listen starts nothing.
        sockets = bind_sockets(
            config.host, config.port, backlog=config.tuning.listen_backlog, listen=True, reuse_port=True
        )
    except ListenError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(EXIT_CANNOT_LISTEN)
    try:
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            runner.run(serve(config, sockets=sockets))
    except StartError as exc:  # the config store: restarting the worker cannot help, stop (it says why)
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(EXIT_CANNOT_START)


def run(config: GatewayConfig, on_listening: Callable[[GatewayConfig], None] | None = None) -> int:
    """Serve with `config.workers` processes; returns the exit status.

    Binds first: raises ListenError (port in use, permission, unknown host) before anything starts, and
    StartError for an unusable BIFROST_MP_START. `on_listening(config)` is called once the address is
    bound, with `config.port` the real port (so `--port 0` shows the port it got).
    """
    _configure_logging(config.log_level)
    if config.workers > 1 and not hasattr(socket, "SO_REUSEPORT"):
        log.warning("this platform cannot share a port between processes (no SO_REUSEPORT); running 1 worker")
        config = dataclasses.replace(config, workers=1)
    backlog = config.tuning.listen_backlog
    if config.workers <= 1:
        sockets = bind_sockets(config.host, config.port, backlog=backlog, listen=True, reuse_port=False)
        config = dataclasses.replace(config, port=bound_port(sockets))
        if on_listening is not None:
            on_listening(config)
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            runner.run(serve(config, sockets=sockets))
        return 0
    method = _start_method()
    # The check: bind (no listen, no SO_REUSEPORT) so a port held by anyone, even another gateway's
    # SO_REUSEPORT workers, is refused now; port 0 becomes the port every worker then binds.
    probe = bind_sockets(config.host, config.port, backlog=backlog, listen=False, reuse_port=False)
    config = dataclasses.replace(config, port=bound_port(probe))
    for sock in probe:
        sock.close()
    if on_listening is not None:
        on_listening(config)
    return _supervise(config, method)


def _start_method() -> str:
    forced = os.environ.get(START_METHOD_ENV, "").strip().lower()
    if not forced:
        return "fork" if sys.platform.startswith("linux") else "spawn"
    methods = multiprocessing.get_all_start_methods()
    if forced not in methods:
        raise StartError(f"{START_METHOD_ENV}={forced!r} is not a start method here; use one of {', '.join(methods)}")
    return forced


def _supervise(config: GatewayConfig, method: str) -> int:
    # Any: typeshed's BaseContext (what get_context(str) returns) does not declare Process.
    mp: Any = multiprocessing.get_context(method)
    workers: list[multiprocessing.process.BaseProcess] = []
    stopping = False
    cannot_listen = False

    def start_worker() -> multiprocessing.process.BaseProcess:
        # Stop signals stay blocked across the fork: the child inherits the mask and unblocks only once its
        # own handler is in (_worker_main), so a SIGTERM forwarded at any moment of its start is held, never
        # run by the supervisor's handler it inherits (which swallowed it: a worker serving on, a hang).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            proc = mp.Process(target=_worker_main, args=(config,), name="bifrost-worker", daemon=False)
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return proc

    signalled: set[int] = set()

    def forward_stop() -> None:
        for proc in workers:
            if proc.pid and proc.pid not in signalled and proc.is_alive():
                signalled.add(proc.pid)
                os.kill(proc.pid, signal.SIGTERM)

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        forward_stop()

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    workers.extend(start_worker() for _ in range(config.workers))
    restarts: list[float] = []
    while True:
        for i, proc in enumerate(workers):
            if proc.is_alive() or stopping:
                continue
            if proc.exitcode in (EXIT_CANNOT_LISTEN, EXIT_CANNOT_START):  # restarting cannot help: stop
                if proc.exitcode == EXIT_CANNOT_LISTEN:
                    log.error("a worker could not listen on %s:%s; stopping", config.host, config.port)
                else:
                    log.error("a worker could not open the config store; stopping")
                cannot_listen = True
                on_signal(signal.SIGTERM, None)
                break
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60]
            if len(restarts) >= 5 * config.workers:
                log.error("workers keep dying (last exit code %s); stopping", proc.exitcode)
                on_signal(signal.SIGTERM, None)
                break
            log.warning("worker %s exited with %s; starting a new one", proc.pid, proc.exitcode)
            restarts.append(now)
            workers[i] = start_worker()
        if stopping:
            forward_stop()  # a signal that came while the workers were being started reaches them too
            if not any(p.is_alive() for p in workers):
                break
        time.sleep(0.2)
    codes = [p.exitcode or 0 for p in workers]
    return 0 if all(c == 0 for c in codes) and not cannot_listen else 1
