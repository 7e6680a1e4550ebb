"""The `regex` guardrail provider: the user's regular expressions (Go Bifrost's shape).

    {"provider_name": "regex", "policy_name": "order-ids",
     "config": {"patterns": [{"pattern": "ORD-\\d{8}", "description": "order id", "flags": "i"}],
                "action": "redact"}}

Go compiles RE2 syntax; Python's `re` accepts the RE2 subset users write (classes, quantifiers, groups,
`(?P<name>...)`, inline flags). A pattern that does not compile is a ConfigError at
`...config.patterns[i].pattern`. Python's engine backtracks, so a pathological pattern could take long
on a long text: every text is scanned in bounded windows (SEGMENT characters, overlapping by OVERLAP),
which bounds the work of one search call whatever the text's size; a match longer than OVERLAP that
straddles two windows may be missed (documented in docs/guardrails.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from runtime.guardrails.detectors.base import check_fields
from runtime.guardrails.types import Finding, Subject

FIELDS = frozenset({"patterns"})
PATTERN_FIELDS = frozenset({"pattern", "description", "flags"})
FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}
SEGMENT = 8192  # characters one search call sees at most
OVERLAP = 512  # consecutive windows share this much, so a match up to this long is never cut
MAX_PATTERNS = 256
LONGEST = 128  # characters: the holdback window regex findings get on a stream (docs/guardrails.md)


class RegexDetector:
    kind = "regex"
    remote = False
    streamable = True

    def __init__(self, patterns: list[tuple[re.Pattern[str], str]], timeout_s: float) -> None:
        self.patterns = patterns  # (compiled, finding type)
        self.timeout_s = timeout_s
        # The longest match a stream's holdback keeps whole (runtime/guardrails/stream.py): a pattern's
        # longest match is not knowable in general; a match longer than this may be split on a stream.
        self.longest = LONGEST

    def scan(self, subject: Subject) -> list[Finding]:
        out: list[Finding] = []
        for part, text in enumerate(subject.texts):
            if not text:
                continue
            for pattern, kind in self.patterns:
                out.extend(_search(pattern, kind, part, text))
        return out

    async def check(self, subject: Subject, gateway: Any) -> list[Finding]:
        return self.scan(subject)


def _search(pattern: re.Pattern[str], kind: str, part: int, text: str) -> list[Finding]:
    if len(text) <= SEGMENT:
        return [Finding(kind, part, m.start(), m.end()) for m in pattern.finditer(text) if m.end() > m.start()]
    seen: set[tuple[int, int]] = set()
    out: list[Finding] = []
    at = 0
    while at < len(text):
        window = text[at : at + SEGMENT]
        for m in pattern.finditer(window):
            span = (at + m.start(), at + m.end())
            if span[1] > span[0] and span not in seen:
                seen.add(span)
                out.append(Finding(kind, part, span[0], span[1]))
        if at + SEGMENT >= len(text):
            break
        at += SEGMENT - OVERLAP
    return out


def build(config: Mapping[str, Any], path: str, warnings: list[str], timeout_s: float) -> RegexDetector:
    from runtime.config.load import ConfigError, _type_name

    check_fields(config, path, FIELDS, "regex")
    patterns = config.get("patterns")
    if not isinstance(patterns, list) or not patterns:
        raise ConfigError(f"{path}.patterns", 'is required: a list of {"pattern", "description", "flags"}')
    if len(patterns) > MAX_PATTERNS:
        raise ConfigError(f"{path}.patterns", f"has {len(patterns)} entries; at most {MAX_PATTERNS}")
    compiled: list[tuple[re.Pattern[str], str]] = []
    for i, item in enumerate(patterns):
        where = f"{path}.patterns[{i}]"
        if isinstance(item, str):  # a bare string is accepted as {"pattern": ...}
            item = {"pattern": item}
        if not isinstance(item, dict):
            raise ConfigError(where, f"must be an object, got {_type_name(item)}")
        for name in item:
            if name not in PATTERN_FIELDS:
                raise ConfigError(
                    f"{where}.{name}", f"is not a pattern field; known: {', '.join(sorted(PATTERN_FIELDS))}"
                )
        text = item.get("pattern")
        if not isinstance(text, str) or not text:
            raise ConfigError(f"{where}.pattern", "is required: a regular expression")
        description = item.get("description", "")
        if not isinstance(description, str):
            raise ConfigError(f"{where}.description", f"must be a string, got {_type_name(description)}")
        flags_text = item.get("flags", "")
        if not isinstance(flags_text, str) or any(c not in FLAGS for c in flags_text):
            raise ConfigError(f"{where}.flags", f"must be a combination of {', '.join(FLAGS)}, got {flags_text!r}")
        flags = 0
        for c in flags_text:
            flags |= FLAGS[c]
        try:
            pattern = re.compile(text, flags)
        except (re.error, OverflowError, RecursionError) as exc:
            raise ConfigError(f"{where}.pattern", f"is not a valid regular expression: {exc}") from None
        compiled.append((pattern, f"regex:{description.strip() or i}"))
    return RegexDetector(compiled, timeout_s)
