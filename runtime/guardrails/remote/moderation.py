"""The `moderation` guardrail: an OpenAI-style moderation model judges each text.

Config (besides the shared `action` / `failure_policy`):
  model       required: "provider/model" (e.g. "openai/omni-moderation-latest") or a name the router resolves
              (a model group). The call goes THROUGH the gateway's own routing: the configured provider, its
              keys, retries and fallbacks, with a request-log row of its own (endpoint "moderations",
              ingress "guardrails"). Any provider whose adapter has the moderations operation will do.
  categories  optional list: only these categories count (default: every category).
  threshold   optional number in (0, 1]: a category counts when its score is >= threshold; without it, a
              category counts when the model flagged it (`categories[c]` is true).

Findings: one whole-part `moderation:<category>` per text and counting category, with the category's score.
Bounded by the provider's timeout; a failed or malformed answer is a DetectorError (failure policy decides).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from runtime.config.load import ConfigError
from runtime.guardrails.detectors.base import check_fields
from runtime.guardrails.remote import label_of, through_gateway, token
from runtime.guardrails.types import DetectorError, Finding, Subject
from runtime.providers.base import MODERATIONS

FIELDS = ("model", "categories", "threshold")


class ModerationDetector:
    kind = "moderation"
    remote = True
    streamable = False

    def __init__(
        self, model: str, categories: frozenset[str] | None, threshold: float | None, timeout_s: float, label: str
    ) -> None:
        self.model = model
        self.categories = categories
        self.threshold = threshold
        self.timeout_s = timeout_s
        self.label = label

    def __repr__(self) -> str:
        return f"<ModerationDetector {self.label} {self.model}>"

    def scan(self, subject: Subject) -> list[Finding]:
        raise DetectorError(f"moderation {self.label}: remote detector, use check()")

    async def check(self, subject: Subject, gateway: Any) -> list[Finding]:
        if not subject.texts:
            return []
        who = f"moderation {self.label}"
        body = {"model": self.model, "input": list(subject.texts)}
        answer = await through_gateway(gateway, MODERATIONS, body, self.timeout_s, who)
        return self.findings(answer, len(subject.texts), who)

    def findings(self, answer: Any, count: int, who: str) -> list[Finding]:
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != count:
            raise DetectorError(f"{who}: bad answer (expected {count} results)")
        out: list[Finding] = []
        for part, result in enumerate(results):
            if not isinstance(result, dict):
                raise DetectorError(f"{who}: bad answer (results[{part}])")
            flags = result.get("categories")
            scores = result.get("category_scores")
            if not isinstance(flags, dict) or not isinstance(scores, dict):
                raise DetectorError(f"{who}: bad answer (results[{part}])")
            names = scores.keys() | flags.keys()
            for name in sorted(names):
                if not isinstance(name, str) or (self.categories is not None and name not in self.categories):
                    continue
                score = _number(scores.get(name))
                hit = (
                    score is not None and score >= self.threshold
                    if self.threshold is not None
                    else flags.get(name) is True
                )
                if hit:
                    out.append(Finding(f"moderation:{token(name)}", part, 0, -1, score))
        return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def build(
    config: Mapping[str, Any], path: str, warnings: list[str], timeout_s: float, policy: str = ""
) -> ModerationDetector:
    check_fields(config, path, FIELDS, "moderation")
    model = config.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{path}.model", 'is required: the moderation model, e.g. "openai/omni-moderation-latest"')
    categories: frozenset[str] | None = None
    if "categories" in config:
        listed = config["categories"]
        if not isinstance(listed, Sequence) or isinstance(listed, str) or not listed:
            raise ConfigError(f"{path}.categories", "must be a non-empty list of category names")
        for i, name in enumerate(listed):
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{path}.categories[{i}]", "must be a category name (e.g. violence)")
        categories = frozenset(listed)
    threshold = config.get("threshold")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise ConfigError(f"{path}.threshold", f"must be a number in (0, 1], got {threshold!r}")
        threshold = float(threshold)
    return ModerationDetector(model, categories, threshold, timeout_s, policy or label_of(path))
