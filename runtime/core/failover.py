"""What a failed attempt leads to: the failure policy, by class of error (docs/failover.md has the table).

Every failure of an attempt is put in one class, and the target's provider config says what that class
does (`providers.<name>.failure_policy`, defaults below):

    class           what it is                                      default         also allowed
    timeout         connect, headers, first token, total            failover        retry
    connection      refused, reset, the upstream hung up            failover        retry
    rate_limit      429                                             retry_after     retry, failover
    server          5xx, an answer we could not read                retry           failover
    context_length  400: the prompt is over the model's window      larger_context  failover, return
    content_policy  400: the provider's content filter refused      return          failover
    auth            401 / 403 from the provider                     next_key        failover, return
    invalid         any other 4xx                                   failover        return

- `failover`: the next target at once (a silent or unreachable provider stays so: asking it again only
  multiplies the wait).
- `retry`: the same target again after the backoff, up to `max_retries`, then the next target.
- `retry_after`: the same target after the provider's `Retry-After` when that fits under
  `retry_backoff_max_ms` (and retries remain), else the next target at once.
- `larger_context`: never resend the same request to the same window. Only targets whose context window
  (the model catalog's) is larger than this one's are tried, the request's fallbacks first, then the
  `client.context_window_fallbacks` of the model; none left: the error is the answer.
- `return`: the error is the client's answer; no other target is tried.
- `next_key`: the same target with another of its keys (each key once), and the failing key is set
  aside for `KEY_COOLDOWN_S` for every request; no key left: the next target.

Errors the gateway raises itself before reaching a provider (a full lane, an unknown model on a
fallback) are not classed: they move on to the next target, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from runtime.errors import GatewayError, ProviderError, UpstreamTimeout, UpstreamUnreachable

FAILOVER = "failover"
RETRY = "retry"
RETRY_AFTER = "retry_after"
LARGER_CONTEXT = "larger_context"
RETURN = "return"
NEXT_KEY = "next_key"

# class -> (default action, every allowed action)
POLICY_TABLE: Mapping[str, tuple[str, frozenset[str]]] = MappingProxyType(
    {
        "timeout": (FAILOVER, frozenset({FAILOVER, RETRY})),
        "connection": (FAILOVER, frozenset({FAILOVER, RETRY})),
        "rate_limit": (RETRY_AFTER, frozenset({RETRY_AFTER, RETRY, FAILOVER})),
        "server": (RETRY, frozenset({RETRY, FAILOVER})),
        "context_length": (LARGER_CONTEXT, frozenset({LARGER_CONTEXT, FAILOVER, RETURN})),
        "content_policy": (RETURN, frozenset({RETURN, FAILOVER})),
        "auth": (NEXT_KEY, frozenset({NEXT_KEY, FAILOVER, RETURN})),
        "invalid": (FAILOVER, frozenset({FAILOVER, RETURN})),
    }
)
DEFAULT_POLICY: Mapping[str, str] = MappingProxyType({name: row[0] for name, row in POLICY_TABLE.items()})

# How long a key that answered 401/403 is set aside for every request (unless it is the only one left).
KEY_COOLDOWN_S = 60.0

# Provider error codes, and phrases of their messages, that mean "the prompt is too long" / "the content
# filter refused". Codes first; the phrases cover providers that send only a message (Anthropic's
# "prompt is too long", vLLM's "maximum context length").
_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length", "model_max_prompt_tokens_exceeded"})
_CONTEXT_PHRASES = (
    "context length",
    "context_length",
    "context window",
    "maximum context",
    "prompt is too long",
    "input is too long",
    "too many tokens",
    "reduce the length",
)
_POLICY_CODES = frozenset(
    {"content_filter", "content_policy_violation", "content_policy", "responsibleaipolicyviolation"}
)
_POLICY_PHRASES = ("content management policy", "content policy", "content filter", "safety system")


def error_class(err: GatewayError) -> str | None:
    """The failure class of an attempt's error; None for the gateway's own errors (not classed)."""
    if isinstance(err, UpstreamTimeout):
        return "timeout"
    if isinstance(err, UpstreamUnreachable):
        return "connection"
    if not isinstance(err, ProviderError):
        return None
    status = err.status
    if status == 429:
        return "rate_limit"
    if status >= 500:
        return "server"
    if status in (401, 403):
        return "auth"
    if 400 <= status < 500:
        code = str(err.code or "").lower()
        message = err.message.lower()
        if code in _CONTEXT_CODES or (status in (400, 413) and any(p in message for p in _CONTEXT_PHRASES)):
            return "context_length"
        kind = str(err.type or "").lower()
        if code in _POLICY_CODES or kind in _POLICY_CODES or any(p in message for p in _POLICY_PHRASES):
            return "content_policy"
        return "invalid"
    return None


def action_for(err: GatewayError, policy: Mapping[str, str]) -> str:
    """What the failure `err` leads to under a provider's `policy` (class -> action)."""
    kind = error_class(err)
    if kind is None:
        return FAILOVER
    return policy.get(kind, DEFAULT_POLICY[kind])


