"""The response cache's /metrics families (issue 12), built at scrape time; none when caching is off.

Counters are every worker's added up (each worker publishes its CacheCounters with its other numbers,
runtime/http/metrics.py); entries, bytes and evictions are the store's, read from the worker that
answers the scrape (the store is what the workers share, not a per-worker tally).

    bifrost_cache_requests_total                      requests that consulted the cache
    bifrost_cache_hits_total{mode}                    mode: direct | semantic
    bifrost_cache_misses_total{mode}
    bifrost_cache_saved_cost_dollars_total            what the hits would have cost
    bifrost_cache_saved_tokens_total{kind}            kind: prompt | completion
    bifrost_cache_saved_upstream_seconds_total        provider time the hits did not wait for
    bifrost_cache_coalesced_total                     requests that shared an identical request's call
    bifrost_cache_stored_total / _not_stored_total    misses whose answer was (not) stored
    bifrost_cache_lookup_seconds_sum / _count{mode}   time spent looking up (embedding call excluded)
    bifrost_cache_entries / bifrost_cache_bytes       gauges
    bifrost_cache_evicted_total / _expired_total      entries dropped for the caps / for their TTL
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily

from runtime.cache.stats import MODES


def families(counters: dict[str, Any], plugin: Any) -> Iterator[Metric]:
    c = counters
    yield CounterMetricFamily(
        "bifrost_cache_requests", "Requests that consulted the response cache", value=c["requests"]
    )
    for name, doc in (("hits", "Requests answered from the cache"), ("misses", "Cache lookups that found nothing")):
        family = CounterMetricFamily(f"bifrost_cache_{name}", f"{doc}, by lookup mode", labels=["mode"])
        for mode in MODES:
            family.add_metric([mode], c[name].get(mode, 0))
        yield family
    yield CounterMetricFamily(
        "bifrost_cache_saved_cost_dollars", "Dollars the cache hits would have cost upstream", value=c["saved_cost"]
    )
    tokens = CounterMetricFamily("bifrost_cache_saved_tokens", "Tokens the cache hits did not spend", labels=["kind"])
    tokens.add_metric(["prompt"], c["saved_prompt_tokens"])
    tokens.add_metric(["completion"], c["saved_completion_tokens"])
    yield tokens
    yield CounterMetricFamily(
        "bifrost_cache_saved_upstream_seconds",
        "Provider time the cache hits did not wait for",
        value=c["saved_upstream_ms"] / 1000,
    )
    yield CounterMetricFamily(
        "bifrost_cache_coalesced",
        "Requests that waited for an identical request's upstream call instead of making one",
        value=c["coalesced"],
    )
    yield CounterMetricFamily("bifrost_cache_stored", "Answers written to the cache", value=c["stored"])
    yield CounterMetricFamily(
        "bifrost_cache_not_stored",
        "Misses whose answer was not stored (an error, a cut stream, no-store, too big)",
        value=c["not_stored"],
    )
    # A summary without quantiles: _sum and _count, so rate(sum) / rate(count) is the average lookup time.
    lookup = SummaryMetricFamily(
        "bifrost_cache_lookup_seconds", "Time spent in cache lookups (embedding call excluded)", labels=["mode"]
    )
    for mode in MODES:
        lookup.add_metric([mode], c["lookup_count"].get(mode, 0), c["lookup_seconds_sum"].get(mode, 0.0))
    yield lookup
    stats = plugin.store.stats()
    yield GaugeMetricFamily("bifrost_cache_entries", "Entries in the cache store", value=stats.entries)
    yield GaugeMetricFamily("bifrost_cache_bytes", "Bytes the cache entries count against the cap", value=stats.bytes)
    yield CounterMetricFamily(
        "bifrost_cache_evicted", "Entries dropped to stay within the size caps", value=stats.evicted
    )
    yield CounterMetricFamily("bifrost_cache_expired", "Entries dropped because their TTL passed", value=stats.expired)
