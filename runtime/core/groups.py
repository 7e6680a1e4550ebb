"""A model group's order of targets for one request: which target first, the rest as its fallbacks.

Built once per config (Router.build for every request, the governance plugin per virtual key for the
targets that key may use), read per request: `next_order()` is a few additions over the targets and a
tuple copy, no allocation beyond the returned list.

Strategy `weighted` is smooth weighted round-robin (nginx's upstream algorithm): over any run of
sum(weights) requests each target is first exactly in proportion to its weight, interleaved (3:1 gives
A A B A, not A A A B), so a light target is never starved and shares do not drift by chance as a random
draw does. Each worker keeps its own position; across workers the shares still hold.

Strategy `adaptive` draws the first target with runtime/core/health.py `choose()` (power of two choices by
weight, the lower latency / error cost wins, a floor share for every target) over each target's
provider+model statistics, given as `stats` (the router's; governance's string targets have none, so
they stay weighted).
Whatever chooses the first target, the others follow heaviest first, then the group's `fallbacks`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from runtime.core.health import choose

T = TypeVar("T")

WEIGHTED = "weighted"
ADAPTIVE = "adaptive"


class GroupPlan(Generic[T]):
    """The targets of one group (any type: `(handle, model)` for the router, `provider/model` strings for
    governance) with their weights, and for each possible first target the whole order."""

    __slots__ = ("_current", "_stats", "_targets", "_total", "_weights", "name", "orders", "strategy")

    def __init__(
        self,
        name: str,
        targets: Sequence[T],
        weights: Sequence[float],
        fallbacks: Sequence[T] = (),
        strategy: str = WEIGHTED,
        stats: Callable[[T], Any] | None = None,
    ) -> None:
        if not targets and not fallbacks:
            raise ValueError(f"group {name!r} has no target")
        self.name = name
        self.strategy = strategy
        heaviest = sorted(range(len(targets)), key=lambda j: -weights[j])  # stable: file order breaks ties
        if targets:
            self.orders: tuple[tuple[T, ...], ...] = tuple(
                (targets[i], *(targets[j] for j in heaviest if j != i), *fallbacks) for i in range(len(targets))
            )
        else:  # every target was filtered out (a virtual key's allow-list): the fallbacks alone, in order
            self.orders = (tuple(fallbacks),)
        self._weights = tuple(weights) if targets else (1.0,)
        self._total = sum(self._weights)
        self._current = [0.0] * len(self._weights)
        self._targets = tuple(targets)
        # target -> its health.Breaker (or None); only an adaptive group with targets uses it
        self._stats = stats if strategy == ADAPTIVE and len(targets) > 1 else None

    def next_order(self) -> list[T]:
        """The targets for the next request: the chosen one first."""
        return list(self.orders[self._pick()])

    def heaviest_order(self) -> tuple[T, ...]:
        """The order without a choice (heaviest first): a group named as a fallback."""
        best = max(range(len(self._weights)), key=lambda i: self._weights[i])
        return self.orders[best]

    def _pick(self) -> int:
        # Smooth weighted round-robin. No await between read and write: safe on the event loop.
        stats = self._stats
        if stats is not None:  # adaptive: by the targets' statistics (runtime/core/health.py)
            return choose(range(len(self._targets)), self._weights, [stats(t) for t in self._targets])
        current = self._current
        if len(current) == 1:
            return 0
        best = 0
        for i, weight in enumerate(self._weights):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= self._total
        return best
