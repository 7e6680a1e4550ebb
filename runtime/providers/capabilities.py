"""Which provider format supports which endpoint and feature: one table, read by the adapters (their
`operations`), by GET /v1/capabilities and by docs/providers.md.

An operation missing here makes the engine answer 400 `unsupported_operation` naming the provider,
before any network traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.providers.base import CHAT, COMPLETIONS, EMBEDDINGS, MODERATIONS

COUNT_TOKENS = "count_tokens"  # Anthropic's /v1/messages/count_tokens and Gemini's countTokens

# Chat features every native adapter translates (system prompt, multi-turn, tools incl. parallel calls
# and streamed tool calls, images, JSON mode, stop sequences, usage); listed per format for the docs.
CHAT_FEATURES = ("streaming", "tools", "parallel_tools", "images", "json_mode", "stop", "usage")


@dataclass(frozen=True, slots=True)
class Capability:
    operations: frozenset[str]
    features: tuple[str, ...]
    notes: str = ""


def _cap(ops: tuple[str, ...], features: tuple[str, ...] = CHAT_FEATURES, notes: str = "") -> Capability:
    return Capability(frozenset(ops), features, notes)


CAPABILITIES: dict[str, Capability] = {
    "openai": _cap(
        (CHAT, COMPLETIONS, EMBEDDINGS, MODERATIONS),
        (*CHAT_FEATURES, "cached_tokens"),
        "OpenAI wire format, forwarded as is",
    ),
    "azure": _cap(
        (CHAT, COMPLETIONS, EMBEDDINGS), (*CHAT_FEATURES, "cached_tokens"), "deployment URLs and api-key header"
    ),
    "mock": _cap((CHAT, COMPLETIONS, EMBEDDINGS), ("streaming", "usage"), "in-process, deterministic"),
    "anthropic": _cap(
        (CHAT, COUNT_TOKENS),
        (*CHAT_FEATURES, "cached_tokens", "pdf"),
        "max_tokens defaults to 4096; JSON mode is a forced tool",
    ),
    "gemini": _cap(
        (CHAT, EMBEDDINGS, COUNT_TOKENS), (*CHAT_FEATURES, "cached_tokens", "pdf"), "embeddings carry no token usage"
    ),
    "vertex": _cap(
        (CHAT, EMBEDDINGS, COUNT_TOKENS),
        (*CHAT_FEATURES, "cached_tokens"),
        "Gemini models, Claude models (rawPredict) and text embeddings (predict)",
    ),
    "bedrock": _cap(
        (CHAT, EMBEDDINGS),
        (*CHAT_FEATURES, "cached_tokens"),
        "Converse/ConverseStream; Titan embeddings take one input per request, Cohere embeddings many",
    ),
    "cohere": _cap((CHAT, EMBEDDINGS), CHAT_FEATURES, "v2 chat and embed"),
}


def operations_for(kind: str) -> frozenset[str]:
    return CAPABILITIES[kind].operations


def describe(kind: str) -> dict[str, Any]:
    cap = CAPABILITIES.get(kind)
    if cap is None:  # a kind registered later without a row: claim only what its adapter says
        return {"operations": [], "features": [], "notes": ""}
    return {"operations": sorted(cap.operations), "features": list(cap.features), "notes": cap.notes}
