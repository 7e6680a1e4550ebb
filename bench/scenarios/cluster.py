"""``cluster``: N gateway instances behind nginx (issue 14) — 1 vs 2 instances, embedded stores vs
PostgreSQL + Redis, and how throughput scales from 1 to 2.

Layout. Each instance is one process (``--workers 1``, profile ``cost``) pinned to its own CPU with
``taskset`` (instance i -> CPU i); nginx runs the repository's ``packaging/cluster/nginx.conf`` (the file
users copy; only the server list and the listen line are filled in, as in tests/harness/nginx.py).
nginx, PostgreSQL, Redis and the load generator are NOT pinned: they float over every CPU (the mock
provider stays on the bench CPU, as in every scenario). On a 2-CPU machine that means the second
instance shares its core with all of them, so "2 instances" is not "twice the hardware": the scaling
figure says what a second instance buys on the same two cores, not what a second machine would.

Cells, each a closed loop of CONCURRENCY connections through nginx against a 0 ms mock (the gateway,
nginx and the stores are all that is measured), every request presenting a virtual key with a rate
limit far above the load (so the shared-state counters are exercised, nothing is refused):

    stores=embedded  config.json + logs.db + state.db in each instance's app dir (each instance counts
                     its own rate limit: what cluster mode exists to fix)
    stores=cluster   config_store + logs_store on PostgreSQL (a fresh database per cell), shared_state on
                     Redis: one config, one log, one rate-limit counter for every instance

Every cell runs ROUNDS times, the rounds in alternating order (a neighbour's burst lands on different
cells each round). Reported per cell and round: throughput, p50/p99, errors; derived, from each cell's
best round (the least disturbed): the 2/1 throughput ratio per store set and the cluster/embedded ratio
per instance count; for the PostgreSQL cells, the request-log rows the instances
wrote during the cell (after a graceful stop flushes them), i.e. the log store's sustained write rate at
that load. The real servers come from the test harness (tests/harness/: Debian's postgresql,
redis-server and nginx in temp dirs on loopback).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import control, machine
from bench.loadgen.driver import LoadSpec, run_load
from bench.loadgen.payloads import ENDPOINTS, request_body
from bench.mock_responses import MockSettings
from bench.mockproc import REPO_ROOT, MockProcess, child_env
from bench.scenarios.common import Context, log, mock, ratio, save
from bench.stats import summarize

NAME = "cluster"
VIRTUAL_KEY = "sk-bf-bench-cluster-not-a-secret"  # made up; exists only in the bench's temp config
CONCURRENCY = 32
ROUNDS = 2  # every cell twice, in alternating order; derived figures use each cell's best round
SMOKE_CONCURRENCY = 4
STORE_SETS = ("embedded", "cluster")
INSTANCE_COUNTS = (1, 2)
START_TIMEOUT_S = 90.0

# The harness's server starters (real Debian servers in temp dirs): the bench reuses them rather than
# carrying a second copy. They report a missing package with pytest's `fail`, an exception we catch.
_TESTS = os.path.join(REPO_ROOT, "tests")


def _harness() -> Any:
    if _TESTS not in sys.path:
        sys.path.insert(0, _TESTS)
    import harness.nginx as nginx_mod
    import harness.postgres as pg_mod
    import harness.redis as redis_mod

    return nginx_mod, pg_mod, redis_mod


def _unpinned() -> None:
    """preexec: a server the bench starts may use every CPU (this process is pinned to the bench CPUs)."""
    os.sched_setaffinity(0, range(os.cpu_count() or 1))


def gateway_config(mock_origin: str, stores: dict[str, Any] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "providers": {
            "openai": {
                "keys": [{"name": "bench", "value": "sk-bench-fake", "models": [], "weight": 1.0}],
                "network_config": {
                    "base_url": mock_origin,
                    "default_request_timeout_in_seconds": 30,
                    "max_retries": 0,
                },
            }
        },
        "client": {"enable_logging": True, "enforce_auth_on_inference": True},
        "governance": {
            "rate_limits": [{"id": "bench-rl", "request_max_limit": 10**9, "request_reset_duration": "1m"}],
            "virtual_keys": [
                {
                    "id": "bench-vk",
                    "name": "bench",
                    "value": VIRTUAL_KEY,
                    "is_active": True,
                    "rate_limit_id": "bench-rl",
                }
            ],
        },
    }
    doc.update(stores or {})
    return doc


class Instances:
    """N gateway processes, instance i pinned to CPU i (mod the CPU count), same config file."""

    def __init__(self, root: Path, config: dict[str, Any], n: int) -> None:
        self.root = root
        self.config = config
        self.n = n
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        self.logs: list[Any] = []

    def start(self) -> None:
        cpus = sorted(os.sched_getaffinity(0) | set(range(os.cpu_count() or 1)))
        taskset = shutil.which("taskset")
        env = child_env()
        for key in [k for k in env if k.startswith("BIFROST_")]:
            del env[key]
        for i in range(self.n):
            app = self.root / f"instance-{i}"
            app.mkdir(parents=True)
            (app / "config.json").write_text(json.dumps(self.config, indent=2))
            port = control.free_port()
            cmd = [sys.executable, "-m", "bifrost_cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
            cmd += ["--app-dir", str(app), "--workers", "1", "--profile", "cost", "--log-level", "warning"]
            if taskset:
                cmd = [taskset, "-c", str(cpus[i % len(cpus)]), *cmd]
            out = (app / "gateway.log").open("ab")
            self.logs.append(out)
            self.procs.append(
                subprocess.Popen(
                    cmd, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
            self.ports.append(port)
        for port, proc in zip(self.ports, self.procs, strict=True):
            control.wait_ready(port, "/health", START_TIMEOUT_S, proc)

    def stop(self) -> list[int | None]:
        """SIGTERM each (drain + log flush), SIGKILL after 30 s; the exit codes."""
        codes: list[int | None] = []
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 15)
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                codes.append(proc.wait())
        for out in self.logs:
            out.close()
        self.logs = []
        return codes

    def log_tail(self) -> str:
        parts = []
        for i in range(self.n):
            path = self.root / f"instance-{i}" / "gateway.log"
            if path.exists():
                parts.append(f"instance {i}: {path.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)


@contextlib.contextmanager
def _servers(ctx: Context, root: Path) -> Iterator[tuple[Any, Any] | None]:
    """(PostgreSQL, Redis) for the cluster cells, or None (recorded in ctx.skipped) when unavailable."""
    _, pg_mod, redis_mod = _harness()
    pg = redis = None
    pg_dir: Path | None = None
    try:
        # Started unpinned: preexec is not exposed by the harness, so widen our own affinity around the
        # start (children inherit it), then narrow it back.
        mine = os.sched_getaffinity(0)
        _unpinned()
        try:
            pg_dir = pg_mod.server_directory()  # the server user must reach it (see the harness)
            pg = pg_mod.start_postgres(pg_dir)
            redis = redis_mod.start_redis(root / "redis")
        finally:
            os.sched_setaffinity(0, mine)
        yield pg, redis
    except BaseException as exc:  # pytest's Failed (a missing package) is a BaseException
        if isinstance(exc, KeyboardInterrupt) or (pg is not None and redis is not None):
            raise
        ctx.skipped["stores=cluster"] = str(exc).splitlines()[0]
        log(f"SKIP stores=cluster: {exc}")
        yield None
    finally:
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()
        if pg_dir is not None:
            shutil.rmtree(pg_dir, ignore_errors=True)


def _log_rows(pg: Any, database: str, since_ms: int) -> int | None:
    """Request-log rows of requests started at or after `since_ms` in the PostgreSQL log store's table
    (None when the table is not there)."""
    try:
        return int(pg.psql(f"SELECT count(*) FROM bifrost_logs WHERE ts_ms >= {int(since_ms)}", database) or 0)
    except RuntimeError:
        return None


def _pressure_pct(psi0: float | None, psi1: float | None, wall_s: float) -> float | None:
    """Share of the cell's wall time in which some task waited for a CPU (Linux PSI), as in every scenario."""
    if psi0 is None or psi1 is None or not wall_s:
        return None
    return round((psi1 - psi0) / wall_s * 100.0, 1)


