r"""The `regex` guardrail provider: the user's regular expressions (Go Bifrost's shape).

    {"provider_name": "regex", "policy_name": "order-ids",
     "config": {"patterns": [{"pattern": "ORD-\\d{8}", "description": "order id", "flags": "i"}],
                "action": "redact"}}

Go Bifrost compiles RE2 syntax, and so do we: patterns are compiled with Google's RE2 (`google-re2`,
module `re2`), which matches in time linear in the text -- no backtracking, so no pattern an admin
writes can stall the event loop (`^(\w+\s?)*ORD-\d+$` on 5,000 characters takes well under a
millisecond). What RE2 refuses -- backreferences (`\1`), lookahead and lookbehind (`(?=`, `(?<!`),
possessive quantifiers -- is a ConfigError at `...config.patterns[i].pattern` saying why. Flags `i`, `m`,
`s` become RE2's inline flags. One scan reads at most `max_scan_chars` characters of a text (base.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtime.guardrails.detectors.base import SCAN_FIELD, OfflineDetector, check_fields, max_scan_chars
from runtime.guardrails.types import Finding

FIELDS = frozenset({"patterns", SCAN_FIELD})
PATTERN_FIELDS = frozenset({"pattern", "description", "flags"})
FLAGS = "ims"  # RE2's inline flags: case-insensitive, multi-line ^/$, '.' matches a newline
MAX_PATTERNS = 256
LONGEST = 128  # characters: the holdback window regex findings get on a stream (docs/guardrails.md)


class RegexDetector(OfflineDetector):
    kind = "regex"
    remote = False
    streamable = True

    def __init__(self, patterns: list[tuple[Any, str]], timeout_s: float) -> None:
        self.patterns = patterns  # (compiled RE2 pattern, finding type)
        self.timeout_s = timeout_s
        # The longest match a stream's holdback keeps whole (runtime/guardrails/stream.py): a pattern's
        # longest match is not knowable in general; a match longer than this may be split on a stream.
        self.longest = LONGEST

    def _scan_text(self, text: str, part: int, findings: list[Finding]) -> None:
        for pattern, kind in self.patterns:
            findings.extend(
                Finding(kind, part, m.start(), m.end()) for m in pattern.finditer(text) if m.end() > m.start()
            )


def _compile(source: str, flags: str) -> Any:
    """RE2 compile; its error (a bytes message such as b'invalid perl operator: (?<') as text. Errors are
    not logged to stderr by RE2 itself (log_errors off): the ConfigError says it."""
    import re2

    options = re2.Options()
    options.log_errors = False
    return re2.compile(f"(?{flags}:{source})" if flags else source, options)


def _why(exc: Exception) -> str:
    message = exc.args[0] if exc.args else exc
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    if any(k in text for k in ("invalid perl operator", "invalid escape", "repetition operator")):
        text += " (RE2 syntax, as Go: no backreferences, lookahead/lookbehind or possessive quantifiers)"
    return text


def build(config: Mapping[str, Any], path: str, warnings: list[str], timeout_s: float) -> RegexDetector:
    from runtime.config.load import ConfigError, _type_name

    check_fields(config, path, FIELDS, "regex")
    patterns = config.get("patterns")
    if not isinstance(patterns, list) or not patterns:
        raise ConfigError(f"{path}.patterns", 'is required: a list of {"pattern", "description", "flags"}')
    if len(patterns) > MAX_PATTERNS:
        raise ConfigError(f"{path}.patterns", f"has {len(patterns)} entries; at most {MAX_PATTERNS}")
    compiled: list[tuple[Any, str]] = []
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
        try:
            pattern = _compile(text, "".join(sorted(set(flags_text))))
        except Exception as exc:  # re2.error, and a pattern too big for RE2's memory budget
            raise ConfigError(f"{where}.pattern", f"is not a valid RE2 regular expression: {_why(exc)}") from None
        compiled.append((pattern, f"regex:{description.strip() or i}"))
    detector = RegexDetector(compiled, timeout_s)
    detector.max_scan_chars = max_scan_chars(config, path)
    return detector
