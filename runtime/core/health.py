"""Health of what the gateway sends to: outcome statistics, circuit breakers and adaptive balancing.

One `Breaker` per provider key (provider, key name) and per target (provider, model), kept by the
provider's `ProviderHealth` (`ProviderHandle.health`; None when the provider has breakers off and weighted
balancing, so such a provider costs one `is None` test per attempt). Each breaker counts:

- consecutive failures, and the attempts and failures of a sliding window (`BUCKETS` time buckets over
  `window_seconds`: bounded memory whatever the traffic);
- the latency of successful attempts: an EWMA (shown and exported) and the window's mean (what the
  adaptive balancer compares, so old samples age out instead of weighing forever).

Only failures that say something about the target count (`TARGET_FAILURES`: timeout, connection,
rate_limit, server, runtime/core/failover.py `error_class`); `auth` counts against the key only; an
answer the provider gave (invalid, context_length, content_policy) is a success for health.

The state machine (`consecutive_failures`, `error_rate` over at least `min_requests`, `cooldown_seconds`):

    CLOSED --N failures in a row, or error rate over the window--> OPEN (skipped)
    OPEN --cooldown passed, at the next look--> HALF_OPEN: exactly one probe goes through, others skip
    HALF_OPEN --probe succeeded--> CLOSED (window cleared)
    HALF_OPEN --probe failed--> OPEN, the cooldown doubled (up to max_cooldown_seconds)

A probe that never reports back (its request was cancelled) frees the probe slot after one cooldown.
When every candidate is open, the caller still tries the least bad one (`least_bad`: soonest to cool
down, then lowest error rate) rather than failing without trying.

Transitions call `ProviderHealth.notify` (runtime/core/health_sync.py publishes them to the other
workers and instances, which `adopt` them); counting stays local: no store is touched per request.

The clock is injectable (`clock`, monotonic seconds) so the state machine is tested without waiting.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from runtime.config.model import BreakerConfig
from runtime.core.text import repair

CLOSED, HALF_OPEN, OPEN = 0, 1, 2
STATE_NAMES = ("closed", "half_open", "open")
TARGET_FAILURES = frozenset({"timeout", "connection", "rate_limit", "server"})
KEY_FAILURES = TARGET_FAILURES | {"auth"}
BUCKETS = 10  # time buckets per window
MAX_TARGETS = 256  # models tracked per provider: model names come from clients, so the set is bounded
EWMA_ALPHA = 0.3  # weight of a new latency sample in the EWMA
EXPLORE = 0.1  # the adaptive balancer's floor: this share of picks ignores the stats (a recovered target
# keeps getting samples, so it is never starved)
TOLERANCE = 1.5  # costs closer than this ratio (plus SLACK_S) count as equal: the configured weights decide
SLACK_S = 0.01  # ... and so do differences of a few milliseconds (noise, not a slower target)

Clock = Callable[[], float]
Notify = Callable[[str, str, str, int, float], None]  # provider, kind ("key"|"model"), target, state, seconds
T = TypeVar("T")


class Breaker:
    """One key's or target's statistics and circuit breaker. Not thread-safe: one event loop uses it."""

    __slots__ = (
        "_bad",
        "_lat",
        "_ok",
        "_stamp",
        "cfg",
        "clock",
        "cooldown",
        "failures",
        "latency_ewma",
        "open_until",
        "opens",
        "probe_until",
        "state",
    )

    def __init__(self, cfg: BreakerConfig, clock: Clock = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.state = CLOSED
        self.failures = 0  # in a row
        self.opens = 0  # times this breaker opened (here, not adopted)
        self.open_until = 0.0  # OPEN: when a probe may go
        self.probe_until = 0.0  # HALF_OPEN: a probe is out until then (0: none out)
        self.cooldown = cfg.cooldown_seconds
        self.latency_ewma: float | None = None
        self._ok = [0] * BUCKETS
        self._bad = [0] * BUCKETS
        self._lat = [0.0] * BUCKETS  # latency sum of the bucket's successes
        self._stamp = [-1] * BUCKETS  # which bucket number each slot holds

    # -- the sliding window --------------------------------------------------------------------------
    def _slot(self, now: float) -> int:
        number = int(now * BUCKETS / self.cfg.window_seconds)
        slot = number % BUCKETS
        if self._stamp[slot] != number:  # an old bucket: start it afresh
            self._stamp[slot] = number
            self._ok[slot] = self._bad[slot] = 0
            self._lat[slot] = 0.0
        return slot

    def window(self, now: float | None = None) -> tuple[int, int, float]:
        """(successes, failures, latency sum of the successes) over the window ending now."""
        now = self.clock() if now is None else now
        oldest = int(now * BUCKETS / self.cfg.window_seconds) - BUCKETS + 1
        ok = bad = 0
        lat = 0.0
        for slot in range(BUCKETS):
            if self._stamp[slot] >= oldest:
                ok += self._ok[slot]
                bad += self._bad[slot]
                lat += self._lat[slot]
        return ok, bad, lat

    def error_rate(self, now: float | None = None) -> float:
        ok, bad, _ = self.window(now)
        return bad / (ok + bad) if ok + bad else 0.0

    def _clear(self) -> None:
        self._stamp = [-1] * BUCKETS
        self.failures = 0

    # -- admission -----------------------------------------------------------------------------------
    def blocked(self, now: float | None = None) -> bool:
        """Whether this is skipped now, without taking the probe slot (see `admit`)."""
        if self.state == CLOSED:
            return False
        now = self.clock() if now is None else now
        if self.state == OPEN:
            return now < self.open_until
        return now < self.probe_until  # HALF_OPEN: skipped while its one probe is out

    def admit(self, now: float | None = None) -> int | None:
        """Let one request through if the state allows, taking the probe slot when one is due. Returns
        None when skipped, else the state a transition moved to (HALF_OPEN) or -1 for "no change"."""
        if self.state == CLOSED:
            return -1
        now = self.clock() if now is None else now
        if self.blocked(now):
            return None
        self.probe_until = now + self.cooldown  # this request is the probe
        if self.state == OPEN:
            self.state = HALF_OPEN
            return HALF_OPEN
        return -1

    # -- outcomes ------------------------------------------------------------------------------------
    def success(self, latency_s: float | None = None, now: float | None = None) -> int | None:
        """Record an answer; returns the new state when it changed (CLOSED after a probe)."""
        now = self.clock() if now is None else now
        number = int(now * BUCKETS / self.cfg.window_seconds)
        slot = number % BUCKETS
        if self._stamp[slot] != number:
            slot = self._slot(now)
        self._ok[slot] += 1
        if latency_s is not None:
            self._lat[slot] += latency_s
            ewma = self.latency_ewma
            self.latency_ewma = latency_s if ewma is None else ewma + EWMA_ALPHA * (latency_s - ewma)
        self.failures = 0
        if self.state != CLOSED:
            self.state = CLOSED
            self.cooldown = self.cfg.cooldown_seconds
            self.probe_until = 0.0
            self._clear()
            return CLOSED
        return None

    def failure(self, now: float | None = None) -> int | None:
        """Record a failure; returns OPEN when this opened the breaker."""
        now = self.clock() if now is None else now
        slot = self._slot(now)
        self._bad[slot] += 1
        self.failures += 1
        cfg = self.cfg
        if self.state == HALF_OPEN:  # the probe failed: open again, for longer
            return self._open(now, min(self.cooldown * 2, cfg.max_cooldown_seconds))
        if self.state == OPEN:
            return None  # a request let through while open (all candidates were open): already counted
        if self.failures >= cfg.consecutive_failures:
            return self._open(now, cfg.cooldown_seconds)
        ok, bad, _ = self.window(now)
        if ok + bad >= cfg.min_requests and bad >= cfg.error_rate * (ok + bad):
            return self._open(now, cfg.cooldown_seconds)
        return None

    def trip(self, seconds: float, now: float | None = None) -> int:
        """Open at once for `seconds` (a key the provider refused: 401/403)."""
        now = self.clock() if now is None else now
        return self._open(now, seconds)

    def _open(self, now: float, cooldown: float) -> int:
        self.state = OPEN
        self.cooldown = cooldown
        self.open_until = now + cooldown
        self.probe_until = 0.0
        self.opens += 1
        return OPEN

    def adopt(self, state: int, seconds: float, now: float | None = None) -> None:
        """Take a transition another worker published: OPEN for `seconds`; HALF_OPEN elsewhere means its
        probe is out there, so this worker keeps skipping for `seconds`; CLOSED starts afresh."""
        now = self.clock() if now is None else now
        if state == CLOSED:
            if self.state != CLOSED:
                self.state = CLOSED
                self.cooldown = self.cfg.cooldown_seconds
                self.probe_until = 0.0
                self._clear()
            return
        self.state = OPEN
        self.open_until = max(self.open_until, now + seconds) if state == HALF_OPEN else now + seconds
        if state == OPEN:
            self.cooldown = max(self.cfg.cooldown_seconds, min(seconds, self.cfg.max_cooldown_seconds))
        self.probe_until = 0.0

    # -- reading -------------------------------------------------------------------------------------
    def current(self, now: float | None = None) -> int:
        """The state as shown: an OPEN breaker whose cooldown passed is due a probe (HALF_OPEN)."""
        now = self.clock() if now is None else now
        if self.state == OPEN and now >= self.open_until:
            return HALF_OPEN
        return self.state

    def badness(self, now: float) -> tuple[float, float]:
        """Sort key for `least_bad`: time left until a probe may go, then the error rate."""
        wait = max(0.0, self.open_until - now) if self.state == OPEN else 0.0
        return wait, self.error_rate(now)

    def cost(self, now: float) -> float | None:
        """What the adaptive balancer compares: the window's mean latency over the success share; None
        without a recent success (no evidence: the configured weights decide)."""
        ok, bad, lat = self.window(now)
        if not ok:
            return None
        return (lat / ok) / (ok / (ok + bad))

    def view(self, now: float | None = None) -> dict[str, Any]:
        now = self.clock() if now is None else now
        ok, bad, _ = self.window(now)
        state = self.current(now)
        next_probe = None
        if state != CLOSED:
            # Seconds from now until a probe may go (0: due now, or out).
            next_probe = round(max(0.0, (self.open_until if self.state == OPEN else self.probe_until) - now), 3)
        return {
            "state": STATE_NAMES[state],
            "consecutive_failures": self.failures,
            "error_rate": round(bad / (ok + bad), 4) if ok + bad else 0.0,
            "requests_in_window": ok + bad,
            "latency_ewma_seconds": None if self.latency_ewma is None else round(self.latency_ewma, 6),
            "opens": self.opens,
            "next_probe_in_seconds": next_probe,
        }


class ProviderHealth:
    """The breakers of one provider: per key name and per model. `tripped` counts breakers not CLOSED, so
    the hot path tests one integer before looking any breaker up."""

    __slots__ = ("adaptive", "breaking", "cfg", "clock", "keys", "name", "notify", "targets", "tripped")

    def __init__(self, name: str, cfg: BreakerConfig, adaptive: bool = False, clock: Clock = time.monotonic) -> None:
        self.name = name
        self.cfg = cfg
        self.breaking = cfg.enabled  # whether open breakers skip (off: statistics only, for `adaptive`)
        self.adaptive = adaptive
        self.clock = clock
        self.keys: dict[str, Breaker] = {}
        self.targets: dict[str, Breaker] = {}
        self.tripped = 0
        self.notify: Notify | None = None

    def configure(self, cfg: BreakerConfig, adaptive: bool) -> None:
        """A config change kept this provider: keep the statistics, take the new thresholds."""
        self.cfg = cfg
        self.breaking = cfg.enabled
        self.adaptive = adaptive
        for breaker in (*self.keys.values(), *self.targets.values()):
            breaker.cfg = cfg

    def key(self, name: str) -> Breaker:
        breaker = self.keys.get(name)
        if breaker is None:  # key names come from the config: a bounded set
            breaker = self.keys[name] = Breaker(self.cfg, self.clock)
        return breaker

    def target(self, model: str) -> Breaker | None:
        """The model's breaker; None for a model past the `MAX_TARGETS` tracked ones (not tracked)."""
        breaker = self.targets.get(model)
        if breaker is None and len(self.targets) < MAX_TARGETS:
            breaker = self.targets[model] = Breaker(self.cfg, self.clock)
        return breaker

    def _moved(self, kind: str, name: str, breaker: Breaker, was: int, state: int | None) -> None:
        if state is None or state == was or state == -1:
            return
        if was == CLOSED:
            self.tripped += 1
        elif state == CLOSED:
            self.tripped -= 1
        notify = self.notify
        if notify is not None:
            seconds = breaker.open_until - breaker.clock() if state == OPEN else breaker.cooldown
            notify(self.name, kind, name, state, max(0.0, seconds))

    # -- targets (the engine) ------------------------------------------------------------------------
    def admit_target(self, model: str) -> bool:
        """Whether the engine may try `model` now (taking the probe slot when one is due)."""
        breaker = self.targets.get(model)
        if breaker is None or not self.breaking:
            return True
        was = breaker.state
        state = breaker.admit()
        if state is None:
            return False
        self._moved("model", model, breaker, was, state)
        return True

    def target_blocked(self, model: str) -> bool:
        breaker = self.targets.get(model)
        return breaker is not None and self.breaking and breaker.blocked()

    def succeeded(self, model: str, key: str | None, latency_s: float | None) -> None:
        """An attempt answered (the hot path: one clock reading, no allocation)."""
        now = self.clock()
        breaker = self.targets.get(model) or self.target(model)
        if breaker is not None:
            was = breaker.state
            state = breaker.success(latency_s, now)
            if state is not None:
                self._moved("model", model, breaker, was, state)
        if key is not None and key != "none":
            breaker = self.keys.get(key) or self.key(key)
            was = breaker.state
            state = breaker.success(latency_s, now)
            if state is not None:
                self._moved("key", key, breaker, was, state)

    def failed(self, model: str, key: str | None, klass: str | None) -> None:
        """An attempt on `model` with `key` failed with failure class `klass` (None: the gateway's own)."""
        if klass not in KEY_FAILURES:
            if klass is not None:  # the provider answered (invalid, context_length, content_policy)
                self.succeeded(model, key, None)
            return
        if klass != "auth":
            breaker = self.target(model)
            if breaker is not None:
                self._fail("model", model, breaker)
        key_breaker = self._key_or_none(key)
        if key_breaker is not None and key is not None:
            self._fail("key", key, key_breaker)

    def _fail(self, kind: str, name: str, breaker: Breaker) -> None:
        was = breaker.state
        state = breaker.failure()
        if not self.breaking and state == OPEN:  # statistics only (adaptive, breakers off): never skip
            breaker.state = CLOSED
            breaker.opens -= 1
            return
        self._moved(kind, name, breaker, was, state)

    def _key_or_none(self, key: str | None) -> Breaker | None:
        return None if key is None or key == "none" else self.key(key)

    def trip_key(self, key: str, seconds: float) -> None:
        breaker = self.key(key)
        was = breaker.state
        self._moved("key", key, breaker, was, breaker.trip(seconds))

    def adopt(self, kind: str, name: str, state: int, seconds: float) -> None:
        """Another worker's transition (runtime/core/health_sync.py)."""
        if not self.breaking:
            return
        breaker = self.key(name) if kind == "key" else self.target(name)
        if breaker is None:
            return
        was = breaker.state
        breaker.adopt(state, seconds)
        if was == CLOSED and breaker.state != CLOSED:
            self.tripped += 1
        elif was != CLOSED and breaker.state == CLOSED:
            self.tripped -= 1

    # -- keys (KeySelector) --------------------------------------------------------------------------
    def usable_keys(self, keys: tuple[Any, ...]) -> tuple[Any, ...]:
        """`keys` without the ones whose breaker skips them now; all skipped: the least bad one alone."""
        now = self.clock()
        table = self.keys
        usable = tuple(k for k in keys if (b := table.get(k.name)) is None or not b.blocked(now))
        if usable:
            return usable
        return (least_bad(keys, [table.get(k.name) for k in keys], now),)

    def admit_key(self, name: str) -> None:
        """The chosen key is used: take its probe slot if it is due one."""
        breaker = self.keys.get(name)
        if breaker is not None and breaker.state != CLOSED:
            was = breaker.state
            self._moved("key", name, breaker, was, breaker.admit())

    def view(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "circuit_breaker": self.breaking,
            "keys": {repair(name): b.view(now) for name, b in sorted(self.keys.items())},
            # Model names come from clients: lone surrogates are repaired for JSON (runtime/core/text.py).
            "models": {repair(name): b.view(now) for name, b in sorted(self.targets.items())},
        }


