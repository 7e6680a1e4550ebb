"""The cache's counters: what /metrics, the admin API and the UI report. Plain integers and floats
bumped on the request path (no locks: one event loop per worker)."""

from __future__ import annotations

from dataclasses import dataclass, field

# The lookup modes, as in the `x-bf-cache` answer header (hit-direct, hit-semantic).
MODES = ("direct", "semantic")


@dataclass(slots=True)
class CacheCounters:
    requests: int = 0  # requests that consulted the cache (they carried a cache key)
    hits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODES, 0))
    misses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODES, 0))
    stored: int = 0  # answers written to the store
    not_stored: int = 0  # misses whose answer was not stored (an error, a cut stream, no-store, too big)
    coalesced: int = 0  # requests that waited for an identical request's upstream call instead of making one
    saved_cost: float = 0.0  # dollars the hits would have cost (their entries' cost)
    saved_prompt_tokens: int = 0
    saved_completion_tokens: int = 0
    saved_upstream_ms: float = 0.0  # provider time the hits did not wait for
    lookup_seconds_sum: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MODES, 0.0))
    lookup_count: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODES, 0))
    embedding_errors: int = 0  # semantic lookups skipped because the embedding call failed

    def hit_rate(self) -> float:
        return sum(self.hits.values()) / self.requests if self.requests else 0.0
