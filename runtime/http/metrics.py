"""GET /metrics: Prometheus text format, built at scrape time from the metrics plugin's counters.

Several workers (`--workers N`): the kernel hands each scrape to any one worker, so every worker
writes its counters to `<app_dir>/metrics/<supervisor pid>/<worker pid>.json` once a second
(atomically) and the worker that answers a scrape adds up its own live numbers and the other
workers' files. Counters and histograms of a worker that died keep counting (as Prometheus'
multiprocess mode does); its gauges are dropped. Other workers' numbers are at most ~1 s old.
Directories of earlier runs (whose supervisor is gone) are removed at start-up.

Exposed families (all prefixed `bifrost_`): requests_total{provider,model,status},
request_duration_seconds{provider,model}, gateway_overhead_seconds{provider},
upstream_duration_seconds{provider}, tokens_total{provider,model,type}, retries_total{provider},
fallbacks_total{provider}, governance_spend_dollars_total{virtual_key},
governance_rejections_total{reason}, governance_budget_remaining_dollars{budget} and
governance_budget_limit_dollars{budget} (read from the ledger's shared counters at scrape time),
lane_in_flight / lane_queued / lane_concurrency{provider},
lane_rejected_total{provider}, requestlog_written_total, requestlog_dropped_total (rows never
written, any reason), requestlog_failed_total (of those, rows the database refused), requestlog_pending,
workers, event_loop_tasks{worker} (live asyncio tasks per worker pid, counted at scrape time),
guardrail_actions_total{rule,action,stage} and guardrail_errors_total{rule,error} (while
guardrails are configured, or once a rule acted), store_up{store} (1/0 per store present: config, logs,
shared_state, cache; the answering worker's view), breaker_state / breaker_opens_total{provider,target,kind} and
target_latency_ewma_seconds{provider,model} (runtime/http/metrics_health.py); and, only while
response caching is on, the cache_* families (runtime/http/metrics_cache.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from runtime.core.gateway import Gateway
from runtime.core.text import repair
from runtime.http import health, metrics_cache, metrics_health
from runtime.http.admin_governance_usage import budget_remaining, limits_of
from runtime.http.cache_view import cache_plugin, counters_snapshot, merge_counters
from runtime.http.keys import CONFIG, GATEWAY, LOG_WRITER
from runtime.plugins import metrics as m
from runtime.plugins.metrics import METRICS, MetricsPlugin
from runtime.stores.files import write_atomic
from runtime.stores.logs import LogWriter
from runtime.stores.status import DOWN

PUBLISH_INTERVAL_S = 1.0
HISTORY_INTERVAL_S = 5.0
HISTORY_POINTS = 720  # one hour at 5 s


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live_tasks() -> int:
    """Live asyncio tasks on this worker's loop; counted when a snapshot is taken (a scrape, or the
    once-a-second publish with several workers), never per request."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no running loop (a snapshot taken outside it)
        return 0


