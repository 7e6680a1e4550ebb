r"""The `wordlist` guardrail provider: words and phrases, matched as one compiled alternation.

    {"provider_name": "wordlist", "policy_name": "codenames",
     "config": {"words": ["project falcon", "bluebird"], "case_sensitive": false, "whole_words": true,
                "action": "block"}}

Findings are typed `wordlist` (the Fired record names the policy):
the words are configuration, but a finding type never repeats one, so the log shows which list matched,
not which word.

The list is compiled as one trie-shaped regex: words sharing a prefix share one branch
(`proj(?:ect(?:\ falcon)?|ector)`), so a scan tries each position against at most one path per
character instead of against every word (10,000 words: one plain alternation cost ~36 ms per 2 KB).
The space in a phrase matches any whitespace run, and zero-width characters (U+200B-U+200D, U+2060,
U+FEFF) between its words: "project\u00a0 falcon" and "project\u200bfalcon" are "project falcon". A text
with full-width letters or zero-width characters inside a word is read through the normalised copy the
`pii` and `secrets` kinds use (full-width "falcon" and "fal\u200bcon" are "falcon"), spans exact in the
original; a text holding a zero-width character is read twice, with it dropped and as a space.
One scan reads at most `max_scan_chars` characters of a text (base.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from runtime.guardrails.detectors.base import (
    FORMAT_CHARS,
    SCAN_FIELD,
    OfflineDetector,
    check_fields,
    max_scan_chars,
    normalise,
    without_surrogates,
)
from runtime.guardrails.types import Finding

FIELDS = frozenset({"words", "case_sensitive", "whole_words", SCAN_FIELD})
MAX_WORDS = 10_000
# Between a phrase's words: a whitespace run. (Zero-width characters never reach the pattern: a text
# holding one is read through normalised copies, see `_scan_one`.)
_GAP = r"\s+"
_FORMAT = re.compile(f"[{FORMAT_CHARS}]")
_SEP = "\x00"  # a phrase's word break, in the trie (a word never holds NUL after the split)
# A phrase with this many characters between gaps is still matched; held whole on a stream up to here.
_GAP_SLACK = 8


class WordlistDetector(OfflineDetector):
    kind = "wordlist"
    remote = False
    streamable = True
    # Full-width letters, zero-width characters inside a word ('fal\u200bcon'): a normalised copy is
    # scanned (base.py), and the words are normalised the same way when the list is built.
    normalises = True

    def __init__(self, pattern: re.Pattern[str], longest: int, timeout_s: float) -> None:
        self.pattern = pattern
        self.longest = longest  # the longest word: what a stream's holdback must keep
        self.timeout_s = timeout_s

    def _scan_text(self, text: str, part: int, findings: list[Finding]) -> None:
        findings.extend(Finding("wordlist", part, m.start(), m.end()) for m in self.pattern.finditer(text))

    def _scan_one(self, text: str, part: int, findings: list[Finding]) -> None:
        """A zero-width character is either glue inside a word ('fal<ZWSP>con') or an invisible word break
        ('project<ZWSP>falcon'): a text holding one is read both ways, and a span found in either is
        reported (overlapping ones merged)."""
        text = without_surrogates(text)  # RE2 takes UTF-8 (base.py)
        super()._scan_one(text, part, findings)
        if text.isascii() or _FORMAT.search(text) is None:
            return
        copy, origin = normalise(text, format_as=" ")
        spans = [(f.start, f.end) for f in findings if f.part == part]
        for m in self.pattern.finditer(copy):
            start, end = origin[m.start()], origin[m.end() - 1] + 1
            if not any(s < end and start < e for s, e in spans):
                findings.append(Finding("wordlist", part, start, end))
                spans.append((start, end))


def trie_pattern(words: Iterable[str]) -> str:
    """One regex for a set of words, shaped as their prefix trie (single-child chains merged into one
    literal). Where a word ends and a longer one continues, the continuation is an optional group tried
    first, so the longest word at a place wins ("new york city" over "new york")."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # end of a word

    def unit(ch: str) -> str:
        return _GAP if ch == _SEP else re.escape(ch)

    def emit(node: dict[str, Any]) -> str:
        ends = "" in node
        branches: list[str] = []
        for ch in sorted(k for k in node if k):
            literal = unit(ch)
            child = node[ch]
            while len(child) == 1 and "" not in child:  # a chain: one literal, no group per character
                (nxt,) = child
                literal += unit(nxt)
                child = child[nxt]
            if list(child) == [""]:
                branches.append(literal)
            else:
                branches.append(literal + emit(child))
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends:
            return f"(?:{body})?"
        return body

    return emit(root)


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
    # A phrase's words, joined by one _SEP (any whitespace run in the text); lower-cased when matching
    # ignores case, so "Falcon" and "falcon" share a trie branch.
    keys = {_SEP.join(normalise(w)[0].split()) for w in words}
    if not flags["case_sensitive"]:
        keys = {k.lower() for k in keys}
    trie = trie_pattern(keys)
    # Not inside a longer word (a phrase like "c++" ending in a non-word character has no boundary after).
    source = rf"(?<!\w)(?:{trie})(?!\w)" if flags["whole_words"] else f"(?:{trie})"
    try:
        pattern = re.compile(source, 0 if flags["case_sensitive"] else re.IGNORECASE)
    except (RecursionError, OverflowError, re.error):
        raise ConfigError(f"{path}.words", "are too long to compile into one pattern") from None
    longest = max(len(k) + k.count(_SEP) * _GAP_SLACK for k in keys)
    detector = WordlistDetector(pattern, longest, timeout_s)
    detector.max_scan_chars = max_scan_chars(config, path)
    return detector