def least_bad(candidates: Sequence[T], stats: Sequence[Breaker | None], now: float) -> T:
    """The candidate to try when every one is open: soonest to cool down, then lowest error rate."""
    best = 0
    best_key: tuple[float, float] | None = None
    for i, breaker in enumerate(stats):
        key = (0.0, 0.0) if breaker is None else breaker.badness(now)
        if best_key is None or key < best_key:
            best, best_key = i, key
    return candidates[best]


def _draw(weights: Sequence[float], total: float, rnd: Callable[[], float], skip: int = -1) -> int:
    point = rnd() * total
    last = -1
    for i, w in enumerate(weights):
        if i == skip or w <= 0:
            continue
        last = i
        point -= w
        if point < 0:
            return i
    return last


def choose(
    candidates: Sequence[T],
    weights: Sequence[float],
    stats: Sequence[Breaker | None],
    rnd: Callable[[], float] = random.random,
    now: float | None = None,
) -> T:
    """Adaptive choice among `candidates` (keys, or a model group's targets): power of two choices.

    Two distinct candidates are drawn by their configured `weights`; the one with the lower cost (the
    window's mean latency over its success share, `Breaker.cost`) wins when the costs differ by more than
    `TOLERANCE` and `SLACK_S`, else the first draw (the weights decide). A candidate with no recent success has no cost,
    so it is judged by its weight: old statistics age out of the window and traffic returns to the
    configured shares. `EXPLORE` of the picks skip the comparison, a floor share for every candidate.
    Weight-0 candidates are drawn only when every weight is 0 (then all weigh the same)."""
    n = len(candidates)
    if n == 1:
        return candidates[0]
    if not any(w > 0 for w in weights):
        weights = [1.0] * n
    total = sum(w for w in weights if w > 0)
    first = _draw(weights, total, rnd)
    if rnd() < EXPLORE:
        return candidates[first]
    rest = total - weights[first]
    if rest <= 0:
        return candidates[first]
    second = _draw(weights, rest, rnd, skip=first)
    if second < 0:
        return candidates[first]
    a, b = stats[first], stats[second]
    if a is None or b is None:
        return candidates[first]
    now = a.clock() if now is None else now
    cost_a, cost_b = a.cost(now), b.cost(now)
    if cost_a is None or cost_b is None:
        return candidates[first]
    if cost_a > cost_b * TOLERANCE + SLACK_S:
        return candidates[second]
    return candidates[first]


def build_health(name: str, cfg: BreakerConfig, load_balancing: str) -> ProviderHealth | None:
    """The provider's health keeper, or None when it has nothing to do (breakers off, weighted keys)."""
    adaptive = load_balancing == "adaptive"
    if not cfg.enabled and not adaptive:
        return None
    return ProviderHealth(name, cfg, adaptive)
