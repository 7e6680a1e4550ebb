"""Key selection (weights, allow-lists, exclusion) and retry timing (backoff, jitter, Retry-After)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from runtime.config.model import KeyConfig, NetworkConfig
from runtime.core.keys import NO_KEY, KeySelector
from runtime.core.retry import backoff_seconds, retry_delay
from runtime.errors import InvalidRequest, ProviderError, UpstreamTimeout

A = KeyConfig("a", "ka", weight=3)
B = KeyConfig("b", "kb", weight=1)
ONLY_MINI = KeyConfig("mini", "km", models=("gpt-4o-mini",))


def test_weighted_choice_follows_weights() -> None:
    sel = KeySelector((A, B), rng=random.Random(7))
    counts = Counter(sel.select("m").name for _ in range(8000))  # type: ignore[union-attr]
    share = counts["a"] / 8000
    assert 0.72 < share < 0.78, counts


def test_allow_list_limits_keys_to_their_models() -> None:
    sel = KeySelector((ONLY_MINI,))
    assert sel.select("gpt-4o-mini") is ONLY_MINI
    assert sel.select("gpt-4o") is None
    mixed = KeySelector((ONLY_MINI, B))
    assert {mixed.select("gpt-4o").name for _ in range(50)} == {"b"}  # type: ignore[union-attr]


def test_exclude_avoids_the_failed_key_when_another_exists() -> None:
    sel = KeySelector((A, B))
    assert all(sel.select("m", exclude=(A,)) is B for _ in range(50))
    single = KeySelector((A,))
    assert single.select("m", exclude=(A,)) is A


def test_providers_without_keys_use_the_empty_key() -> None:
    assert KeySelector(()).select("anything") is NO_KEY


NET = NetworkConfig(max_retries=3, retry_backoff_initial_ms=100, retry_backoff_max_ms=1000)


@pytest.mark.parametrize(("attempt", "base"), [(1, 0.1), (2, 0.2), (3, 0.4), (5, 1.0)])
def test_backoff_doubles_with_twenty_percent_jitter_and_cap(attempt: int, base: float) -> None:
    low = backoff_seconds(attempt, NET, rand=0.0)
    high = backoff_seconds(attempt, NET, rand=1.0)
    assert low == pytest.approx(base * 0.8)
    assert high == pytest.approx(min(base * 1.2, 1.0))


def test_retry_after_wins_when_under_the_cap_and_gives_up_when_over() -> None:
    err = ProviderError("slow down", status=429, retry_after_s=0.5)
    assert retry_delay(err, 1, NET) == 0.5
    long = ProviderError("slow down", status=429, retry_after_s=30)
    assert retry_delay(long, 1, NET) is None


def test_only_retryable_errors_within_budget_are_retried() -> None:
    assert retry_delay(InvalidRequest("bad"), 1, NET) is None
    assert retry_delay(ProviderError("nope", status=400), 1, NET) is None
    assert retry_delay(ProviderError("boom", status=503), 1, NET) is not None
    assert retry_delay(UpstreamTimeout("slow"), 3, NET) is not None
    assert retry_delay(UpstreamTimeout("slow"), 4, NET) is None