class WorkerMetrics:
    """This worker's numbers, and (with several workers) everyone's, merged."""

    def __init__(
        self, plugin: MetricsPlugin, gateway: Gateway, writer: LogWriter | None, shared_dir: Path | None
    ) -> None:
        self.plugin = plugin
        self.gateway = gateway
        self.writer = writer
        self.shared_dir = shared_dir
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_POINTS)

    # -- this worker ---------------------------------------------------------------------------------
    def local(self) -> dict[str, Any]:
        lanes = {
            name: [h.lane.in_flight, h.lane.queued, h.lane.concurrency, h.lane.dropped]
            for name, h in self.gateway.router.handles.items()
        }
        w = self.writer
        cache = cache_plugin(self.gateway)
        return {
            "pid": os.getpid(),
            "series": self.plugin.snapshot(),
            "lanes": lanes,
            "log": [w.written, w.dropped, w.pending, w.failed] if w is not None else [0, 0, 0, 0],
            "gov": {"spend": dict(self.plugin.spend), "rejections": dict(self.plugin.rejections)},
            "cache": None if cache is None else counters_snapshot(cache.counters),
            "guardrails": self.plugin.guardrail_snapshot(),
            "health": metrics_health.snapshot(self.gateway.router.handles.values()),
            "tasks": _live_tasks(),
        }

    def publish(self) -> None:
        if self.shared_dir is None:
            return
        self.shared_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.shared_dir / f"{os.getpid()}.json", json.dumps(self.local()))

    # -- everyone ------------------------------------------------------------------------------------
    def snapshots(self) -> list[tuple[dict[str, Any], bool]]:
        """(snapshot, alive) for every worker of this run; ours is live, not read from disk."""
        out = [(self.local(), True)]
        if self.shared_dir is None or not self.shared_dir.is_dir():
            return out
        me = os.getpid()
        for path in self.shared_dir.glob("*.json"):
            if not path.stem.isdigit() or int(path.stem) == me:
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # replaced while we read it: its next version comes within a second
            out.append((data, _alive(int(path.stem))))
        return out

    def merged(self) -> dict[str, Any]:
        series: dict[tuple[str, str, int], list[int]] = {}
        lanes: dict[str, list[int]] = {}
        log = [0, 0, 0, 0]
        workers = 0
        spend: dict[str, float] = {}
        rejections: dict[str, int] = {}
        cache: list[dict[str, Any]] = []
        health: list[tuple[list[Any], bool]] = []
        guard_actions: dict[tuple[str, ...], int] = {}
        guard_errors: dict[tuple[str, ...], int] = {}
        tasks: dict[str, int] = {}
        for snap, alive in self.snapshots():
            health.append((snap.get("health") or [], alive))
            guard = snap.get("guardrails") or {}  # absent: a worker of an older version
            for into, rows in ((guard_actions, guard.get("actions") or ()), (guard_errors, guard.get("errors") or ())):
                for *labels, n in rows:
                    into[tuple(labels)] = into.get(tuple(labels), 0) + n
            if snap.get("cache"):
                cache.append(snap["cache"])
            gov = snap.get("gov") or {}
            for vk, dollars in (gov.get("spend") or {}).items():
                spend[vk] = spend.get(vk, 0.0) + dollars
            for reason, n in (gov.get("rejections") or {}).items():
                rejections[reason] = rejections.get(reason, 0) + n
            for provider, model, status, values in snap["series"]:
                total = series.setdefault((provider, model, status), [0] * m.SERIES_LEN)
                for i, v in enumerate(values[: m.SERIES_LEN]):
                    total[i] += v
            log[0] += snap["log"][0]
            log[1] += snap["log"][1]
            log[3] += snap["log"][3] if len(snap["log"]) > 3 else 0  # a worker of an older version
            if alive:
                workers += 1
                if "tasks" in snap:  # absent: a worker of an older version
                    tasks[str(snap["pid"])] = snap["tasks"]
                log[2] += snap["log"][2]
                for name, values in snap["lanes"].items():
                    lane = lanes.setdefault(name, [0, 0, 0, 0])
                    for i, v in enumerate(values):
                        lane[i] += v
        return {
            "series": series,
            "lanes": lanes,
            "log": log,
            "workers": workers,
            "spend": spend,
            "rejections": rejections,
            # Counters of every worker that ran the cache (a stopped worker's keep counting), else None.
            "cache": merge_counters(cache) if cache else None,
            "health": metrics_health.merge(health),
            "guardrail_actions": guard_actions,
            "guardrail_errors": guard_errors,
            "tasks": tasks,
        }

    def sample_history(self) -> None:
        merged = self.merged()
        series = merged["series"].values()
        self.history.append(
            {
                "t": int(time.time() * 1000),
                "requests": sum(s[m.COUNT] for s in series),
                "log_written": merged["log"][0],
                "log_dropped": merged["log"][1],
                "log_pending": merged["log"][2],
                "log_failed": merged["log"][3],
                "in_flight": sum(v[0] for v in merged["lanes"].values()),
                "queued": sum(v[1] for v in merged["lanes"].values()),
            }
        )

    async def lifespan(self, _app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self._run(), name="bifrost-metrics")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(OSError):
            self.publish()  # final numbers, so counters of a stopped worker are not lost

    async def _run(self) -> None:
        last_history = 0.0
        while True:
            with contextlib.suppress(OSError):
                self.publish()
            now = time.monotonic()
            if now - last_history >= HISTORY_INTERVAL_S:
                last_history = now
                self.sample_history()
            await asyncio.sleep(PUBLISH_INTERVAL_S)


