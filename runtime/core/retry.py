"""When to try again, and how long to wait first.

Exponential backoff from `retry_backoff_initial_ms`, doubling per attempt, capped at
`retry_backoff_max_ms`, with ±20% jitter so that many clients hit by the same outage do not retry in
lockstep. A provider's `Retry-After` wins when it fits under the cap; when it asks for longer than the
cap, retrying sooner would only fail again, so the target is given up (fallbacks take over).
"""

from __future__ import annotations

import random

from runtime.config.model import NetworkConfig
from runtime.errors import GatewayError

JITTER = 0.2


def backoff_seconds(attempt: int, network: NetworkConfig, rand: float | None = None) -> float:
    """Wait before retry number `attempt` (1 = first retry)."""
    base = network.retry_backoff_initial_ms * (2 ** (attempt - 1))
    capped = min(base, network.retry_backoff_max_ms)
    r = random.random() if rand is None else rand
    jittered = capped * (1 - JITTER + 2 * JITTER * r)
    return min(jittered, network.retry_backoff_max_ms) / 1000.0


def retry_delay(error: GatewayError, attempt: int, network: NetworkConfig) -> float | None:
    """Seconds to wait before retry `attempt`, or None when no retry should happen."""
    if not error.retryable or attempt > network.max_retries:
        return None
    if error.retry_after_s is not None:
        if error.retry_after_s * 1000 > network.retry_backoff_max_ms:
            return None
        return error.retry_after_s
    return backoff_seconds(attempt, network)
