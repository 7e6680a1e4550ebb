"""The detector kinds a guardrail provider's `provider_name` may name: one table, imported lazily.

Each row points at a builder `build(config, path, warnings, timeout_s) -> Detector` (runtime/guardrails/
types.py) that checks the kind's own `config` fields (any field it does not know is a ConfigError with
its path: a misspelt entity must not pass as "no check") and returns the ready detector. The fields every
kind shares (`action` / Go's `mode`, `failure_policy`) are read by runtime/guardrails/config.py first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.guardrails.types import BLOCK


@dataclass(frozen=True)
class Kind:
    name: str
    target: str  # "module:function" of the builder
    remote: bool
    default_timeout_s: float
    default_action: str = BLOCK
    summary: str = ""

    def builder(self) -> Callable[..., Any]:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("pii", "runtime.guardrails.detectors.pii:build", False, 1.0, summary="personal data"),
        Kind("secrets", "runtime.guardrails.detectors.secrets:build", False, 1.0, summary="credentials and keys"),
        Kind("regex", "runtime.guardrails.detectors.regex:build", False, 1.0, summary="your regular expressions"),
        Kind("wordlist", "runtime.guardrails.detectors.wordlist:build", False, 1.0, summary="words and phrases"),
        Kind("size", "runtime.guardrails.detectors.size:build", False, 1.0, summary="prompt tokens, messages"),
        Kind("webhook", "runtime.guardrails.remote.webhook:build", True, 5.0, summary="your HTTP service"),
        Kind("moderation", "runtime.guardrails.remote.moderation:build", True, 5.0, summary="OpenAI-style moderation"),
        Kind("llm_judge", "runtime.guardrails.remote.judge:build", True, 10.0, summary="a yes/no question to a model"),
    )
}

# Go Bifrost's (enterprise) guardrail providers this runtime does not implement: configured, each is a
# warning and the provider is skipped (a rule left with no provider does nothing).
GO_ONLY = frozenset(
    {"bedrock", "azure", "model_armor", "model-armor", "grayswan", "gray_swan", "patronus", "crowdstrike", "a10"}
)