def deadline_passed(seconds: float, attempts: int) -> UpstreamTimeout:
    return UpstreamTimeout(
        f"the request's deadline of {seconds:g}s (client.request_deadline_in_seconds) passed during attempt "
        f"{attempts}; no other target was tried",
        code="request_deadline",
    )


Target = tuple[Any, str]  # (ProviderHandle, upstream model)


class RunRules:
    """What the attempt loop needs from the configuration for one request: the deadline, and where a
    `larger_context` failure may go. Built once per config and router (Gateway.rules), read per request."""

    __slots__ = ("_fallbacks", "_resolve", "_window", "config", "deadline_s", "router")

    def __init__(
        self,
        deadline_s: float | None = None,
        context_fallbacks: Mapping[str, tuple[str, ...]] | None = None,
        window: Callable[[str, str], int | None] | None = None,
        resolve: Callable[[str], Target] | None = None,
        config: Any = None,
        router: Any = None,
    ) -> None:
        self.deadline_s = deadline_s
        self._fallbacks = context_fallbacks or {}
        self._window = window or (lambda provider, model: None)
        self._resolve = resolve
        self.config = config  # what it was built from (Gateway.rules rebuilds it when either changes)
        self.router = router

    @classmethod
    def build(cls, config: Any, router: Any) -> RunRules:
        from runtime.core.cost import book_for

        providers = config.providers

        def window(provider: str, model: str) -> int | None:
            info = book_for(providers).info(provider, model)
            return info.context_window if info is not None else None

        client = config.client
        return cls(
            client.request_deadline_in_seconds, client.context_window_fallbacks, window, router.resolve, config, router
        )

    def larger_context(
        self, ctx: Any, handle: Any, model: str, rest: Sequence[Target], tried: Sequence[Target]
    ) -> list[Target]:
        """The targets a request that overflowed `model`'s window may still go to: the remaining ones whose
        catalog window is larger (an unknown window cannot be compared: skipped), then the model's
        configured `context_window_fallbacks` (trusted as larger), never one already tried."""
        window = self._window(handle.name, model)
        out: list[Target] = []
        if window is not None:
            for target in rest:
                other = self._window(target[0].name, target[1])
                if other is not None and other > window:
                    out.append(target)
        names = (
            self._fallbacks.get(ctx.model_requested)
            or self._fallbacks.get(f"{handle.name}/{model}")
            or self._fallbacks.get(model)
            or ()
        )
        for name in names:
            if self._resolve is None:
                break
            try:
                target = self._resolve(name)
            except GatewayError:
                continue  # a fallback that no longer resolves (provider removed): skipped, not fatal
            if target not in out and target not in tried:
                out.append(target)
        return out


NO_RULES = RunRules()
