"""Semantic mode's embeddings, made through the gateway's own providers.

The prompt's text is embedded by a sub-request to `provider/embedding_model` (the plugin's config) on
the `embeddings` endpoint: the gateway's keys, retries, fallbacks and pricing apply, and the call gets
its own request-log row and metrics (ingress "cache"), so what semantic caching costs is visible.

A failed embedding is not the request's failure: the request is served as an exact-only lookup, the
failure is counted (`counters.embedding_errors`) and logged at most once a minute.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from runtime.cache.stats import CacheCounters
from runtime.core.context import RequestContext
from runtime.core.cost import price
from runtime.core.flow import fail
from runtime.errors import GatewayError
from runtime.providers.base import EMBEDDINGS

log = logging.getLogger("bifrost.cache")
LOG_EVERY_S = 60.0


class Embedder:
    def __init__(self, target: str, dimension: int, counters: CacheCounters) -> None:
        self.target = target  # "provider/model"
        self.dimension = dimension
        self.counters = counters
        self.gateway: Any = None  # bound once the app has built its Gateway (runtime/plugins/registry.py)
        self._logged_at = -math.inf

    async def embed(self, text: str) -> list[float] | None:
        """The text's unit-length vector, or None (counted and logged) when it could not be made."""
        gw = self.gateway
        if gw is None:
            return self._failed("the gateway is not bound yet")
        ctx = RequestContext(gw.new_id(), EMBEDDINGS, "cache")
        ctx.body = body = {"model": self.target, "input": text}
        try:
            result = await gw.complete(ctx, gw.targets(ctx, body))
            ctx.status = 200
            ctx.usage = result.usage
            if ctx.usage is not None:
                price(ctx, gw.config.providers)
            vector = _vector(result.data)
        except GatewayError as err:
            fail(ctx, err)
            return self._failed(err.message)
        except Exception:  # a bug: logged, never the request's failure
            log.exception("semantic cache: embedding call failed")
            ctx.status = 500
            return self._failed("internal error")
        finally:
            gw.finish(ctx)
        if vector is None:
            return self._failed(f"{self.target} answered without an embedding")
        if len(vector) != self.dimension:
            return self._failed(
                f"{self.target} returned {len(vector)} dimensions; set the plugin's dimension to {len(vector)}"
            )
        return vector

    def _failed(self, why: str) -> list[float] | None:
        self.counters.embedding_errors += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning("semantic cache: embedding failed (%s); exact matching only for now", why)
        return None


def _vector(data: Any) -> list[float] | None:
    try:
        values: Sequence[Any] = data["data"][0]["embedding"]
        vector = [float(v) for v in values]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    norm = math.sqrt(sum(v * v for v in vector))
    if not vector or not math.isfinite(norm) or norm == 0:
        return None
    return [v / norm for v in vector]
