"""The `wordlist` guardrail provider: words and phrases, matched as one compiled alternation.

    {"provider_name": "wordlist", "policy_name": "codenames",
     "config": {"words": ["project falcon", "bluebird"], "case_sensitive": false, "whole_words": true,
                "action": "block"}}

Findings are typed `wordlist` (the Fired record names the policy):
the words are configuration, but a finding type never repeats one, so the log shows which list matched,
not which word.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from runtime.guardrails.detectors.base import check_fields
from runtime.guardrails.types import Finding, Subject

FIELDS = frozenset({"words", "case_sensitive", "whole_words"})
MAX_WORDS = 10_000


class WordlistDetector:
    kind = "wordlist"
    remote = False
    streamable = True

    def __init__(self, pattern: re.Pattern[str], longest: int, timeout_s: float) -> None:
        self.pattern = pattern
        self.longest = longest  # the longest word: what a stream's holdback must keep
        self.timeout_s = timeout_s

    def scan(self, subject: Subject) -> list[Finding]:
        out: list[Finding] = []
        for part, text in enumerate(subject.texts):
            if text:
                out.extend(Finding("wordlist", part, m.start(), m.end()) for m in self.pattern.finditer(text))
        return out

    async def check(self, subject: Subject, gateway: Any) -> list[Finding]:
        return self.scan(subject)


def build(config: Mapping[str, Any], path: str, warnings: list[str], timeout_s: float) -> WordlistDetector:
    from runtime.config.load import ConfigError, _type_name

    check_fields(config, path, FIELDS, "wordlist")
    words = config.get("words")
    if not isinstance(words, list) or not words:
        raise ConfigError(f"{path}.words", "is required: a list of words or phrases")
    if len(words) > MAX_WORDS:
        raise ConfigError(f"{path}.words", f"has {len(words)} entries; at most {MAX_WORDS}")
    for i, word in enumerate(words):
        if not isinstance(word, str) or not word.strip():
            raise ConfigError(f"{path}.words[{i}]", f"must be a non-empty string, got {_type_name(word)}")
    flags: dict[str, bool] = {}
    for name, default in (("case_sensitive", False), ("whole_words", True)):
        value = config.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{path}.{name}", f"must be true or false, got {_type_name(value)}")
        flags[name] = value
    # Longest first, so that "new york city" wins over "new york" at the same place.
    alternation = "|".join(re.escape(w.strip()) for w in sorted({w.strip() for w in words}, key=len, reverse=True))
    # \b only where the word itself starts / ends with a word character (a phrase like "c++" has none).
    source = rf"(?<!\w)(?:{alternation})(?!\w)" if flags["whole_words"] else f"(?:{alternation})"
    pattern = re.compile(source, 0 if flags["case_sensitive"] else re.IGNORECASE)
    return WordlistDetector(pattern, max(len(w) for w in words), timeout_s)
