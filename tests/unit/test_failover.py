"""The failure classes (runtime/core/failover.py): each provider error lands in the class whose policy
applies, by code first and by the providers' documented messages otherwise."""

from __future__ import annotations

import pytest

from runtime.core.failover import DEFAULT_POLICY, FAILOVER, RETURN, action_for, error_class
from runtime.errors import (
    InvalidRequest,
    ProviderError,
    QueueFull,
    UpstreamGarbage,
    UpstreamTimeout,
    UpstreamUnreachable,
)


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (UpstreamTimeout("slow", code="first_token_timeout"), "timeout"),
        (UpstreamUnreachable("refused"), "connection"),
        (ProviderError("slow down", status=429), "rate_limit"),
        (ProviderError("boom", status=503), "server"),
        (UpstreamGarbage("not json"), "server"),
        (ProviderError("x", status=400, code="context_length_exceeded"), "context_length"),
        (ProviderError("prompt is too long: 210000 tokens > 200000 maximum", status=400), "context_length"),
        (ProviderError("This model's maximum context length is 8192 tokens", status=400), "context_length"),
        (ProviderError("filtered", status=400, code="content_filter"), "content_policy"),
        (ProviderError("Your request was rejected by our safety system", status=400), "content_policy"),
        (ProviderError("bad key", status=401), "auth"),
        (ProviderError("forbidden", status=403), "auth"),
        (ProviderError("Invalid value for 'temperature'", status=400), "invalid"),
        (ProviderError("not found", status=404), "invalid"),
        (QueueFull("lane full"), None),
        (InvalidRequest("bad"), None),
    ],
)
def test_each_error_lands_in_its_class(err: Exception, kind: str | None) -> None:
    assert error_class(err) == kind  # type: ignore[arg-type]


def test_a_policy_overrides_the_default_of_its_class_only() -> None:
    filtered = ProviderError("x", status=400, code="content_filter")
    assert action_for(filtered, {}) == RETURN == DEFAULT_POLICY["content_policy"]
    assert action_for(filtered, {"content_policy": FAILOVER}) == FAILOVER
    assert action_for(QueueFull("lane full"), {"content_policy": RETURN}) == FAILOVER, "our own errors move on"
