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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from runtime.governance.periods import Period
from runtime.stores.shared import SharedState

log = logging.getLogger("bifrost.governance")

Clock = Callable[[], float]


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
    """An amount taken from a pool for one request, until settled (exactly once)."""

    __slots__ = ("amount", "pool", "settled")

    def __init__(self, pool: Pool, amount: float) -> None:
        self.pool = pool
        self.amount = amount
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
            self._spawn(self._give_back(old.key, amount))
        if self._sweeper is None and self.idle_return_s > 0:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="bifrost-ledger-return")
        return pool

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
        if await self.store.reserve(key, now, now):  # set-if-absent: only an empty counter accepts it
            return now
        return float(await self.store.total(key))

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
        if pool.avail < amount and pool.refill is None and pool.seen + max(pool.slice, amount) <= pool.limit.max:
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
            ok = await self.store.reserve(pool.key, amount, pool.limit.max)
            if ok:
                pool.avail += amount
                pool.leased += amount
                pool.seen += amount  # at once, for "remaining" while the read below is on its way
            pool.seen = float(await self.store.total(pool.key))  # with what other workers leased or returned
            return ok
        finally:
            pool.refill = None  # cleared before the task completes: no waiter ever sees a finished lease

    async def _refill(self, pool: Pool, amount: float) -> None:
        if pool.refill is None and self._pools.get(pool.limit.name) is pool:
            await self._lease(pool, amount)

    def settle(self, hold: Hold, actual: float) -> None:
        """The request's real amount is known: give back the rest, or record the excess. Idempotent."""
        if hold.settled:
            return
        hold.settled = True
        pool = hold.pool
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

    async def _give_back(self, key: str, amount: float) -> None:
        await self.store.incr(key, -amount)

    async def _record_excess(self, pool: Pool, amount: float) -> None:
        await self.store.incr(pool.key, amount)
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
            await self.store.incr(pool.key, -amount)
            pool.seen -= amount
            return True
        finally:
            pool.refill = None

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.idle_return_s)
            try:
                await self.return_idle()
            except Exception:  # a store error: the leftovers stay leased; try again next round
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