def _histogram(
    name: str,
    doc: str,
    labels: list[str],
    bounds: tuple[int, ...],
    rows: dict[tuple[str, ...], tuple[list[int], float]],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for label_values, (counts, total_us) in sorted(rows.items()):
        cumulative = 0
        buckets = []
        for bound, count in zip((*bounds, None), counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound is None else repr(bound / 1e6), cumulative))
        family.add_metric(list(label_values), buckets, total_us / 1e6)
    return family


def _add(
    rows: dict[tuple[str, ...], tuple[list[int], float]], key: tuple[str, ...], counts: list[int], total: int
) -> None:
    existing = rows.get(key)
    if existing is None:
        rows[key] = (list(counts), float(total))
    else:
        for i, c in enumerate(counts):
            existing[0][i] += c
        rows[key] = (existing[0], existing[1] + total)


class GatewayCollector:
    def __init__(self, worker: WorkerMetrics) -> None:
        self.worker = worker
        # {budget id: (max_limit, remaining)}, read from the ledger by the scrape handler just before
        # generate_latest (the reads are async; collect() is not).
        self.budgets: dict[str, tuple[float, float]] = {}
        self.stores: dict[str, int] = {}  # {store: 1 up (or not used yet) / 0 down}, this worker's view

    def collect(self) -> Iterator[Metric]:
        merged = self.worker.merged()
        requests = CounterMetricFamily("bifrost_requests", "Finished requests", labels=["provider", "model", "status"])
        tokens = CounterMetricFamily(
            "bifrost_tokens", "Tokens reported by providers", labels=["provider", "model", "type"]
        )
        retries: dict[str, int] = {}
        fallbacks: dict[str, int] = {}
        latency: dict[tuple[str, ...], tuple[list[int], float]] = {}
        overhead: dict[tuple[str, ...], tuple[list[int], float]] = {}
        upstream: dict[tuple[str, ...], tuple[list[int], float]] = {}
        nl, no, nu = len(m.LATENCY_BOUNDS_US) + 1, len(m.OVERHEAD_BOUNDS_US) + 1, len(m.UPSTREAM_BOUNDS_US) + 1
        for (provider, model, status), s in sorted(merged["series"].items()):
            retries[provider] = retries.get(provider, 0) + s[m.RETRIES]
            if status == 0:
                continue  # a retry-count row, not requests
            requests.add_metric([provider, model, str(status)], s[m.COUNT])
            _add(latency, (provider, model), s[m.LATENCY_BUCKETS : m.LATENCY_BUCKETS + nl], s[m.LATENCY_SUM])
            _add(overhead, (provider,), s[m.OVERHEAD_BUCKETS : m.OVERHEAD_BUCKETS + no], s[m.OVERHEAD_SUM])
            if s[m.UPSTREAM_COUNT]:
                _add(upstream, (provider,), s[m.UPSTREAM_BUCKETS : m.UPSTREAM_BUCKETS + nu], s[m.UPSTREAM_SUM])
            fallbacks[provider] = fallbacks.get(provider, 0) + s[m.FALLBACKS]
        token_rows: dict[tuple[str, str, str], int] = {}
        for (provider, model, _status), s in merged["series"].items():
            for kind, index in (("prompt", m.PROMPT), ("completion", m.COMPLETION)):
                if s[index]:
                    token_rows[(provider, model, kind)] = token_rows.get((provider, model, kind), 0) + s[index]
        for labels, value in sorted(token_rows.items()):
            tokens.add_metric(list(labels), value)
        yield requests
        yield _histogram(
            "bifrost_request_duration_seconds",
            "Total request latency as the client saw it",
            ["provider", "model"],
            m.LATENCY_BOUNDS_US,
            latency,
        )
        yield _histogram(
            "bifrost_gateway_overhead_seconds",
            "The gateway's own time per request: never a wait on the provider or the client"
            " (for streams: up to the headers plus each chunk's processing)",
            ["provider"],
            m.OVERHEAD_BOUNDS_US,
            overhead,
        )
        yield _histogram(
            "bifrost_upstream_duration_seconds",
            "Time waiting on the provider",
            ["provider"],
            m.UPSTREAM_BOUNDS_US,
            upstream,
        )
        yield tokens
        for name, doc, values in (
            ("bifrost_retries", "Retries after a failed attempt", retries),
            ("bifrost_fallbacks", "Requests answered by a fallback target", fallbacks),
        ):
            family = CounterMetricFamily(name, doc, labels=["provider"])
            for provider, value in sorted(values.items()):
                family.add_metric([provider], value)
            yield family
        lane_families: tuple[GaugeMetricFamily | CounterMetricFamily, ...] = (
            GaugeMetricFamily("bifrost_lane_in_flight", "Upstream requests in flight", labels=["provider"]),
            GaugeMetricFamily("bifrost_lane_queued", "Requests waiting for a lane slot", labels=["provider"]),
            GaugeMetricFamily("bifrost_lane_concurrency", "Lane slots (summed over workers)", labels=["provider"]),
            CounterMetricFamily(
                "bifrost_lane_rejected", "Requests refused because the lane queue was full", labels=["provider"]
            ),
        )
        for provider, values in sorted(merged["lanes"].items()):
            for lane_family, value in zip(lane_families, values, strict=True):
                lane_family.add_metric([provider], value)
        yield from lane_families
        written, dropped, pending, failed = merged["log"]
        yield CounterMetricFamily("bifrost_requestlog_written", "Request-log rows written", value=written)
        yield CounterMetricFamily(
            "bifrost_requestlog_dropped", "Request-log rows never written (buffer full or refused)", value=dropped
        )
        yield CounterMetricFamily(
            "bifrost_requestlog_failed", "Request-log rows dropped because the database refused them", value=failed
        )
        yield GaugeMetricFamily("bifrost_requestlog_pending", "Request-log rows waiting to be written", value=pending)
        yield GaugeMetricFamily("bifrost_workers", "Worker processes reporting", value=merged["workers"])
        loop_tasks = GaugeMetricFamily(
            "bifrost_event_loop_tasks", "Live asyncio tasks on each worker's event loop", labels=["worker"]
        )
        for pid, n in sorted(merged["tasks"].items()):
            loop_tasks.add_metric([pid], n)
        yield loop_tasks
        yield from self._governance(merged)
        yield from self._guardrails(merged)
        yield from metrics_health.families(merged["health"])
        if self.stores:
            up = GaugeMetricFamily("bifrost_store_up", "1: the store answered its last operation", labels=["store"])
            for name, value in sorted(self.stores.items()):
                up.add_metric([name], value)
            yield up
        cache = cache_plugin(self.worker.gateway)
        if cache is not None and merged["cache"] is not None:  # off: no cache series at all
            yield from metrics_cache.families(merged["cache"], cache)

    def _guardrails(self, merged: dict[str, Any]) -> Iterator[Metric]:
        """bifrost_guardrail_actions_total{rule,action,stage} and bifrost_guardrail_errors_total{rule,error}:
        present while guardrails are configured, or once a rule has acted (a rule removed since keeps its
        count until the restart, as counters do)."""
        config = getattr(self.worker.gateway.config, "guardrails", None)
        if not (merged["guardrail_actions"] or merged["guardrail_errors"] or getattr(config, "active", False)):
            return
        actions = CounterMetricFamily(
            "bifrost_guardrail_actions",
            "Guardrail rules that acted, by rule, action (block, redact, flag) and stage (input, output)",
            labels=["rule", "action", "stage"],
        )
        for labels, n in sorted(merged["guardrail_actions"].items()):
            actions.add_metric([repair(v) for v in labels], n)
        yield actions
        errors = CounterMetricFamily(
            "bifrost_guardrail_errors",
            "Remote guardrail detectors that failed (timeout, unavailable, ...), by rule; the failure policy applied",
            labels=["rule", "error"],
        )
        for labels, n in sorted(merged["guardrail_errors"].items()):
            errors.add_metric([repair(v) for v in labels], n)
        yield errors

    def _governance(self, merged: dict[str, Any]) -> Iterator[Metric]:
        spend = CounterMetricFamily(
            "bifrost_governance_spend_dollars",
            "Priced cost of governed requests, by virtual key",
            labels=["virtual_key"],
        )
        for vk, dollars in sorted(merged["spend"].items()):
            spend.add_metric([repair(vk)], dollars)
        yield spend
        rejections = CounterMetricFamily(
            "bifrost_governance_rejections", "Requests refused by governance, by reason", labels=["reason"]
        )
        for reason, n in sorted(merged["rejections"].items()):
            rejections.add_metric([reason], n)
        yield rejections
        remaining = GaugeMetricFamily(
            "bifrost_governance_budget_remaining_dollars",
            "Budget left in the current window (max_limit minus the shared counter's usage)",
            labels=["budget"],
        )
        limit = GaugeMetricFamily("bifrost_governance_budget_limit_dollars", "A budget's max_limit", labels=["budget"])
        for budget, (max_limit, left) in sorted(self.budgets.items()):
            remaining.add_metric([repair(budget)], left)
            limit.add_metric([repair(budget)], max_limit)
        yield remaining
        yield limit