def _cell(
    ctx: Context, root: Path, m: MockProcess, stores: str, n: int, servers: tuple[Any, Any] | None
) -> dict[str, Any] | None:
    nginx_mod = _harness()[0]
    blocks: dict[str, Any] | None = None
    database = None
    if stores == "cluster":
        if servers is None:
            return None
        pg, redis = servers
        database = pg.new_database("bench")
        redis.command("FLUSHALL")
        conf = {"enabled": True, "type": "postgres", "config": pg.settings(database)}
        blocks = {
            "config_store": conf,
            "logs_store": conf,
            "shared_state": {"type": "redis", "config": {"addr": f"127.0.0.1:{redis.port}"}},
        }
    cell_dir = root / f"{stores}-{n}"
    instances = Instances(cell_dir, gateway_config(m.origin, blocks), n)
    nginx = None
    mine = os.sched_getaffinity(0)
    try:
        _unpinned()
        try:
            instances.start()
            nginx = nginx_mod.start_nginx(cell_dir / "nginx", instances.ports)
        finally:
            os.sched_setaffinity(0, mine)
        concurrency = SMOKE_CONCURRENCY if ctx.smoke else CONCURRENCY
        spec = LoadSpec(
            port=nginx.port,
            body=request_body(ENDPOINTS["chat"], "openai/gpt-4o-mini"),
            endpoint="chat",
            mode="closed",
            concurrency=concurrency,
            duration=ctx.dur(8.0, 1.5),
            processes=ctx.processes,
            timeout=10.0,
            cpus=None,  # the generator floats too (see the module docstring)
            headers={"Authorization": f"Bearer {VIRTUAL_KEY}"},
        )
        run_load(dataclasses.replace(spec, duration=0.5 if ctx.smoke else 1.5))  # warm-up, not recorded
        measured_from_ms = int(time.time() * 1000)
        psi0, load0 = machine.cpu_pressure_s(), machine.loadavg()
        res = run_load(spec)
        psi1 = machine.cpu_pressure_s()
        out = summarize(res)
        codes = instances.stop()  # graceful: the log writers flush before the row count below
        out.update(
            target=f"bifrost x{n} ({stores})",
            stores=stores,
            instances=n,
            concurrency=concurrency,
            exit_codes=codes,
            loadavg_before=load0,
            cpu_pressure_pct=_pressure_pct(psi0, psi1, res.wall_s),
        )
        if servers and database:
            # After the graceful stop every row is written: the measured window's rows vs its answers.
            rows = _log_rows(servers[0], database, measured_from_ms)
            out["pg_log_rows_written"] = rows
            out["pg_log_rows_per_s"] = round(rows / res.wall_s, 1) if rows is not None and res.wall_s else None
        lat = out["latency_ms"]
        log(
            f"cluster {stores:8s} x{n}: ok={out['ok']}/{out['scheduled']} thr={out['throughput_rps']}/s "
            f"p50={lat['p50']} p99={lat['p99']} ms errors={out['errors']} cpu_pressure={out['cpu_pressure_pct']}% "
            f"pg_rows/s={out.get('pg_log_rows_per_s')}"
        )
        return out
    except Exception as exc:
        ctx.skipped[f"stores={stores} x{n}"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log(f"cluster {stores} x{n} failed: {exc}\n{instances.log_tail()}")
        return None
    finally:
        instances.stop()
        if nginx is not None:
            nginx.stop()


def run(ctx: Context) -> str:
    cells: list[dict[str, Any]] = []
    root = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        combos = [(stores, n) for stores in STORE_SETS for n in INSTANCE_COUNTS]
        rounds = 1 if ctx.smoke else ROUNDS
        with mock(MockSettings(latency_ms=0.0)) as m, _servers(ctx, root) as servers:
            for r in range(rounds):
                # Alternate the order: a neighbour's burst then hits different cells in different rounds.
                for stores, n in combos if r % 2 == 0 else reversed(combos):
                    cell = _cell(ctx, root / f"round{r}", m, stores, n, servers)
                    if cell is not None:
                        cell["round"] = r
                        cells.append(cell)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    derived: dict[str, Any] = {}

    def thr(stores: str, n: int) -> float | None:
        """The best round's throughput: on a shared machine the least disturbed measurement of the cell."""
        found = [c["throughput_rps"] for c in cells if c["stores"] == stores and c["instances"] == n]
        return max(found) if found else None

    for stores, n in [(s, k) for s in STORE_SETS for k in INSTANCE_COUNTS]:
        runs = [c for c in cells if c["stores"] == stores and c["instances"] == n]
        if runs:
            best = max(runs, key=lambda c: c["throughput_rps"])
            derived[f"{stores}_x{n}"] = {
                "throughput_rps_best": best["throughput_rps"],
                "throughput_rps_rounds": [c["throughput_rps"] for c in runs],
                "p50_ms": best["latency_ms"]["p50"],
                "p99_ms": best["latency_ms"]["p99"],
                "pg_log_rows_per_s": best.get("pg_log_rows_per_s"),
            }

    for stores in STORE_SETS:
        derived[f"scaling_1_to_2_{stores}"] = ratio(thr(stores, 2), thr(stores, 1))
    for n in INSTANCE_COUNTS:
        derived[f"cluster_over_embedded_x{n}"] = ratio(thr("cluster", n), thr("embedded", n))
    log(f"cluster: {derived}")
    return save(
        ctx,
        NAME,
        {
            "mock_latency_ms": 0,
            "concurrency": SMOKE_CONCURRENCY if ctx.smoke else CONCURRENCY,
            "cell_duration_s": ctx.dur(8.0, 1.5),
            "rounds": 1 if ctx.smoke else ROUNDS,
            "workers_per_instance": 1,
            "profile": "cost",
            "pinning": "instance i on CPU i; nginx, PostgreSQL, Redis, load generator unpinned; mock on the bench CPU",
            "cpus": os.cpu_count(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        cells,
        derived,
    )
