"""The breaker families of /metrics (runtime/core/health.py), merged over workers like the rest.

    bifrost_breaker_state{provider,target,kind="key|model"}    0 closed, 1 half-open, 2 open (the worst
                                                               of the live workers)
    bifrost_breaker_opens_total{provider,target,kind}          times a breaker opened (all workers)
    bifrost_target_latency_ewma_seconds{provider,model}        latency EWMA of successful attempts (mean
                                                               of the live workers that have one)

Cardinality is bounded: keys come from the config and models per provider are capped
(`health.MAX_TARGETS`). A provider without breakers or statistics has no series.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from runtime.core.text import repair

Row = tuple[str, str, str, int, int, float | None]  # provider, kind, target, state, opens, latency EWMA


def snapshot(handles: Iterable[Any]) -> list[Row]:
    """This worker's breakers, as JSON-friendly rows (for the other workers' scrapes)."""
    rows: list[Row] = []
    for handle in handles:
        health = handle.health
        if health is None:
            continue
        now = health.clock()
        for kind, table in (("key", health.keys), ("model", health.targets)):
            for name, breaker in table.items():
                # Model names come from clients: lone surrogates repaired, or the exposition cannot encode them.
                state = breaker.current(now)
                rows.append((handle.name, kind, repair(name), state, breaker.opens, breaker.latency_ewma))
    return rows


def merge(snapshots: Iterable[tuple[list[Any], bool]]) -> dict[tuple[str, str, str], list[Any]]:
    """(rows, alive) per worker -> {(provider, kind, target): [state, opens, latency sum, latency count]}."""
    out: dict[tuple[str, str, str], list[Any]] = {}
    for rows, alive in snapshots:
        for provider, kind, target, state, opens, ewma in rows:
            entry = out.setdefault((provider, kind, target), [0, 0, 0.0, 0])
            entry[1] += opens
            if alive:
                entry[0] = max(entry[0], state)
                if ewma is not None:
                    entry[2] += ewma
                    entry[3] += 1
    return out


def families(merged: dict[tuple[str, str, str], list[Any]]) -> Iterator[Metric]:
    labels = ["provider", "target", "kind"]
    state = GaugeMetricFamily("bifrost_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", labels=labels)
    opens = CounterMetricFamily("bifrost_breaker_opens", "Times a circuit breaker opened", labels=labels)
    latency = GaugeMetricFamily(
        "bifrost_target_latency_ewma_seconds",
        "Latency EWMA of successful attempts (time to the answer, or a stream's first event)",
        labels=["provider", "model"],
    )
    for (provider, kind, target), (value, count, lat_sum, lat_n) in sorted(merged.items()):
        state.add_metric([provider, target, kind], value)
        opens.add_metric([provider, target, kind], count)
        if kind == "model" and lat_n:
            latency.add_metric([provider, target], lat_sum / lat_n)
    yield state
    yield opens
    yield latency
