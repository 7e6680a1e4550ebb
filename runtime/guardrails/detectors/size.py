"""`size`: whole-request limits -- prompt tokens, message count, characters -- and the answer's size.

Tokens are estimated, not counted: no tokenizer is installed, and one would cost far more than the rest
of the guardrails. The estimate is UTF-8 bytes / 4, rounded up (OpenAI's rule of thumb for English;
it over-counts code and under-counts some scripts, so leave a margin). Images, audio and tool schemas
are not counted: only the texts the stage hands the detectors (`Subject.texts`).

Findings concern the whole request (end = -1), on the part holding the most text: a size limit is for
`block` or `flag`; `redact` would mask that whole part. Not streamable: a stream's answer is measured once,
at its end (the engine's job).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtime.guardrails.detectors.base import check_fields
from runtime.guardrails.types import INPUT, Finding, Subject

INPUT_LIMITS = ("max_prompt_tokens", "max_messages", "max_chars")
OUTPUT_LIMITS = ("max_output_tokens", "max_output_chars")
FIELDS = (*INPUT_LIMITS, *OUTPUT_LIMITS)


def estimate_tokens(texts: list[str]) -> int:
    """UTF-8 bytes / 4, rounded up; an ASCII text's length is its byte count (no encoding needed)."""
    total = 0
    for text in texts:
        total += len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return (total + 3) // 4


def _message_count(body: Mapping[str, Any] | None) -> int:
    if body is None:
        return 0
    messages = body.get("messages")
    if isinstance(messages, list):
        return len(messages)
    items = body.get("input")  # the Responses API's input items
    return len(items) if isinstance(items, list) else 0


class SizeDetector:
    kind = "size"
    remote = False
    streamable = False

    def __init__(self, limits: Mapping[str, int], timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.limits = dict(limits)
        self.max_prompt_tokens = limits.get("max_prompt_tokens")
        self.max_messages = limits.get("max_messages")
        self.max_chars = limits.get("max_chars")
        self.max_output_tokens = limits.get("max_output_tokens")
        self.max_output_chars = limits.get("max_output_chars")

    async def check(self, subject: Subject, gateway: Any) -> list[Finding]:  # the protocol's remote half
        return self.scan(subject)

    def scan(self, subject: Subject) -> list[Finding]:
        texts = subject.texts
        part = max(range(len(texts)), key=lambda i: len(texts[i])) if texts else 0
        found: list[str] = []
        if subject.stage == INPUT:
            chars = sum(map(len, texts))
            if self.max_prompt_tokens is not None and estimate_tokens(texts) > self.max_prompt_tokens:
                found.append("size:prompt_tokens")
            if self.max_messages is not None and _message_count(subject.body) > self.max_messages:
                found.append("size:messages")
            if self.max_chars is not None and chars > self.max_chars:
                found.append("size:chars")
        else:
            if self.max_output_tokens is not None and estimate_tokens(texts) > self.max_output_tokens:
                found.append("size:output_tokens")
            if self.max_output_chars is not None and sum(map(len, texts)) > self.max_output_chars:
                found.append("size:output_chars")
        return [Finding(kind, part, 0, -1) for kind in found]


def build(config: Mapping[str, Any], path: str, warnings: list[str], timeout_s: float) -> SizeDetector:
    """config: any of max_prompt_tokens, max_messages, max_chars (the request), max_output_tokens,
    max_output_chars (the answer); positive integers; at least one."""
    from runtime.config.load import ConfigError, _type_name

    check_fields(config, path, FIELDS)
    limits: dict[str, int] = {}
    for name in FIELDS:
        value = config.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}.{name}", f"must be a positive integer, got {_type_name(value)}")
        if value <= 0:
            raise ConfigError(f"{path}.{name}", f"must be a positive integer, got {value}")
        limits[name] = value
    if not limits:
        raise ConfigError(path, f"a size guardrail needs at least one limit: {', '.join(FIELDS)}")
    return SizeDetector(limits, timeout_s)
