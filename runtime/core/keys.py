"""Key selection: weighted random among the keys a model may use.

The candidate list and cumulative weights for each model are computed once and cached, so a
selection is one random draw and one bisect. A retry can exclude the key that just failed; a request
may narrow the choice to some key names (a virtual key's allowed_keys), filtered per request.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from itertools import accumulate

from runtime.config.model import KeyConfig

# Providers that need no key (local servers, the mock) still go through selection with this one.
NO_KEY = KeyConfig(name="none", value="")


def _cumulative(keys: tuple[KeyConfig, ...]) -> tuple[float, ...]:
    """Running weight totals. A weight-0 key is never drawn beside a positive one (Go Bifrost's rule);
    when every candidate weighs 0 they share the traffic equally rather than all landing on the last."""
    if keys and not any(k.weight > 0 for k in keys):
        return tuple(float(i + 1) for i in range(len(keys)))
    return tuple(accumulate(k.weight for k in keys))


class KeySelector:
    __slots__ = ("_cache", "_keys", "_random")

    def __init__(self, keys: tuple[KeyConfig, ...], rng: random.Random | None = None) -> None:
        self._keys = keys or (NO_KEY,)
        self._cache: dict[str, tuple[tuple[KeyConfig, ...], tuple[float, ...]]] = {}
        self._random = (rng or random.Random()).random

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
        self, model: str, exclude: KeyConfig | None = None, only: frozenset[str] | None = None
    ) -> KeyConfig | None:
        """A key for `model`, not `exclude` when another may serve; `only` (key names) narrows the choice
        for one request (a virtual key's allowed_keys): none of them serving the model is None."""
        keys, cumulative = self._entry(model)
        if only is not None:
            keys = tuple(k for k in keys if k.name in only)
            cumulative = _cumulative(keys)
        if not keys:
            return None
        if exclude is not None and len(keys) > 1 and exclude in keys:
            keys = tuple(k for k in keys if k is not exclude)
            cumulative = _cumulative(keys)
        if len(keys) == 1:
            return keys[0]
        i = bisect_right(cumulative, self._random() * cumulative[-1])
        return keys[min(i, len(keys) - 1)]
