"""The metrics plugin: count every finished request into plain Python lists, nothing more.

`on_finish` costs one dict look-up, a few integer additions and three C bisects: no locks, no
label resolution, no allocation once a (provider, model, status) series exists. Turning these
numbers into Prometheus families happens only when /metrics is scraped (runtime/http/metrics.py).

One series is a flat list, laid out as below; the histogram parts hold per-bucket counts (not yet
cumulative) with a last slot for +Inf.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from aiohttp import web

from runtime.core.context import RequestContext
from runtime.core.text import repair

# Bucket upper bounds in microseconds (exposed in seconds).
LATENCY_BOUNDS_US = (
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
)
OVERHEAD_BOUNDS_US = (10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000)
UPSTREAM_BOUNDS_US = LATENCY_BOUNDS_US

# Flat series layout.
COUNT, LATENCY_SUM, OVERHEAD_SUM, UPSTREAM_SUM, UPSTREAM_COUNT, PROMPT, COMPLETION, RETRIES, FALLBACKS = range(9)
# RETRIES is only set on the per-provider retry rows (model "", status 0) that snapshot() adds.
LATENCY_BUCKETS = 9
OVERHEAD_BUCKETS = LATENCY_BUCKETS + len(LATENCY_BOUNDS_US) + 1
UPSTREAM_BUCKETS = OVERHEAD_BUCKETS + len(OVERHEAD_BOUNDS_US) + 1
SERIES_LEN = UPSTREAM_BUCKETS + len(UPSTREAM_BOUNDS_US) + 1

# Model names come from clients; past this many series new ones share an "other" series.
MAX_SERIES = 2_000

SeriesKey = tuple[str, str, int]

# Governance refusals by reason: the error `type`s of runtime/governance (plugin.py, limits.py).
GOV_REJECTIONS = frozenset(
    {
        "virtual_key_required",
        "virtual_key_not_found",
        "virtual_key_blocked",
        "provider_blocked",
        "model_blocked",
        "budget_exceeded",
        "rate_limited",
    }
)
MAX_SPEND_SERIES = 10_000  # virtual keys come from config, but bound them all the same
# Guardrail series are keyed by rule names from config (a bounded set, never request data); bounded anyway,
# as is the text of an error label (the engine's short reason: "timeout", "unavailable", ...).
MAX_GUARDRAIL_SERIES = 1_000
ERROR_LABEL_LIMIT = 64


class MetricsPlugin:
    name = "metrics"

    def __init__(self) -> None:
        self.series: dict[SeriesKey, list[int]] = {}
        self.retries: dict[str, int] = {}
        # Governance counters, kept only when the gateway runs the governance plugin (set at start-up by
        # runtime/http/metrics.py; a gateway without it cannot gain it without a restart): an ungoverned
        # gateway pays one attribute test per request for them.
        self.governed = False
        self.spend: dict[str, float] = {}  # virtual key id -> dollars (governed requests only)
        self.rejections: dict[str, int] = {}  # governance refusal type -> count
        # What guardrails did (ctx.guardrails, issue 15): (rule, action, stage) -> count of rules that acted,
        # (rule, error) -> count of remote-detector failures. Requests where nothing fired add nothing.
        self.guardrail_actions: dict[tuple[str, str, str], int] = {}
        self.guardrail_errors: dict[tuple[str, str], int] = {}

    def _new(self, key: SeriesKey) -> list[int]:
        if len(self.series) >= MAX_SERIES:
            key = ("other", "other", key[2])
            existing = self.series.get(key)
            if existing is not None:
                return existing
        values = [0] * SERIES_LEN
        self.series[key] = values
        return values

    def on_finish(self, ctx: RequestContext) -> None:
        key = (ctx.provider or "none", ctx.model or "none", ctx.status)
        s = self.series.get(key) or self._new(key)
        elapsed = ctx.elapsed_ns()
        latency = elapsed // 1000
        upstream = ctx.upstream_ns // 1000
        overhead = ctx.overhead_ns(elapsed) // 1000  # the gateway's own time, streams included
        s[COUNT] += 1
        s[LATENCY_SUM] += latency
        s[OVERHEAD_SUM] += overhead
        s[LATENCY_BUCKETS + bisect_left(LATENCY_BOUNDS_US, latency)] += 1
        s[OVERHEAD_BUCKETS + bisect_left(OVERHEAD_BOUNDS_US, overhead)] += 1
        if upstream:
            s[UPSTREAM_SUM] += upstream
            s[UPSTREAM_COUNT] += 1
            s[UPSTREAM_BUCKETS + bisect_left(UPSTREAM_BOUNDS_US, upstream)] += 1
        usage = ctx.usage
        if usage is not None:
            s[PROMPT] += usage.prompt_tokens or 0
            s[COMPLETION] += usage.completion_tokens or 0
        if ctx.retries:
            self._count_retries(ctx)
        if ctx.fallback_index:
            s[FALLBACKS] += 1
        if self.governed:
            self._governance(ctx)
        if ctx.guardrails is not None:  # the only per-request cost when no rule fired
            self._guardrails(ctx.guardrails)

    def _guardrails(self, fired: list[dict[str, Any]]) -> None:
        """One increment per rule that acted, by (rule, action, stage); one per remote-detector error."""
        actions, errors = self.guardrail_actions, self.guardrail_errors
        for entry in fired:
            rule = str(entry.get("rule") or "none")
            key = (rule, str(entry.get("action") or "none"), str(entry.get("stage") or "none"))
            if key not in actions and len(actions) >= MAX_GUARDRAIL_SERIES:
                key = ("other", key[1], key[2])
            actions[key] = actions.get(key, 0) + 1
            error = entry.get("error")
            if error:
                ekey = (rule, str(error)[:ERROR_LABEL_LIMIT])
                if ekey not in errors and len(errors) >= MAX_GUARDRAIL_SERIES:
                    ekey = ("other", "other")
                errors[ekey] = errors.get(ekey, 0) + 1

    def guardrail_snapshot(self) -> dict[str, list[list[Any]]]:
        """JSON-able copy of the guardrail counters (published with the other numbers of this worker)."""
        return {
            "actions": [[*key, n] for key, n in self.guardrail_actions.items()],
            "errors": [[*key, n] for key, n in self.guardrail_errors.items()],
        }

    def _governance(self, ctx: RequestContext) -> None:
        """Spend of a governed, priced request by its virtual key; a governance refusal by its reason."""
        cost = ctx.cost
        if ctx.caller is not None and cost:
            self._spend(ctx, cost)
        if ctx.error_type is not None and ctx.error_type in GOV_REJECTIONS:
            self.rejections[ctx.error_type] = self.rejections.get(ctx.error_type, 0) + 1

    def _spend(self, ctx: RequestContext, cost: float) -> None:
        vk = getattr(ctx.caller, "virtual_key_id", None)
        if not isinstance(vk, str):
            return
        if vk not in self.spend and len(self.spend) >= MAX_SPEND_SERIES:
            vk = "other"
        self.spend[vk] = self.spend.get(vk, 0.0) + cost

    def _count_retries(self, ctx: RequestContext) -> None:
        """Attribute retries to the provider that was retried (the rare path: read the attempts).

        Failed attempts are listed per target (the attempt that answered, listed last with an `outcome`,
        is not one); a target that failed throughout was retried one time fewer than it was tried, the
        target that answered as often as it failed first."""
        tries: dict[int, tuple[str, int]] = {}
        for attempt in ctx.attempts:
            if "outcome" in attempt:
                continue
            index = attempt.get("fallback_index", 0)
            provider, n = tries.get(index, (attempt.get("provider") or "none", 0))
            tries[index] = (provider, n + 1)
        for index, (provider, n) in tries.items():
            retried = n if index == ctx.fallback_index and ctx.status < 400 else n - 1
            if retried > 0:
                self.retries[provider] = self.retries.get(provider, 0) + retried

    def snapshot(self) -> list[list[Any]]:
        """JSON-able copy: [[provider, model, status, values], ...]; retries ride on status 0 rows.

        Names are repaired here, at scrape time, not per request: a model name with a lone surrogate
        (`"\\ud800"`) would otherwise make every later /metrics fail to encode."""
        rows = [[repair(p), repair(m), st, list(v)] for (p, m, st), v in self.series.items()]
        for provider, n in self.retries.items():
            values = [0] * SERIES_LEN
            values[RETRIES] = n
            rows.append([repair(provider), "", 0, values])
        return rows


METRICS: web.AppKey[MetricsPlugin] = web.AppKey("metrics")
