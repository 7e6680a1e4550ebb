"""The ledger: hard ceilings on counters shared by every worker (and instance), without a store round
trip per request.

Each limited counter (a budget's dollars, a rate limit's requests or tokens) lives in the shared-state
store (runtime/stores/shared.py) as one counter per window: `gov:<name>:<window start>`. That counter is
the sum of the slices every worker has *leased* from it; `reserve` in the store is atomic (check and add in
one step), so the sum of all leases never exceeds the limit, however many workers or instances race.

A worker admits requests against its own leases, locally (DESIGN.md principle 8):

    take(amount)   local `avail` covers it -> subtract, done (no await: the common case)
                   else lease max(amount missing, one slice) from the store, then take; a slice refused
                   is retried as exactly what is missing; refused again -> the limit is reached
    settle(actual) the hold's unused part goes back to `avail`; an excess (a provider that billed more
                   than the reserved worst case) is taken from `avail` or, failing that, added to the
                   store counter unconditionally: money already spent is always recorded
    idle return    leftovers of a counter nobody used for `idle_return_s` go back to the store, so other
                   workers can have them and a restart (or a crash, minus at most one slice) loses nothing

Refills ahead of need: when `avail` drops under the size of the request just admitted, the next slice is
leased in the background. Concurrent leases of one counter are coalesced: one at a time, sized for every
coroutine waiting on it (they wait on its future; no lock is held across an await).

The store counter is therefore spend + unused leases: never below what was really spent, never above the
limit (bar a recorded excess). A window's counter is keyed by its start, computed here from the injectable
clock with `window_s=None`: calendar periods are not fixed-width, and rolling ones are anchored at a
persisted instant (below) rather than the epoch, neither of which the store's epoch-aligned `window_s`
can express. Old windows' rows are left behind (never read again).

Rolling windows' anchor: set once per (name, duration) through the store's atomic `reserve` used as
set-if-absent (`reserve(key, now, limit=now)` only succeeds on an empty counter), then read back with
`total`. One store round trip per counter per process, at its first use.

When the store cannot answer (SharedStateError: down, timed out, refused; docs/failure-policy.md):
every store call goes through `_store_call`, and after a failure the store is *latched down* for
LATCH_S: calls fail at once (StoreDown) instead of each waiting for the store's timeout, so no request
waits more than one store timeout for a decision and, while the store is known down, none waits at all.
The first call after the latch (a request's, or the sweeper's) re-checks. Requests served from a local
lease never touch the store and are unaffected. What cannot reach the store is never lost silently:

    a request admitted without the store (fail_open, `owe`)   its spend is owed: net amounts per counter
                                                              window, added with `incr` once the store
                                                              answers again (at most OWED_MAX entries;
                                                              past that, counted in `owed_dropped`)
    an excess, a given-back lease                             owed too (positive / negative)
    an idle lease that could not be returned                  kept in the pool: the next sweep retries
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from runtime.governance.periods import Period
from runtime.stores.shared import SharedState, SharedStateError

log = logging.getLogger("bifrost.governance")

Clock = Callable[[], float]
T = TypeVar("T")
LATCH_S = 1.0  # after a store failure, requests do not ask the store again for this long
OWED_MAX = 10_000  # owed entries (counter windows) kept while the store is down; more are counted, dropped


class StoreDown(SharedStateError):
    """The store failed less than LATCH_S ago: not asked again yet (the decision is immediate)."""


class Debt:
    """Where an owed amount goes: the counter window `key`, or, when the window's anchor was not known
    (the store was down at the limit's first use), the window holding instant `at` once it is."""

    __slots__ = ("at", "key", "limit")

    def __init__(self, limit: Limit, at: float, key: str | None) -> None:
        self.limit = limit
        self.at = at
        self.key = key

    def ident(self) -> tuple[str, str]:
        return self.limit.name, self.key if self.key is not None else f"@{int(self.at)}"


@dataclass(frozen=True, slots=True)
class Limit:
    """One limited counter: `name` is unique per counter (e.g. `budget:<id>`, `rl:<id>:requests`)."""

    name: str
    max: float
    period: Period
    integer: bool = False  # request and token counts lease whole units


class Pool:
    """This worker's share of one counter in one window."""

    __slots__ = (
        "avail",
        "end",
        "idle_since",
        "inflight",
        "key",
        "leased",
        "limit",
        "refill",
        "reset_text",
        "seen",
        "slice",
        "start",
        "wanted",
    )

    def __init__(self, limit: Limit, start: float, end: float, fraction: float) -> None:
        self.limit = limit
        self.start = start
        self.end = end
        self.key = f"gov:{limit.name}:{int(start)}"
        raw = limit.max * fraction
        self.slice = float(max(1, math.ceil(raw))) if limit.integer else raw
        self.avail = 0.0  # leased from the store, not yet taken by a request
        self.leased = 0.0
        self.seen = 0.0  # the store counter's value at our last lease (for "remaining")
        self.inflight = 0
        self.wanted = 0.0  # what coroutines waiting on the current lease need: the next lease covers them
        self.idle_since = 0.0
        self.refill: asyncio.Task[bool] | None = None  # the lease in flight, if any
        self.reset_text: tuple[int, str] = (-1, "")  # (whole seconds left, its header text), reused

    def remaining(self) -> float:
        """What is left of the limit as this worker last saw it: its own unused lease + the store's rest."""
        return max(0.0, self.avail + self.limit.max - self.seen)


class Hold:
    """An amount taken from a pool for one request, until settled (exactly once). A hold with a `debt`
    instead of a pool was admitted without the store (fail_open): its amount is owed, not leased."""

    __slots__ = ("amount", "debt", "pool", "settled")

    def __init__(self, pool: Pool | None, amount: float, debt: Debt | None = None) -> None:
        self.pool = pool
        self.amount = amount
        self.debt = debt
        self.settled = False


class Ledger:
    def __init__(
        self,
        store: SharedState,
        *,
        clock: Clock = time.time,
        lease_fraction: float = 1 / 16,
        idle_return_s: float = 5.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.lease_fraction = lease_fraction
        self.idle_return_s = idle_return_s
        self._pools: dict[str, Pool] = {}
        self._anchors: dict[str, asyncio.Future[float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._down_until = 0.0  # monotonic; 0: the store is not known to be down
        self._owed: dict[tuple[str, str], tuple[Debt, float]] = {}
        self._flushing: asyncio.Task[None] | None = None
        self.owed_dropped = 0  # owed amounts lost because OWED_MAX entries were already waiting
        self.owed_recorded = 0  # owed entries added to the store after it came back
        self.store_failures = 0  # store calls that failed (StoreDown excluded)

    # -- the store, guarded --------------------------------------------------------------------------
    def store_down(self) -> bool:
        """Whether the store failed less than LATCH_S ago (no await; cheap when it is up)."""
        return self._down_until != 0.0 and time.monotonic() < self._down_until

    async def _store_call(self, call: Callable[[], Awaitable[T]]) -> T:
        """One store operation: immediate StoreDown while latched; a failure latches the store down."""
        if self.store_down():
            raise StoreDown("the shared-state store failed less than a second ago")
        try:
            result = await call()
        except SharedStateError as exc:
            self.store_failures += 1
            if self._down_until == 0.0:
                log.warning("governance: the shared-state store cannot answer: %s", exc)
            self._down_until = time.monotonic() + LATCH_S
            raise
        if self._down_until != 0.0:
            self._down_until = 0.0
            log.warning("governance: the shared-state store answers again")
        if self._owed and self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush_owed(), name="bifrost-ledger-owed")
        return result

    # -- owed amounts (what could not reach the store) ------------------------------------------------
    def owe(self, limit: Limit, amount: float, now: float) -> Hold:
        """Admit `amount` without the store (fail_open): owed to `limit`'s window at `now`, settled like
        any hold (the owed amount follows the real one)."""
        pool = self._pools.get(limit.name)
        key = pool.key if pool is not None and pool.limit == limit and pool.start <= now < pool.end else None
        if key is None and limit.period.calendar:
            key = f"gov:{limit.name}:{int(limit.period.window(now, 0.0)[0])}"
        debt = Debt(limit, now, key)
        self._add_owed(debt, amount)
        self._start_sweeper()  # the probe that records what is owed if no request asks the store again
        return Hold(None, amount, debt)

    def _add_owed(self, debt: Debt, amount: float) -> None:
        if amount == 0:
            return
        ident = debt.ident()
        entry = self._owed.get(ident)
        if entry is not None:
            self._owed[ident] = (entry[0], entry[1] + amount)
        elif len(self._owed) < OWED_MAX:
            self._owed[ident] = (debt, amount)
        else:
            self.owed_dropped += 1
            if self.owed_dropped == 1 or self.owed_dropped % 1000 == 0:
                log.error("governance: %d owed amounts dropped (more than %d waiting)", self.owed_dropped, OWED_MAX)

    @property
    def owed(self) -> int:
        """Owed entries waiting for the store."""
        return len(self._owed)

    async def _flush_owed(self) -> None:
        """Add every owed amount to its counter (unconditional incr: it was spent); stop at a failure."""
        try:
            while self._owed:
                ident, (debt, amount) = next(iter(self._owed.items()))
                del self._owed[ident]
                key = debt.key
                try:
                    if key is None:  # a rolling window whose anchor was unknown: its window now
                        anchor = await self._anchor(debt.limit)
                        key = f"gov:{debt.limit.name}:{int(debt.limit.period.window(debt.at, anchor)[0])}"
                    value: float | int = int(amount) if float(amount).is_integer() else amount
                    await self._store_call(partial(self.store.incr, key, value))
                except SharedStateError:
                    self._add_owed(debt, amount)  # still owed; the next answer from the store retries
                    return
                except Exception:  # not the store's failure (a bug, the store closed): keep it, say so
                    self._add_owed(debt, amount)
                    log.exception("governance: recording an owed amount failed")
                    return
                self.owed_recorded += 1
        finally:
            self._flushing = None

    # -- windows -------------------------------------------------------------------------------------
    def current(self, limit: Limit) -> Pool | None:
        """The pool of `limit`'s current window when this process has it (the common case: no await)."""
        pool = self._pools.get(limit.name)
        if pool is not None and pool.limit is limit and pool.start <= self.clock() < pool.end:
            return pool
        return None

    async def pool(self, limit: Limit) -> Pool:
        """The pool of `limit`'s current window (a new one when the window rolled over)."""
        anchor = 0.0
        if not limit.period.calendar:
            anchor = await self._anchor(limit)
        # Checked after the await: coroutines racing on a new window must share one pool, or each
        # would lease (and strand) its own slice.
        now = self.clock()
        pool = self._pools.get(limit.name)
        if pool is not None and pool.limit == limit and pool.start <= now < pool.end:
            return pool
        start, end = limit.period.window(now, anchor)
        old, pool = pool, Pool(limit, start, end, self.lease_fraction)
        self._pools[limit.name] = pool
        if old is not None and old.key == pool.key and old.avail > 0 and old.refill is None:
            # The limit was redefined (a live config change) within its window: same counter, new pool;
            # give the old pool's unused lease back rather than strand it.
            amount, old.avail = old.avail, 0.0
            self._spawn(self._give_back(old.key, amount, old.limit))
        self._start_sweeper()
        return pool

    def _start_sweeper(self) -> None:
        if self._sweeper is None and self.idle_return_s > 0:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="bifrost-ledger-return")

    async def _anchor(self, limit: Limit) -> float:
        key = f"gov-anchor:{limit.name}:{limit.period.text}"
        anchor = self._anchors.get(key)
        if anchor is None:
            anchor = self._anchors[key] = asyncio.ensure_future(self._fetch_anchor(key))
        try:
            return await asyncio.shield(anchor)
        except Exception:
            self._anchors.pop(key, None)  # a store error: the next request asks again
            raise

    async def _fetch_anchor(self, key: str) -> float:
        now = float(int(self.clock()))
        if await self._store_call(lambda: self.store.reserve(key, now, now)):  # set-if-absent
            return now
        return float(await self._store_call(lambda: self.store.total(key)))

    # -- reading (admin API, /metrics): never on the request path -------------------------------------
    async def usage(self, limit: Limit) -> tuple[float, float, float]:
        """(used, window start, window end) of `limit`'s current window, read from the shared store.

        `used` is the store counter (what every worker and instance took: spend, in-flight reservations
        and other workers' unused leases, which go back within `idle_return_s`) minus this worker's own
        unused lease. A read-only look: it takes nothing and creates no pool, so the hot path is as it was
        (a rolling window's anchor is set here if nobody used the limit yet, as its first use would)."""
        anchor = 0.0 if limit.period.calendar else await self._anchor(limit)
        start, end = limit.period.window(self.clock(), anchor)
        key = f"gov:{limit.name}:{int(start)}"
        used = float(await self.store.total(key))
        pool = self._pools.get(limit.name)
        if pool is not None and pool.key == key:
            used -= max(pool.avail, 0.0)
        return max(0.0, used), start, end

    # -- take / settle -------------------------------------------------------------------------------
    def try_take(self, pool: Pool, amount: float) -> Hold | None:
        """Take `amount` from the local lease, without waiting; None when it does not cover it."""
        if pool.avail < amount:
            return None
        pool.avail -= amount
        pool.inflight += 1
        if (
            pool.avail < amount
            and pool.refill is None
            and pool.seen + max(pool.slice, amount) <= pool.limit.max
            and not self.store_down()
        ):
            # Ahead of need: the next request of this size will not wait. Leases at most one request
            # (or slice) more than is used, which is what a worker may strand until the idle return.
            self._spawn(self._refill(pool, max(pool.slice, amount)))
        return Hold(pool, amount)

    async def take(self, pool: Pool, amount: float) -> Hold | None:
        """Take `amount` against the limit; None when the limit (across all workers) cannot cover it.

        Terminates: every round either waits for another coroutine's lease, or leases itself; a lease
        moves the store counter towards the limit, and a refused one ends the loop."""
        while True:
            hold = self.try_take(pool, amount)
            if hold is not None:
                return hold
            if pool.refill is not None:  # one lease at a time per pool: wait for it, sized for us too
                pool.wanted += amount
                try:
                    await asyncio.shield(pool.refill)
                finally:
                    pool.wanted -= amount
                continue
            missing = amount - pool.avail
            ask = max(missing + pool.wanted, pool.slice)
            if await self._lease(pool, ask):
                continue
            if ask > missing and await self._lease(pool, missing):  # a whole slice no longer fits: just ours
                continue
            return self.try_take(pool, amount)  # the store is full; a refund meanwhile may still cover it

    def _lease(self, pool: Pool, amount: float) -> Awaitable[bool]:
        """Lease `amount` from the store into `pool.avail`. The lease runs as its own task, shielded: a
        request cancelled while it waits (its client went away) must not lose a lease the store granted
        (the SQL runs to its end on the store's thread anyway), or every cancellation would strand a slice."""
        task = asyncio.get_running_loop().create_task(self._lease_now(pool, amount))
        pool.refill = task  # set before any await: concurrent takers wait on this lease, not start theirs
        return asyncio.shield(task)

    async def _lease_now(self, pool: Pool, amount: float) -> bool:
        if pool.limit.integer:
            amount = float(math.ceil(amount))
        try:
            ok = await self._store_call(lambda: self.store.reserve(pool.key, amount, pool.limit.max))
            if ok:
                pool.avail += amount
                pool.leased += amount
                pool.seen += amount  # at once, for "remaining" while the read below is on its way
            # With what other workers leased or returned. Best effort: the lease stands without it.
            with contextlib.suppress(SharedStateError):
                pool.seen = float(await self._store_call(lambda: self.store.total(pool.key)))
            return ok
        finally:
            pool.refill = None  # cleared before the task completes: no waiter ever sees a finished lease

    async def _refill(self, pool: Pool, amount: float) -> None:
        if pool.refill is None and self._pools.get(pool.limit.name) is pool:
            with contextlib.suppress(SharedStateError):  # the store is down: a request will ask again
                await self._lease(pool, amount)

    def settle(self, hold: Hold, actual: float) -> None:
        """The request's real amount is known: give back the rest, or record the excess. Idempotent."""
        if hold.settled:
            return
        hold.settled = True
        pool = hold.pool
        if pool is None:  # admitted without the store: what is owed follows the real amount
            if hold.debt is not None:
                self._add_owed(hold.debt, max(actual, 0.0) - hold.amount)
            return
        pool.inflight -= 1
        pool.idle_since = self.clock()
        if actual < 0:
            actual = 0.0
        diff = hold.amount - actual
        if diff >= 0:
            pool.avail += diff
            return
        excess = -diff
        if pool.avail >= excess:
            pool.avail -= excess
            return
        # More than the lease holds: the rest is a debt on this pool (its avail goes negative, so nothing
        # more is admitted here until it is covered) and is added to the store counter unconditionally:
        # money already spent is always recorded, even past the limit. The debt clears once it landed.
        owed = excess - max(pool.avail, 0.0)
        pool.avail -= excess
        pool.seen += owed
        self._spawn(self._record_excess(pool, owed))

    async def _give_back(self, key: str, amount: float, limit: Limit) -> None:
        try:
            await self._store_call(lambda: self.store.incr(key, -amount))
        except SharedStateError:
            self._add_owed(Debt(limit, 0.0, key), -amount)

    async def _record_excess(self, pool: Pool, amount: float) -> None:
        try:
            await self._store_call(lambda: self.store.incr(pool.key, amount))
        except SharedStateError:  # spent all the same: owed, recorded when the store answers
            self._add_owed(Debt(pool.limit, pool.start, pool.key), amount)
        pool.avail += amount
        pool.leased += amount

    # -- returning leftovers -------------------------------------------------------------------------
    async def return_idle(self, force: bool = False) -> None:
        """Give unused leases back to the store: those idle for `idle_return_s`, or all with `force`."""
        now = self.clock()
        for name, pool in list(self._pools.items()):
            idle = pool.inflight == 0 and now - pool.idle_since >= self.idle_return_s
            if pool.avail > 0 and pool.refill is None and (force or idle):
                amount, pool.avail = pool.avail, 0.0
                pool.leased -= amount
                if now < pool.end:
                    # While the lease is on its way back, a taker must wait for it (as for a refill)
                    # rather than lease against a store counter that still holds it: near the limit
                    # that would refuse a request the limit has room for.
                    giving = asyncio.get_running_loop().create_task(self._return_now(pool, amount))
                    pool.refill = giving
                    await asyncio.shield(giving)
            if now >= pool.end and pool.inflight == 0:
                del self._pools[name]  # a finished window: nothing to give back (it resets anyway)

    async def _return_now(self, pool: Pool, amount: float) -> bool:
        try:
            await self._store_call(lambda: self.store.incr(pool.key, -amount))
            pool.seen -= amount
            return True
        except SharedStateError:  # kept: the next sweep returns it (or a request uses it)
            pool.avail += amount
            pool.leased += amount
            return False
        finally:
            pool.refill = None

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.idle_return_s)
            try:
                await self.return_idle()
                if self._owed and self._flushing is None and not self.store_down():
                    # The probe: no request may ask the store for a while, and what is owed must land.
                    self._flushing = asyncio.get_running_loop().create_task(self._flush_owed())
            except Exception:  # a bug: the leftovers stay leased; try again next round
                log.exception("governance: returning unused leases failed")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("governance: a background ledger write failed", exc_info=task.exception())

    async def close(self) -> None:
        """Return every unused lease and stop background work (the store itself is the caller's)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.return_idle(force=True)
        flushing = self._flushing
        if flushing is None and self._owed and not self.store_down():
            flushing = self._flushing = asyncio.get_running_loop().create_task(self._flush_owed())
        if flushing is not None:
            await flushing
        stranded = sum(1 for pool in self._pools.values() if pool.avail > 0)
        if stranded or self._owed:
            # The store is down at shutdown: these stay counted (leases) or unrecorded (owed) in it.
            log.warning(
                "governance: closing with the shared-state store down: %d unused lease(s) not returned "
                "(counted until their window ends), %d owed amount(s) not recorded",
                stranded,
                len(self._owed),
            )
