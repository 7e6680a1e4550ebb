"""The cost of one request: `price(ctx, providers)` sets `ctx.cost` (US dollars) from `ctx.usage`.

Called once by the relay when the outcome is known, before the post-hooks (so a budget hook settles on
it) and before on_finish (so the log row carries it). Per request it costs one dict look-up and a few
multiplications: the effective rates of each (provider, model, request kind) are resolved once, from
the catalog (runtime/catalog) patched by the provider's `pricing_overrides`, and kept in a `PriceBook`
that is rebuilt only when the providers config is replaced (an admin edit).

`ctx.cost` stays None (NULL in the log, never 0) when there is no usage or nothing prices the model; a
value already set is kept: a hook that answered from a cache sets 0.

Overrides follow Go Bifrost (framework/modelcatalog): the best matching override of the provider wins:
exact over wildcard over regex, then one limited to the request's type over a generic one, then the
pattern with more literal characters, then the first written. Its prices replace the catalog's field
by field. Unlike Go, an override also prices a model the catalog does not know (a self-hosted or new
model), its missing prices counting as 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runtime.catalog import CATALOG, ModelInfo

if TYPE_CHECKING:
    from runtime.config.model import PricingOverride, ProviderConfig
    from runtime.core.context import RequestContext

# Go's request types -> the request kind `price` sees (ctx.endpoint; "responses" for that ingress).
_KINDS = {
    "chat_completion": "chat",
    "chat_completion_stream": "chat",
    "text_completion": "completions",
    "text_completion_stream": "completions",
    "embedding": "embeddings",
    "responses": "responses",
    "responses_stream": "responses",
}
# Go override fields -> ModelInfo fields; tier fields -> (threshold, slot in a ModelInfo tier).
_FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
}
_OTHER = {
    "input_cost_per_image": "input_per_image",
    "output_cost_per_image": "output_per_image",
    "input_cost_per_audio_per_second": "input_per_audio_second",
    "input_cost_per_video_per_second": "input_per_video_second",
}
_TIERS = {
    "input_cost_per_token_above_128k_tokens": (128_000, 1),
    "output_cost_per_token_above_128k_tokens": (128_000, 2),
    "input_cost_per_token_above_200k_tokens": (200_000, 1),
    "output_cost_per_token_above_200k_tokens": (200_000, 2),
    "cache_read_input_token_cost_above_200k_tokens": (200_000, 3),
    "cache_creation_input_token_cost_above_200k_tokens": (200_000, 4),
}
_CACHE_LIMIT = 8192  # distinct (provider, model, kind) rates kept; client-chosen model names cannot grow it further
_MATCH_RANK = {"exact": 0, "wildcard": 1, "regex": 2}


class _Compiled:
    __slots__ = ("kinds", "literal", "order", "override", "rank", "regex")

    def __init__(self, order: int, override: PricingOverride) -> None:
        self.order = order
        self.override = override
        self.rank = _MATCH_RANK[override.match_type]
        self.kinds = frozenset(_KINDS.get(t, t) for t in override.request_types)
        pattern = override.model_pattern
        self.regex: re.Pattern[str] | None = None
        if override.match_type == "wildcard":
            self.regex = re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)
            self.literal = len(pattern.replace("*", ""))
        elif override.match_type == "regex":
            self.regex = re.compile(pattern)
            self.literal = len(pattern)
        else:
            self.literal = len(pattern)

    def matches(self, model: str, kind: str) -> bool:
        if self.kinds and kind not in self.kinds:
            return False
        if self.override.match_type == "exact":
            return model == self.override.model_pattern
        assert self.regex is not None
        # Go: a wildcard matches the whole name; a regex anywhere in it (MatchString).
        if self.override.match_type == "wildcard":
            return self.regex.fullmatch(model) is not None
        return self.regex.search(model) is not None

    def better_than(self, other: _Compiled | None) -> bool:
        if other is None:
            return True
        if self.rank != other.rank:
            return self.rank < other.rank
        if bool(self.kinds) != bool(other.kinds):
            return bool(self.kinds)
        if self.literal != other.literal:
            return self.literal > other.literal
        return self.order < other.order


def patched(base: ModelInfo | None, provider: str, model: str, override: PricingOverride) -> ModelInfo:
    """`base` (or an empty entry) with the override's prices in place of the catalog's."""
    info = base if base is not None else ModelInfo(provider, model)
    changes: dict[str, Any] = {}
    tiers = {t[0]: list(t) for t in info.tiers}
    other = dict(info.other_prices)
    for name, value in override.prices.items():
        if name in _FIELDS:
            changes[_FIELDS[name]] = value
        elif name in _OTHER:
            other[_OTHER[name]] = value
        elif name in _TIERS:
            threshold, slot = _TIERS[name]
            tiers.setdefault(threshold, [threshold, None, None, None, None])[slot] = value
    if base is None and ("input" in changes or "output" in changes or tiers):
        changes.setdefault("input", 0.0)  # the override is all we know: what it does not price is free
        changes.setdefault("output", 0.0)
    changes["tiers"] = tuple(tuple(tiers[t]) for t in sorted(tiers))
    changes["other_prices"] = other
    return info.replace(**changes)


class PriceBook:
    """Effective rates per (provider, model, kind) for one providers config (catalog + its overrides)."""

    def __init__(self, providers: Mapping[str, ProviderConfig]) -> None:
        self.providers = providers
        self._overrides: dict[str, tuple[_Compiled, ...]] = {}
        self._deployments: dict[str, dict[str, str]] = {}  # azure provider -> deployment -> model
        for name, config in providers.items():
            if config.pricing_overrides:
                self._overrides[name] = tuple(_Compiled(i, o) for i, o in enumerate(config.pricing_overrides))
            if config.kind == "azure":
                self._deployments[name] = {
                    deployment: model
                    for key in config.keys
                    if key.azure is not None
                    for model, deployment in key.azure.deployments.items()
                }
        self._rates: dict[tuple[str, str, str], ModelInfo | None] = {}

    def info(self, provider: str, model: str, kind: str = "chat") -> ModelInfo | None:
        """The entry that prices `model` on `provider` for requests of `kind`, overrides applied."""
        key = (provider, model, kind)
        try:
            return self._rates[key]
        except KeyError:
            pass
        info = self._resolve(provider, model, kind)
        if len(self._rates) < _CACHE_LIMIT:
            self._rates[key] = info
        return info

    def _resolve(self, provider: str, model: str, kind: str) -> ModelInfo | None:
        catalog_name = provider
        config = self.providers.get(provider)
        if config is not None and config.kind == "mock" and provider not in self._overrides:
            return None  # the built-in mock costs nothing real: no catalog read for a mock-only gateway
        if config is not None and config.kind == "azure":
            catalog_name = "azure"
            model_for_catalog = self._deployments.get(provider, {}).get(model, model)
        else:
            model_for_catalog = model
        base = CATALOG.lookup(catalog_name, model_for_catalog)
        best: _Compiled | None = None
        for candidate in self._overrides.get(provider, ()):
            if candidate.matches(model, kind) and candidate.better_than(best):
                best = candidate
        if best is not None:
            return patched(base, provider, model, best.override)
        return base


_book: PriceBook | None = None


def book_for(providers: Mapping[str, ProviderConfig]) -> PriceBook:
    """The PriceBook of this providers config (rebuilt when the config object is replaced)."""
    global _book
    book = _book
    if book is None or book.providers is not providers:
        book = _book = PriceBook(providers)
    return book


def price(ctx: RequestContext, providers: Mapping[str, ProviderConfig]) -> None:
    """Set `ctx.cost` from `ctx.usage` (see the module doc). Never raises for an unknown model."""
    usage = ctx.usage
    if usage is None or ctx.cost is not None or not ctx.provider:
        return
    book = _book
    if book is None or book.providers is not providers:
        book = book_for(providers)
    kind = "responses" if ctx.ingress == "responses" else ctx.endpoint
    info = book.info(ctx.provider, ctx.model, kind)
    if info is not None and info.priced:
        ctx.cost = info.price(
            usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.cache_write_tokens
        )


def token_prices(
    provider: str, model: str, fallback: Mapping[str, ProviderConfig] | None = None
) -> tuple[float, float] | None:
    """(dollars per input token, per output token) for budget reservations, overrides applied; None when
    unpriced. Reads the providers config `price` last used (so a live config change applies from the
    next priced request), else `fallback`."""
    book = _book
    if book is None:
        if fallback is None:
            return None
        book = book_for(fallback)
    if provider:
        return _token_prices(book.info(provider, model))
    # A bare model name (no `provider/`): budgets are reserved before routing, so price it as the first
    # configured provider that prices it (the router also sends a bare name to a provider that lists it).
    for name in book.providers:
        prices = _token_prices(book.info(name, model))
        if prices is not None:
            return prices
    return None


def _token_prices(info: ModelInfo | None) -> tuple[float, float] | None:
    if info is None or info.input is None or info.output is None:
        return None
    return info.input, info.output
