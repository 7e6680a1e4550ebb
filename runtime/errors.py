"""Every error the gateway can answer with, in one place.

    GatewayError                      status, type, code, message, param
    ├── InvalidRequest        400     invalid_request_error (malformed JSON, wrong types, missing fields)
    │   ├── UnknownProvider   400     unknown_provider: says which providers are configured
    │   ├── UnknownModel      400     unknown_model: no key on the provider may serve the model
    │   └── UnsupportedOperation 400  unsupported_operation: the provider lacks this endpoint
    ├── AuthenticationRequired 401    virtual_key_required / virtual_key_not_found: governance needs a
    │                                 valid virtual key (runtime/governance/)
    ├── PermissionDenied      403     virtual_key_blocked / provider_blocked / model_blocked: the virtual
    │                                 key is disabled or expired, or does not allow this provider or model
    ├── PayloadTooLarge       413     request_too_large
    ├── QueueFull             429     queue_full: the provider's lane buffer is full and excess is dropped
    ├── QueueTimeout          504     timeout: waited in the lane for longer than the request timeout
    ├── ConnectionPoolTimeout 504     pool_timeout: waited connect_timeout for a free upstream socket
    │                                 (tuning connection_pool_limit[_per_host] all busy); nothing was sent
    ├── ProviderError         (upstream status) the provider answered with an error; keeps its
    │   │                             status and message (is_bifrost_error = False)
    │   ├── UpstreamTimeout   504     timeout (connect, first byte, total, stream idle)
    │   ├── UpstreamUnreachable 502   connection_error
    │   └── UpstreamGarbage   502     bad_response: the provider's body could not be understood
    │       └── UpstreamTooLarge 502  upstream_response_too_large: over client.max_upstream_response_mb
    │                                 (not retried: asking again would bill the same oversized answer)
    ├── ClientGone            499     the client disconnected; only ever logged, never sent
    ├── ClientStalled         408     client_stopped_reading: a stream's client stopped reading for longer
    │                                 than client.stream_write_timeout_in_seconds; only ever logged
    ├── GatewayShutdown       503     gateway_shutdown: the gateway stopped (shutdown grace over) while
    │                                 the request was still running; streams get it as an error event
    ├── BudgetExceeded        402     budget_exceeded: a governance budget cannot cover the request's
    │                                 worst-case cost; names the budget and when it resets (Go: 402)
    ├── UnpricedModel         402     budget_unpriced_model: a budget applies but the model has no price,
    │                                 so its cost cannot be bounded
    ├── RateLimited           429     rate_limited (code request_limited | token_limited): a governance
    │                                 rate limit is used up; Retry-After says when its window resets
    └── InternalError         500     internal_error: a bug of ours; a generic message with the request id
                                      (the exception text never reaches the client: it may hold secrets)

Each error renders as OpenAI's `{"error": {message, type, code, param}}` plus `is_bifrost_error`,
`status_code` and `extra_fields {provider, model_requested, attempts}` (see runtime/http/errors.py).
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    status = 500
    type = "api_error"
    code: str | None = None
    is_bifrost_error = True
    # Whether another attempt (a retry on the same target) may succeed.
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after_s: float | None = None,
        provider_body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.retry_after_s = retry_after_s
        self.provider_body = provider_body

    def describe(self) -> dict[str, Any]:
        """A compact record of this failure for `extra_fields.attempts` and the request log."""
        return {"status": self.status, "type": self.type, "code": self.code, "message": self.message}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class UnknownProvider(InvalidRequest):
    code = "unknown_provider"


class UnknownModel(InvalidRequest):
    code = "unknown_model"


class UnsupportedOperation(InvalidRequest):
    type = "unsupported_operation"
    code = "unsupported_operation"


class AuthenticationRequired(GatewayError):
    """No usable credential for a governed gateway. `type` is Go Bifrost's decision name, so clients
    and dashboards can tell a missing key (`virtual_key_required`) from an unknown one."""

    status = 401
    type = "virtual_key_required"
    code = "virtual_key_required"

    def __init__(self, message: str, *, type: str = "virtual_key_required") -> None:
        super().__init__(message, type=type, code=type)


class PermissionDenied(GatewayError):
    """A valid virtual key that may not make this request (Go Bifrost answers these with 403)."""

    status = 403
    type = "virtual_key_blocked"
    code = "virtual_key_blocked"

    def __init__(self, message: str, *, type: str = "virtual_key_blocked", param: str | None = None) -> None:
        super().__init__(message, type=type, code=type, param=param)


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class QueueFull(GatewayError):
    status = 429
    type = "queue_full"
    code = "queue_full"


class QueueTimeout(GatewayError):
    status = 504
    type = "timeout"
    code = "queue_timeout"


class ConnectionPoolTimeout(GatewayError):
    """No free socket in the upstream client's pool within the connect timeout (runtime.net PoolTimeout).

    The gateway's own congestion, like QueueTimeout, but not the provider lane's: the message names the
    pool setting. Not retried on the same target (the pool is as busy a moment later); fallbacks still run.
    """

    status = 504
    type = "timeout"
    code = "pool_timeout"


class ProviderError(GatewayError):
    """The upstream answered with an error status. Retryable on 429 and 5xx."""

    is_bifrost_error = False

    def __init__(self, message: str, *, status: int, **kw: Any) -> None:
        super().__init__(message, status=status, **kw)
        self.retryable = status == 429 or status >= 500


class UpstreamTimeout(ProviderError):
    is_bifrost_error = True

    def __init__(self, message: str, *, code: str = "timeout") -> None:
        super().__init__(message, status=504, type="timeout", code=code)
        self.retryable = True


class UpstreamUnreachable(ProviderError):
    is_bifrost_error = True

    def __init__(self, message: str) -> None:
        super().__init__(message, status=502, type="connection_error", code="connection_error")
        self.retryable = True


class UpstreamGarbage(ProviderError):
    is_bifrost_error = True

    def __init__(self, message: str) -> None:
        super().__init__(message, status=502, type="bad_response", code="bad_response")
        self.retryable = True


class UpstreamTooLarge(UpstreamGarbage):
    """The answer exceeded client.max_upstream_response_mb. Never retried on the same target: the
    provider would bill the same oversized answer again (a fallback to another target is still tried)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = "upstream_response_too_large"
        self.retryable = False


