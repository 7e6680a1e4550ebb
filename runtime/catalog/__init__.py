"""The model catalog shipped with the package: prices, context windows, limits and capabilities.

`models.json` (beside this file) is derived from LiteLLM's price list by `gen_catalog.py`, run by hand;
its licence notice is `models_NOTICE.txt`. It is keyed by OUR `provider/model` names. The file is read
once, on the first lookup (a gateway that never prices a request never reads it); each entry becomes a
`ModelInfo` the first time it is asked for.

Matching (`lookup`), in order, first hit wins:
1. the exact `provider/model` (a dated id such as `openai/gpt-4o-2024-08-06` is its own entry, and is
   never priced as its undated alias: snapshots of one model have had different prices);
2. Bedrock: a cross-region inference profile (`us.`, `eu.`, `apac.`, `global.`, ... prefix) or an ARN
   ending in `/<model id>` falls back to the plain model id;
3. Vertex: a `publishers/<p>/models/<model>` path falls back to `<model>`;
4. Azure: a model the catalog has no `azure/` entry for is priced as the same `openai/` model (Azure
   OpenAI bills the OpenAI list prices for global deployments). An Azure *deployment* name is mapped to
   its model through the key's `deployments` before this (runtime/core/cost.py).

Not matched: a provider name the catalog does not know (a custom provider, a local server), models
written in another case, or a model served through a different provider's name (OpenRouter, ...).
Such requests are unpriced (cost NULL, never 0) unless `pricing_overrides` prices them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("bifrost.catalog")
DATA = Path(__file__).with_name("models.json")
NOTICE = Path(__file__).with_name("models_NOTICE.txt")

# Bedrock cross-region inference profile prefixes (`us.anthropic.claude-...`).
_BEDROCK_PROFILES = ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.")
_MISSES_KEPT = 4096  # distinct unknown names remembered as misses; beyond that, recomputed (never grows)


class ModelInfo:
    """One model's catalog entry. Prices are US dollars per token (None: not given)."""

    __slots__ = (
        "cache_read",
        "cache_write",
        "capabilities",
        "context_window",
        "deprecation_date",
        "input",
        "max_output",
        "mode",
        "model",
        "other_prices",
        "output",
        "provider",
        "tiers",
    )

    def __init__(
        self,
        provider: str,
        model: str,
        *,
        input: float | None = None,
        output: float | None = None,
        cache_read: float | None = None,
        cache_write: float | None = None,
        tiers: tuple[tuple[int, float | None, float | None, float | None, float | None], ...] = (),
        context_window: int | None = None,
        max_output: int | None = None,
        mode: str | None = None,
        capabilities: tuple[str, ...] = (),
        deprecation_date: str | None = None,
        other_prices: dict[str, float] | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.input = input
        self.output = output
        self.cache_read = cache_read
        self.cache_write = cache_write
        # (threshold, input, output, cache_read, cache_write): the rates for a request whose prompt is
        # over `threshold` tokens (Gemini 2.5 Pro, Claude's 1M context, ...); None keeps the base rate.
        self.tiers = tiers
        self.context_window = context_window
        self.max_output = max_output
        self.mode = mode
        self.capabilities = capabilities
        self.deprecation_date = deprecation_date
        # Per image, per second, per audio token, ... as given (shown by /v1/models; not used by `cost`,
        # which prices the token counts our Usage carries).
        self.other_prices = other_prices or {}

    @classmethod
    def from_entry(cls, provider: str, model: str, entry: dict[str, Any]) -> ModelInfo:
        known = {"input", "output", "cache_read", "cache_write", "tiers", "context_window", "max_output"}
        known |= {"mode", "capabilities", "deprecation_date"}
        return cls(
            provider,
            model,
            input=entry.get("input"),
            output=entry.get("output"),
            cache_read=entry.get("cache_read"),
            cache_write=entry.get("cache_write"),
            tiers=tuple(tuple(t) for t in entry.get("tiers", ())),  # type: ignore[misc]
            context_window=entry.get("context_window"),
            max_output=entry.get("max_output"),
            mode=entry.get("mode"),
            capabilities=tuple(entry.get("capabilities", ())),
            deprecation_date=entry.get("deprecation_date"),
            other_prices={k: v for k, v in entry.items() if k not in known},
        )

    def replace(self, **changes: Any) -> ModelInfo:
        """A copy with some fields changed (pricing overrides patch a catalog entry this way)."""
        fields = {name: getattr(self, name) for name in self.__slots__ if name not in ("provider", "model")}
        fields.update(changes)
        return ModelInfo(self.provider, self.model, **fields)

    @property
    def priced(self) -> bool:
        """Whether token prices are known (an entry may carry only a context window, or per-image prices)."""
        return self.input is not None or self.output is not None

    def price(self, prompt: int, completion: int, cached: int = 0, cache_write: int = 0) -> float:
        """US dollars for these token counts. `prompt` INCLUDES the cached (read) and cache-write tokens,
        as OpenAI's `prompt_tokens` does: each prompt token is priced once, at its own rate."""
        rate_in, rate_out, rate_read, rate_write = self.input, self.output, self.cache_read, self.cache_write
        for threshold, t_in, t_out, t_read, t_write in self.tiers:  # ascending thresholds
            if prompt <= threshold:
                break
            rate_in = t_in if t_in is not None else rate_in
            rate_out = t_out if t_out is not None else rate_out
            rate_read = t_read if t_read is not None else rate_read
            rate_write = t_write if t_write is not None else rate_write
        rate_in = rate_in or 0.0
        if rate_read is None:
            rate_read = rate_in  # no discount given: a cached token costs what any input token does
        if rate_write is None:
            rate_write = rate_in
        fresh = max(0, prompt - cached - cache_write)
        return fresh * rate_in + cached * rate_read + cache_write * rate_write + completion * (rate_out or 0.0)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provider": self.provider, "model": self.model}
        for name in ("input", "output", "cache_read", "cache_write", "context_window", "max_output", "mode"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.tiers:
            out["tiers"] = [list(t) for t in self.tiers]
        if self.capabilities:
            out["capabilities"] = list(self.capabilities)
        if self.deprecation_date:
            out["deprecation_date"] = self.deprecation_date
        out.update(self.other_prices)
        return out


class Catalog:
    """`provider/model` -> ModelInfo, loaded from `path` on first use (thread-safe: workers may price from
    a thread-pool)."""

    def __init__(self, path: Path = DATA) -> None:
        self.path = path
        self._raw: dict[str, Any] | None = None
        self._infos: dict[str, ModelInfo | None] = {}
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        with self._lock:
            if self._raw is None:
                try:
                    raw = json.loads(self.path.read_text(encoding="utf-8"))
                    if not isinstance(raw, dict):
                        raise ValueError("not a JSON object")
                except (OSError, ValueError) as exc:
                    # A broken install must not fail requests: they are logged unpriced (cost NULL), and
                    # the reason is said once.
                    log.error("model catalog %s unreadable (%s): requests are logged without cost", self.path, exc)
                    raw = {}
                self._raw = raw
            return self._raw

    def __len__(self) -> int:
        return len(self._raw if self._raw is not None else self._load())

    def names(self) -> Iterator[str]:
        return iter(self._raw if self._raw is not None else self._load())

    def exact(self, provider: str, model: str) -> ModelInfo | None:
        name = f"{provider}/{model}"
        info = self._infos.get(name)
        if info is not None:
            return info
        raw = self._raw if self._raw is not None else self._load()
        entry = raw.get(name)
        if entry is None:
            return None
        info = self._infos[name] = ModelInfo.from_entry(provider, model, entry)
        return info

    def lookup(self, provider: str, model: str) -> ModelInfo | None:
        """The entry for `model` served by `provider`, with the fallbacks the module doc lists."""
        key = f"{provider}\0{model}"
        if key in self._infos:
            return self._infos[key]
        info = self.exact(provider, model) or self._fallback(provider, model)
        if info is not None or len(self._infos) < _MISSES_KEPT:
            self._infos[key] = info
        return info

    def _fallback(self, provider: str, model: str) -> ModelInfo | None:
        if provider == "bedrock":
            base = model.rsplit("/", 1)[-1] if model.startswith("arn:") else model
            if base != model and (found := self.exact(provider, base)):
                return found
            for prefix in _BEDROCK_PROFILES:
                if base.startswith(prefix):
                    return self.exact(provider, base[len(prefix) :])
        elif provider == "vertex" and model.startswith("publishers/") and "/models/" in model:
            return self.exact(provider, model.rsplit("/models/", 1)[1])
        elif provider == "azure":
            return self.exact("openai", model)
        return None


CATALOG = Catalog()


def lookup(provider: str, model: str) -> ModelInfo | None:
    """The catalog entry for `provider/model` (our provider names), or None."""
    return CATALOG.lookup(provider, model)


def cost(provider: str, model: str, usage: Any) -> float | None:
    """US dollars for `usage` (runtime.providers.base.Usage) on `provider/model`; None when unpriced."""
    info = CATALOG.lookup(provider, model)
    if info is None or not info.priced or usage is None:
        return None
    return info.price(
        usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, getattr(usage, "cache_write_tokens", 0)
    )
