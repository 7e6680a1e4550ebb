"""Breaker transitions shared between workers (and, with Redis, instances) through the shared-state store.

Counting stays local to each worker: no request waits on the store. Only transitions travel, and they are
rare: a breaker that opens, goes half-open (its one probe is out) or closes calls `notify`
(synchronously, from the request's task), which queues a message; one background task publishes the
queue on the store's `breakers` channel, and another applies what the other workers publish
(`ProviderHealth.adopt`): an open breaker elsewhere is skipped here too until its cooldown, a half-open
one stays skipped while its probe is out, a closed one is closed here. Delivery takes the store's
notification latency (the embedded engine polls every 50 ms; Redis pub/sub at once).

Messages carry durations, not clock readings ("open for 29.5 s"), so instances need no common clock, and
the sender's id, so a worker ignores its own. A message that does not parse is dropped: the store is
ours, but a bad row must not stop the listener. Started only when there is someone to tell
(`--workers` > 1 or a Redis shared state): a single worker on the embedded store opens nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from runtime.config.model import GatewayConfig
from runtime.core.health import CLOSED, HALF_OPEN, OPEN
from runtime.stores.shared import SharedState, SharedStateError

log = logging.getLogger("bifrost.health")

CHANNEL = "breakers"
PENDING_MAX = 1000  # transitions waiting to be published; past this the oldest are dropped (best effort)
RETRY_S = 1.0  # wait before subscribing again after the store failed
_STATES = frozenset({CLOSED, HALF_OPEN, OPEN})


def wanted(config: GatewayConfig) -> bool:
    """Whether anyone else could use this worker's transitions (and it theirs)."""
    shared = config.shared_state
    return config.workers > 1 or (shared is not None and shared.type == "redis")


class HealthSync:
    def __init__(self, store: SharedState, gateway: Any) -> None:
        self.store = store
        self.gateway = gateway  # runtime/core/gateway.py Gateway: its current router's handles
        self.origin = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._pending: deque[str] = deque(maxlen=PENDING_MAX)
        self._wake = asyncio.Event()
        self.published = 0
        self.adopted = 0

    def notify(self, provider: str, kind: str, target: str, state: int, seconds: float) -> None:
        """A local breaker moved (called on the request's task: queue only, never wait)."""
        message = {"o": self.origin, "p": provider, "k": kind, "t": target, "s": state, "for": round(seconds, 3)}
        self._pending.append(json.dumps(message))
        self._wake.set()

    async def _publish_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                message = self._pending.popleft()
                try:
                    await self.store.publish(CHANNEL, message)
                    self.published += 1
                except SharedStateError as exc:  # the others will not hear of it; requests go on
                    log.warning("breaker transition not shared: %s", exc)

    async def _listen_loop(self) -> None:
        while True:
            try:
                sub = await self.store.subscribe(CHANNEL)
            except SharedStateError as exc:
                log.warning("breaker transitions from other workers not received: %s", exc)
                await asyncio.sleep(RETRY_S)
                continue
            try:
                async for message in sub:
                    self.apply(message)
            finally:
                await sub.close()
            await asyncio.sleep(RETRY_S)  # the store ended the subscription (reconnecting): subscribe again

    def apply(self, message: str) -> None:
        try:
            data = json.loads(message)
            origin, provider, kind, target = data["o"], data["p"], data["k"], data["t"]
            state, seconds = data["s"], float(data["for"])
        except (ValueError, TypeError, KeyError):
            return
        if origin == self.origin or state not in _STATES or kind not in ("key", "model"):
            return
        if not isinstance(provider, str) or not isinstance(target, str) or not 0 <= seconds < 86_400:
            return
        handle = self.gateway.router.handles.get(provider)
        if handle is None or handle.health is None:
            return
        handle.health.adopt(kind, target, state, seconds)
        self.adopted += 1

    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """aiohttp cleanup_ctx: share transitions while the app runs (entered after the store)."""
        self.gateway.bind_health(self.notify)
        tasks = [
            asyncio.create_task(self._publish_loop(), name="bifrost-breakers-publish"),
            asyncio.create_task(self._listen_loop(), name="bifrost-breakers-listen"),
        ]
        yield
        self.gateway.bind_health(None)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
