"""Remote guardrail detectors: each asks something over the network for a verdict.

webhook.py     the operator's own HTTP service (JSON in, verdict out)
moderation.py  an OpenAI-style moderation model, called through the gateway's own routing
judge.py       a yes/no policy question put to a configured chat model, through the gateway

All three are `remote = True`, `streamable = False` (a stream is checked once, at its end) and implement
`async check(subject, gateway) -> list[Finding]`, bounded by their `timeout_s`, raising DetectorError on any
failure. Their error messages name the detector and the cause only: never the texts checked, a header
value, or a URL.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from runtime.guardrails.types import DetectorError

__all__ = ["DetectorError", "label_of", "through_gateway", "token"]

log = logging.getLogger("bifrost.guardrails")
INGRESS = "guardrails"  # the request log's ingress for a detector's own calls

_UNSAFE = re.compile(r"[^a-z0-9_./-]+")


def label_of(path: str) -> str:
    """The provider's place in the config ("guardrail_providers[2]") from its builder path
    ("guardrails_config.guardrail_providers[2].config"): names it in errors without naming its URL."""
    parts = path.split(".")
    if parts and parts[-1] == "config":
        parts = parts[:-1]
    return parts[-1] if parts else "guardrail"


def token(value: str, limit: int = 48) -> str:
    """A remote party's free text turned into a finding-type suffix: lower case, [a-z0-9_./-] only,
    bounded length. Finding types reach log rows and metric labels, so they must stay short and tame."""
    cleaned = _UNSAFE.sub("_", value.strip().lower()).strip("_")
    return cleaned[:limit] or "unspecified"


async def through_gateway(gateway: Any, endpoint: str, body: dict[str, Any], timeout_s: float, who: str) -> Any:
    """One call of `endpoint` with `body` through the gateway's own routing (its providers, keys, retries,
    fallbacks and pricing), as the semantic cache makes its embeddings (runtime/cache/embed.py): the call
    gets its own request-log row and metrics (ingress "guardrails", no content: neither raw bytes nor the body),
    and pre-hooks do not run, so a guardrail never checks its own calls. Returns the answer's JSON.
    Bounded by `timeout_s`; any failure is a DetectorError "<who>: <cause>" whose cause is the error's
    class and status, never its message (a provider may echo the text it was given)."""
    # Imported here: the core imports nothing of the guardrails, and building a config must not load it.
    from runtime.core.context import RequestContext
    from runtime.core.cost import price
    from runtime.core.flow import fail
    from runtime.errors import GatewayError

    if gateway is None:
        raise DetectorError(f"{who}: the gateway is not bound yet")
    ctx = RequestContext(gateway.new_id(), endpoint, INGRESS)
    ctx.body = body
    try:
        async with asyncio.timeout(timeout_s):
            result = await gateway.complete(ctx, gateway.targets(ctx, body))
        ctx.status = 200
        ctx.usage = result.usage
        if ctx.usage is not None:
            price(ctx, gateway.config.providers)
        return result.data
    except TimeoutError:
        ctx.status = 504
        ctx.error = f"guardrail call timed out after {timeout_s:g}s"
        ctx.error_type = "timeout"
        raise DetectorError(f"{who}: timeout") from None
    except GatewayError as err:
        fail(ctx, err)
        # The error's type is the provider's word: tamed like any remote text (token), its message dropped.
        raise DetectorError(f"{who}: {token(str(err.type), 32)} (status {err.status})") from None
    except asyncio.CancelledError:
        ctx.status = 499
        raise
    except Exception:  # a bug: logged with its traceback, reported as a detector failure
        log.exception("%s: guardrail call failed", who)
        ctx.status = 500
        raise DetectorError(f"{who}: internal error") from None
    finally:
        # The row keeps no content: the body holds the text being checked (the request log reads the
        # messages / input from ctx.body when there are no raw bytes).
        ctx.body = {"model": body.get("model")}
        gateway.finish(ctx)