WORKER_METRICS: web.AppKey[WorkerMetrics] = web.AppKey("worker_metrics")
_REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("metrics_registry")
_COLLECTOR: web.AppKey[GatewayCollector] = web.AppKey("metrics_collector")


def _shared_dir(app_dir: Path, workers: int) -> Path | None:
    if workers <= 1:
        return None
    root = Path(app_dir) / "metrics"
    with contextlib.suppress(OSError):
        for old in root.iterdir():
            if old.name.isdigit() and not _alive(int(old.name)):
                shutil.rmtree(old, ignore_errors=True)
    return root / str(os.getppid())  # one directory per run: the supervisor's pid


async def metrics(request: web.Request) -> web.Response:
    governance = request.app[GATEWAY].config.governance
    collector = request.app[_COLLECTOR]
    if governance is not None and governance.budgets:
        # Read here, bounded, not in collect(): the ledger's counters live in the shared-state store.
        collector.budgets = await budget_remaining(limits_of(request.app), dict(governance.budgets))
    else:
        collector.budgets = {}
    statuses = health.store_statuses(request.app)  # no I/O: what the stores' own operations saw
    collector.stores = {name: int(s.state != DOWN) for name, s in statuses.items() if s is not None}
    body = generate_latest(request.app[_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    plugin = app.get(METRICS)
    if plugin is None:
        return
    config = app[CONFIG]
    plugin.governed = any(getattr(p, "name", "") == "governance" for p in app[GATEWAY].hooks.plugins)
    worker = WorkerMetrics(plugin, app[GATEWAY], app.get(LOG_WRITER), _shared_dir(config.app_dir, config.workers))
    registry = CollectorRegistry(auto_describe=False)
    collector = app[_COLLECTOR] = GatewayCollector(worker)
    registry.register(collector)  # type: ignore[arg-type]
    app[WORKER_METRICS] = worker
    app[_REGISTRY] = registry
    app.cleanup_ctx.append(worker.lifespan)
    app.router.add_get("/metrics", metrics)
