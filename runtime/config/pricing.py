"""`providers.<name>.pricing_overrides`: Go Bifrost's per-provider price patches, checked at load time.

Shape (Go's `provider_pricing_override`): `model_pattern` and `match_type` (`exact`, `wildcard` with at
least one `*`, or `regex`) are required; `request_types` optionally limits an override to some request
kinds; every price is a finite number >= 0, in US dollars. Go's rules are kept: an exact pattern may not
contain `*`, a wildcard pattern must, a regex must compile. Prices this runtime does not use (per
character, batch, image-token prices) are accepted with one warning each, as every Go field we lack.
"""

from __future__ import annotations

import math
import re
from types import MappingProxyType
from typing import Any

from runtime.config import fields
from runtime.config.model import PricingOverride

MATCH_TYPES = ("exact", "wildcard", "regex")
REQUEST_TYPES = frozenset(
    {
        "text_completion",
        "text_completion_stream",
        "chat_completion",
        "chat_completion_stream",
        "responses",
        "responses_stream",
        "embedding",
        "rerank",
        "speech",
        "speech_stream",
        "transcription",
        "transcription_stream",
        "image_generation",
        "image_generation_stream",
    }
)
# Prices the cost computation or /v1/models use (runtime/core/cost.py maps them onto catalog entries).
PRICE_FIELDS = frozenset(
    {
        "input_cost_per_token",
        "output_cost_per_token",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost",
        "input_cost_per_token_above_128k_tokens",
        "output_cost_per_token_above_128k_tokens",
        "input_cost_per_token_above_200k_tokens",
        "output_cost_per_token_above_200k_tokens",
        "cache_read_input_token_cost_above_200k_tokens",
        "cache_creation_input_token_cost_above_200k_tokens",
        "input_cost_per_image",
        "output_cost_per_image",
        "input_cost_per_audio_per_second",
        "input_cost_per_video_per_second",
    }
)
OVERRIDE_FIELDS = frozenset({"model_pattern", "match_type", "request_types"}) | PRICE_FIELDS
GO_OVERRIDE_FIELDS = frozenset(fields.properties(fields._DEFS.get("provider_pricing_override", {})))


def parse_pricing_overrides(value: Any, path: str, warnings: list[str] | None) -> tuple[PricingOverride, ...]:
    """The list at `path` -> PricingOverride tuple; ConfigError names the field path of any problem."""
    from runtime.config.load import ConfigError  # load imports this module

    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(path, "expected a list of overrides ({model_pattern, match_type, prices...})")
    out = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(where, "expected an object")
        fields.check_fields(item, where, OVERRIDE_FIELDS, GO_OVERRIDE_FIELDS, warnings)
        pattern = item.get("model_pattern")
        if not isinstance(pattern, str) or not pattern.strip():
            raise ConfigError(f"{where}.model_pattern", "is required: a non-empty string")
        pattern = pattern.strip()
        match_type = item.get("match_type")
        if match_type not in MATCH_TYPES:
            got = "missing" if match_type is None else f"got {match_type!r}"
            raise ConfigError(f"{where}.match_type", f"must be one of {', '.join(MATCH_TYPES)} ({got})")
        if match_type == "exact" and "*" in pattern:
            raise ConfigError(f"{where}.model_pattern", "an exact pattern cannot contain '*' (use match_type wildcard)")
        if match_type == "wildcard" and "*" not in pattern:
            raise ConfigError(f"{where}.model_pattern", "a wildcard pattern needs at least one '*'")
        if match_type == "regex":
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{where}.model_pattern", f"invalid regular expression: {exc}") from None
        request_types = item.get("request_types") or []
        if not isinstance(request_types, list):
            raise ConfigError(f"{where}.request_types", "expected a list of request types")
        for j, kind in enumerate(request_types):
            if kind not in REQUEST_TYPES:
                raise ConfigError(
                    f"{where}.request_types[{j}]",
                    f"unknown request type {kind!r}{fields.suggest(str(kind), REQUEST_TYPES)}",
                )
        prices: dict[str, float] = {}
        for name in PRICE_FIELDS:
            if item.get(name) is None:
                continue
            price = item[name]
            if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price < 0:
                raise ConfigError(f"{where}.{name}", f"expected a number zero or more (US dollars), got {price!r}")
            prices[name] = float(price)
        out.append(PricingOverride(pattern, match_type, tuple(request_types), MappingProxyType(prices)))
    return tuple(out)
