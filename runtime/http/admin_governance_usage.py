"""Current usage of budgets and rate limits, for the admin API's answers and /metrics.

Read from the governance plugin's ledger (BudgetAndRateLimits.budget_usage / rate_limit_usage), which
reads the shared-state store: the numbers every worker and instance count against. None when this
gateway runs no limits (it started without governance: a restart builds the plugin). Reads are bounded
(READ_TIMEOUT_S) and a store failure is reported as `usage_error`, never as a 500: an admin page must
still show the configuration when the counters cannot be read.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from runtime.governance.model import Budget, RateLimit
from runtime.http.keys import GATEWAY

log = logging.getLogger("bifrost.admin")
READ_TIMEOUT_S = 5.0


def limits_of(app: web.Application) -> Any | None:
    """The running BudgetAndRateLimits object, or None (no governance plugin, or one without limits)."""
    for plugin in app[GATEWAY].hooks.plugins:
        if getattr(plugin, "name", "") == "governance":
            return getattr(plugin, "limits", None)
    return None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _read(coro: Any) -> Any:
    return await asyncio.wait_for(coro, READ_TIMEOUT_S)


async def budget_usage(limits: Any | None, budget: Budget | None) -> dict[str, Any]:
    """Go's `current_usage` / `last_reset` (the window's start), plus `reset_at` (its end)."""
    if limits is None or budget is None:
        return {"current_usage": None, "last_reset": None, "reset_at": None}
    try:
        used, start, end = await _read(limits.budget_usage(budget))
    except Exception as exc:  # the store is down or slow: show the config, say why usage is missing
        log.warning("governance: reading budget %r usage failed: %s", budget.id, exc)
        return {"current_usage": None, "last_reset": None, "reset_at": None, "usage_error": type(exc).__name__}
    return {"current_usage": round(used, 10), "last_reset": _iso(start), "reset_at": _iso(end)}


async def rate_limit_usage(limits: Any | None, rl: RateLimit | None) -> dict[str, Any]:
    """Go's `{token,request}_current_usage` / `_last_reset`, plus `_reset_at`; None for an unset kind."""
    out: dict[str, Any] = {}
    for kind, prefix in (("tokens", "token"), ("requests", "request")):
        out.update({f"{prefix}_current_usage": None, f"{prefix}_last_reset": None, f"{prefix}_reset_at": None})
        if limits is None or rl is None:
            continue
        try:
            read = await _read(limits.rate_limit_usage(rl, kind))
        except Exception as exc:
            log.warning("governance: reading rate limit %r usage failed: %s", rl.id, exc)
            out["usage_error"] = type(exc).__name__
            continue
        if read is not None:
            used, start, end = read
            out[f"{prefix}_current_usage"] = int(used)
            out[f"{prefix}_last_reset"] = _iso(start)
            out[f"{prefix}_reset_at"] = _iso(end)
    return out


async def budget_remaining(limits: Any | None, budgets: dict[str, Budget]) -> dict[str, tuple[float, float]]:
    """{budget id: (max_limit, remaining dollars)} for /metrics; budgets whose usage cannot be read are left out."""
    if limits is None or not budgets:
        return {}
    ids = list(budgets)
    results = await asyncio.gather(*(_read(limits.budget_usage(budgets[i])) for i in ids), return_exceptions=True)
    out: dict[str, tuple[float, float]] = {}
    for ident, result in zip(ids, results, strict=True):
        if isinstance(result, BaseException):
            continue
        limit = float(budgets[ident].max_limit)
        out[ident] = (limit, max(0.0, limit - result[0]))
    return out
