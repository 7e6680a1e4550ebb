"""The `guardrails` plugin: runs the engine's input stage in its pre-hook, sets the output guard, and
scrubs matched values from what the request log will store (its on_finish runs before the log's).

Built by runtime/plugins/registry.py when `guardrails_config` has an active rule; replaced as a whole by
runtime/live.py when an admin edits the block (requests in flight keep the engine they started with).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from runtime.guardrails.engine import GuardrailEngine, RequestState
from runtime.guardrails.scrub import scrub
from runtime.guardrails.types import GuardrailsConfig

log = logging.getLogger("bifrost.guardrails")


class GuardrailsPlugin:
    name = "guardrails"

    def __init__(self, config: GuardrailsConfig, metrics: Any = None) -> None:
        self.config = config
        self.engine = GuardrailEngine(config, on_cel_error=self._count_cel_error)
        self.metrics = metrics
        self.gateway: Any = None

    def _count_cel_error(self, rule: str) -> None:
        """A rule whose expression failed to evaluate: bifrost_guardrail_errors_total{rule, error="cel_error"}
        (the metrics plugin's counters; one series per configured rule at most)."""
        errors = getattr(self.metrics, "guardrail_errors", None)
        if isinstance(errors, dict):
            key = (rule, "cel_error")
            errors[key] = errors.get(key, 0) + 1

    def bind_gateway(self, gateway: Any) -> None:
        self.gateway = gateway

    async def pre_hook(self, ctx: Any) -> None:
        # The matched values to scrub at the request's end live on the request (ctx.guardrail_state), not
        # here: a live edit may replace this plugin while the request runs, and the new one's on_finish
        # (exactly once per request, whatever happened) must still find them.
        state = ctx.guardrail_state = RequestState()
        await self.engine.check_input(ctx, self.gateway, state)
        guard = self.engine.output_guard(ctx, self.gateway, state)
        if guard is not None:
            ctx.guard = guard
        return None

    def on_finish(self, ctx: Any) -> None:
        state = ctx.guardrail_state
        if state is not None and state.values:
            scrub(ctx, state.values)

    async def aclose(self) -> None:
        """Close the remote detectors' resources (the webhook's HTTP session), bounded."""
        for provider in self.config.providers.values():
            close = getattr(provider.detector, "close", None)
            if close is None:
                continue
            try:
                result = close()
                if asyncio.iscoroutine(result):
                    await asyncio.wait_for(result, 5.0)
            except Exception:
                log.exception("guardrail provider '%s' failed to close", provider.policy_name)