class ClientGone(GatewayError):
    status = 499
    type = "client_closed_request"
    code = "client_closed_request"


class ClientStalled(GatewayError):
    status = 408
    type = "client_stopped_reading"
    code = "stream_write_timeout"


class GatewayShutdown(GatewayError):
    status = 503
    type = "gateway_shutdown"
    code = "gateway_shutdown"


# -- governance limits (runtime/governance/limits.py) ------------------------------------------------------
class BudgetExceeded(GatewayError):
    """A budget in the caller's chain cannot cover the request's worst-case cost. Go Bifrost answers 402."""

    status = 402
    type = "budget_exceeded"
    code = "budget_exceeded"


class UnpricedModel(GatewayError):
    """A budget applies but the model has no price: its cost cannot be bounded, so it is not sent."""

    status = 402
    type = "budget_exceeded"
    code = "budget_unpriced_model"


class RateLimited(GatewayError):
    """A governance rate limit (requests or tokens per window) is used up. 429 with Retry-After."""

    status = 429
    type = "rate_limited"
    code = "request_limited"


# -- end of governance limits ---------------------------------------------------------------------------------


class GuardrailBlocked(GatewayError):
    """A guardrail rule whose action is `block` found something in the request or in the answer
    (runtime/guardrails/). The message names the rule and the kinds of data found, never the data."""

    status = 400
    type = "guardrail_blocked"
    code = "guardrail_blocked"


class GuardrailUnavailable(GatewayError):
    """A remote guardrail (webhook, moderation, judge) failed or timed out and its policy is fail_closed."""

    status = 503
    type = "guardrail_unavailable"
    code = "guardrail_unavailable"
    retryable = True


class InternalError(GatewayError):
    """An unexpected exception in the gateway. The message names only the request id, so an operator can
    find the traceback in the gateway's stderr; the exception's own text may contain secrets."""

    status = 500
    type = "internal_error"
    code = "internal_error"

    def __init__(self, request_id: str) -> None:
        super().__init__(f"internal error in the gateway (request id {request_id}); the gateway's log has the details")
