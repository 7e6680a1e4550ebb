"""The output stage of one request: `ctx.guard` (runtime/core/hooks.py contract).

`check_response` checks a whole answer (every choice's text) with all the rules' providers, remote ones
concurrently; `stream_filter` gives a stream's holdback filter (runtime/guardrails/stream.py).
"""

from __future__ import annotations

from typing import Any

from runtime.guardrails.engine import GuardrailEngine, RequestState, apply_to_texts, fired_of
from runtime.guardrails.text import output_slots
from runtime.guardrails.types import OUTPUT, ProviderSettings, RuleSettings, Subject
from runtime.providers.base import ParsedResponse


class OutputGuard:
    __slots__ = ("engine", "gateway", "rules", "state", "view")

    def __init__(
        self,
        engine: GuardrailEngine,
        rules: list[tuple[RuleSettings, tuple[ProviderSettings, ...]]],
        view: Any,
        gateway: Any,
        state: RequestState,
    ) -> None:
        self.engine = engine
        self.rules = rules  # sampled, gates passed (at the pre-hook: the request's fields do not change)
        self.view = view
        self.gateway = gateway
        self.state = state

    async def check_response(self, ctx: Any, result: ParsedResponse) -> ParsedResponse:
        slots = output_slots(result.data)
        texts = [s.get() for s in slots]
        if not any(texts):
            return result
        outcome = await self.engine.run(OUTPUT, self.rules, Subject(OUTPUT, texts), self.view, self.gateway)
        for fired in fired_of(OUTPUT, outcome):
            self.state.record(ctx, fired)
        masked = apply_to_texts(texts, outcome, self.state)
        if outcome.blocked is not None:
            raise outcome.blocked
        if outcome.redactions:
            for part in outcome.redactions:
                if 0 <= part < len(slots):
                    slots[part].set(masked[part])
            result.raw = None  # re-encoded from the masked data
        return result

    def stream_filter(self, ctx: Any) -> Any:
        from runtime.guardrails.stream import StreamFilter

        return StreamFilter(self, ctx)
