"""Key selection: weighted random among the keys a model may use.

The candidate list and cumulative weights for each model are computed once and cached, so a
selection is one random draw and one bisect. A retry can exclude the keys that already failed it; a
request may narrow the choice to some key names (a virtual key's allowed_keys), filtered per request.
A key the provider refused (401/403) is set aside for every request for a cooldown
(`set_aside`), unless no other key is left: a revoked key must not take its weight's share of traffic.
With the provider's circuit breaker on (the default) that is the key's breaker (`health`,
runtime/core/health.py), which also skips keys that keep failing and publishes to the other workers;
with `load_balancing: "adaptive"` the choice among the usable keys is `health.choose`.
"""

from __future__ import annotations

import random
import time
from bisect import bisect_right
from collections.abc import Collection
from itertools import accumulate

from runtime.config.model import KeyConfig
from runtime.core.health import ProviderHealth, choose

# Providers that need no key (local servers, the mock) still go through selection with this one.
NO_KEY = KeyConfig(name="none", value="")


def _cumulative(keys: tuple[KeyConfig, ...]) -> tuple[float, ...]:
    """Running weight totals. A weight-0 key is never drawn beside a positive one (Go Bifrost's rule);
    when every candidate weighs 0 they share the traffic equally rather than all landing on the last."""
    if keys and not any(k.weight > 0 for k in keys):
        return tuple(float(i + 1) for i in range(len(keys)))
    return tuple(accumulate(k.weight for k in keys))


class KeySelector:
    __slots__ = ("_aside", "_cache", "_keys", "_random", "health")

    def __init__(
        self, keys: tuple[KeyConfig, ...], rng: random.Random | None = None, health: ProviderHealth | None = None
    ) -> None:
        self._keys = keys or (NO_KEY,)
        self._cache: dict[str, tuple[tuple[KeyConfig, ...], tuple[float, ...]]] = {}
        self._random = (rng or random.Random()).random
        self._aside: dict[str, float] = {}  # key name -> monotonic time until which it is set aside
        self.health = health  # the provider's breakers and statistics; None: weighted, no breakers

    def set_aside(self, key: KeyConfig, seconds: float) -> None:
        """Skip `key` for every request for `seconds` (while another key may serve): its breaker opens
        when the provider has breakers, else a plain cooldown here."""
        health = self.health
        if health is not None and health.breaking:
            health.trip_key(key.name, seconds)
            return
        self._aside[key.name] = time.monotonic() + seconds

    def aside(self) -> list[str]:
        """Names of the keys set aside now (for the admin API)."""
        now = time.monotonic()
        names = {name for name, until in self._aside.items() if until > now}
        health = self.health
        if health is not None and health.breaking:
            names.update(name for name, b in health.keys.items() if b.blocked())
        return sorted(names)

    def _healthy(self, keys: tuple[KeyConfig, ...]) -> tuple[KeyConfig, ...]:
        now = time.monotonic()
        aside = self._aside
        for name in [name for name, until in aside.items() if until <= now]:
            del aside[name]  # cooled down
        if not aside:
            return keys
        healthy = tuple(k for k in keys if k.name not in aside)
        return healthy or keys  # every key set aside: still try one rather than fail without trying

    def candidates(self, model: str) -> tuple[KeyConfig, ...]:
        return self._entry(model)[0]

    def _entry(self, model: str) -> tuple[tuple[KeyConfig, ...], tuple[float, ...]]:
        entry = self._cache.get(model)
        if entry is None:
            keys = tuple(k for k in self._keys if k.allows(model))
            entry = (keys, _cumulative(keys))
            if len(self._cache) < 10_000:  # model names come from clients: bound the cache
                self._cache[model] = entry
        return entry

    def select(
        self, model: str, exclude: Collection[KeyConfig] = (), only: frozenset[str] | None = None
    ) -> KeyConfig | None:
        """A key for `model`, none of `exclude` when another may serve; `only` (key names) narrows the
        choice for one request (a virtual key's allowed_keys): none of them serving the model is None."""
        keys, cumulative = self._entry(model)
        if only is not None:
            keys = tuple(k for k in keys if k.name in only)
            cumulative = _cumulative(keys)
        if not keys:
            return None
        if self._aside and len(keys) > 1:
            healthy = self._healthy(keys)
            if len(healthy) != len(keys):
                keys = healthy
                cumulative = _cumulative(keys)
        health = self.health
        if health is not None and health.tripped and len(keys) > 1:
            usable = health.usable_keys(keys)
            if len(usable) != len(keys):
                keys = usable
                cumulative = _cumulative(keys)
        if exclude and len(keys) > 1:
            remaining = tuple(k for k in keys if k not in exclude)
            if remaining and len(remaining) != len(keys):
                keys = remaining
                cumulative = _cumulative(keys)
        if len(keys) == 1:
            key = keys[0]
        elif health is not None and health.adaptive:
            key = choose(keys, [k.weight for k in keys], [health.keys.get(k.name) for k in keys], self._random)
        else:
            i = bisect_right(cumulative, self._random() * cumulative[-1])
            key = keys[min(i, len(keys) - 1)]
        if health is not None and health.tripped:
            health.admit_key(key.name)
        return key
