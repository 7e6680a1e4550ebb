"""A stand-in for the guardrails engine (issue 15), for tests of what the log, /metrics and the Logs page
make of `ctx.guardrails` without depending on any detector: installed like any third-party plugin (a
`bifrost.plugins` entry point) and driven by the request.

The request's `x-test-guardrails` header holds the JSON list the engine would have set as `ctx.guardrails`
(one {"rule", "provider", "stage", "action", "types", "count", "error"?} per rule that acted); an entry whose
action is "block" refuses the request with GuardrailBlocked, as a blocking rule does. No header: nothing fired.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.core.context import RequestContext
from runtime.errors import GatewayError, GuardrailBlocked

HEADER = "x-test-guardrails"


class GuardrailsStandin:
    name = "guardrails_standin"
    config_fields: dict[str, type] = {}

    def __init__(self, config: dict[str, Any]) -> None:
        del config

    async def pre_hook(self, ctx: RequestContext) -> None:
        raw = ctx.headers.get(HEADER)
        if not raw:
            return
        try:
            fired = json.loads(raw)
        except ValueError:
            raise GatewayError(f"{HEADER} is not JSON", status=400, type="invalid_request_error") from None
        ctx.guardrails = fired
        blocked = [entry["rule"] for entry in fired if entry.get("action") == "block"]
        if blocked:
            raise GuardrailBlocked(f"blocked by guardrail rule '{blocked[0]}'")
