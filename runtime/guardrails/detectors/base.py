"""Helpers the offline detectors share: checking their own config fields, and keeping spans disjoint.

Nothing here ever formats a matched value: config errors quote configured names only, and overlap
resolution works on offsets.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import re2

from runtime.guardrails.types import Finding, Subject


def check_fields(config: Mapping[str, Any], path: str, known: Iterable[str], kind: str = "") -> None:
    """A field the kind does not know is an error with its path (a misspelt `entites` must not pass as
    "every entity"). Every kind's builder, offline and remote, checks its config with this."""
    from runtime.config.fields import suggest
    from runtime.config.load import ConfigError

    names = frozenset(known)
    label = f"unknown {kind} field" if kind else "unknown field"
    for name in config:
        if name not in names:
            raise ConfigError(
                f"{path}.{name}", f"{label}{suggest(str(name), names)}; known: {', '.join(sorted(names))}"
            )


# One scan reads at most this many characters of a text (config field `max_scan_chars`): the scans are
# linear, but a 50 MB prompt would still hold the event loop for a long time. The rest of such a text is
# not read; the part gets a whole-part `size:unscanned` finding (a block rule refuses it, redact masks it).
MAX_SCAN_CHARS = 1_000_000
SCAN_FIELD = "max_scan_chars"
# The clean-text memo (OfflineDetector.clean_texts): most prompts repeat a few texts on every request (the
# system prompt, a template's fixed instructions, a cached question), and a text the detector found nothing
# in will find nothing again. Only texts with no findings are kept (the memo never holds a match), each at
# most CLEAN_MEMO_CHARS long, at most CLEAN_MEMO_ENTRIES of them (oldest out first): <= 4 M characters.
CLEAN_MEMO_CHARS = 4096
CLEAN_MEMO_ENTRIES = 1024
UNSCANNED = "size:unscanned"


def max_scan_chars(config: Mapping[str, Any], path: str) -> int:
    """The `max_scan_chars` field: a positive integer (default MAX_SCAN_CHARS), else a ConfigError."""
    from runtime.config.load import ConfigError, _type_name

    value = config.get(SCAN_FIELD, MAX_SCAN_CHARS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{path}.{SCAN_FIELD}", f"must be a positive integer, got {_type_name(value)}")
    return value


# --- formatting tricks: scan a normalised copy, report spans in the original ------------------------------

# Dashes a card or phone is printed with (hyphen, non-breaking hyphen, figure/en/em dash, bar, minus).
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
# Unicode format characters (category Cf, Unicode 14 as this Python's unicodedata has it; a test checks
# the list against unicodedata): zero-width space / joiners, word joiner, BOM, bidi controls, soft hyphen.
FORMAT_CHARS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
# The zeros of every non-ASCII decimal digit block (each is ten consecutive code points, 0-9; Unicode 14,
# checked against unicodedata by a test): Arabic-Indic, Devanagari, ..., full-width, mathematical digits.
DIGIT_ZEROS = (
    0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6, 0xE50,
    0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40,
    0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30, 0x11066,
    0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950,
    0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6,
    0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
)  # fmt: skip
# What a normalised copy changes beyond NFKC: a format char, a dash, a non-ASCII decimal digit. One
# character class, searched with RE2 (a DFA: ~7 us per 2 KB of non-ASCII text; `re` walks a class this
# size range by range, ~150 us).
_SPECIAL = re2.compile(
    "[" + FORMAT_CHARS + _DASHES + "".join(f"{re.escape(chr(z))}-{re.escape(chr(z + 9))}" for z in DIGIT_ZEROS) + "]"
)


def needs_normalising(text: str) -> bool:
    """Whether `text` holds anything the normalised copy would change. ASCII never does (the fast path:
    one C check); other text only when it is not NFKC-normal or holds a format char, a non-ASCII digit
    or a dash."""
    if text.isascii():
        return False
    return not unicodedata.is_normalized("NFKC", text) or _SPECIAL.search(text) is not None


def _map_char(c: str) -> str:
    """What one non-ASCII character becomes in the normalised copy ('' when dropped)."""
    if unicodedata.category(c) == "Cf":
        return ""
    digit = unicodedata.decimal(c, None)
    if digit is not None:
        return str(digit)
    if c in _DASHES:
        return "-"
    return unicodedata.normalize("NFKC", c)


def normalise(text: str, format_as: str = "") -> tuple[str, Sequence[int]]:
    """A copy of `text` a detector can read through formatting tricks: each character NFKC-normalised
    (full-width letters, digits and the full-width at sign become ASCII, NBSP a space), format characters
    (Cf) dropped (or each one `format_as`), every Unicode decimal digit as its ASCII digit, dashes as '-'.
    Also `origin`: for each character of the copy, the index of the original character it came from,
    so a span [s, e) of the copy is [origin[s], origin[e - 1] + 1) of the original (covering any
    dropped characters inside it).

    Each distinct character is mapped once and the copy made by `str.translate` (C speed); the origin
    is the identity when no character is dropped or expanded, else one list comprehension."""
    table: dict[int, str] = {}
    lengths: dict[str, int] = {}
    for c in set(text):
        if c > "\x7f":
            mapped = _map_char(c)
            if format_as and not mapped and unicodedata.category(c) == "Cf":
                mapped = format_as  # the wordlist's second reading: a zero-width char as a word break
            if mapped != c:
                table[ord(c)] = mapped
                if len(mapped) != 1:
                    lengths[c] = len(mapped)
    if not table:
        return text, range(len(text))
    changed = sum(text.count(chr(o)) for o in table)
    if changed * 16 < len(text):
        # A few changed characters in a long text (one zero-width space in a prompt): walk to each of
        # them; everything between is copied, and its origin is a range.
        parts: list[str] = []
        origin: list[int] = []
        pos = 0
        for m in re.finditer("[" + re.escape("".join(chr(o) for o in table)) + "]", text):
            i = m.start()
            parts.append(text[pos:i])
            origin.extend(range(pos, i))
            mapped = table[ord(text[i])]
            parts.append(mapped)
            origin.extend([i] * len(mapped))
            pos = i + 1
        parts.append(text[pos:])
        origin.extend(range(pos, len(text)))
        return "".join(parts), origin
    copy = text.translate(table)  # many: str.translate, ~50 ns a character
    if not lengths:
        return copy, range(len(text))
    if all(k == 0 for k in lengths.values()):  # only drops (zero-width characters)
        return copy, [i for i, c in enumerate(text) if c not in lengths]
    return copy, [i for i, c in enumerate(text) for _ in range(lengths.get(c, 1))]


_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> str:
    """`text` with each lone UTF-16 surrogate (legal in JSON, not text) as U+FFFD: one character for one,
    so spans stay the same. RE2 (and `needs_normalising`) take UTF-8 and raise on one: without this, a
    client's "\\ud800" crashed every RE2 detector (a 500)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


class OfflineDetector:
    """What the offline detectors share: no I/O (`check` is `scan`), and `scan` = `_scan_text` over each
    text of the subject, each read up to `max_scan_chars` characters."""

    remote = False
    streamable = True
    max_scan_chars = MAX_SCAN_CHARS
    normalises = False  # True: scan a normalised copy of a text holding formatting tricks (see normalise)
    # The clean-text memo (CLEAN_MEMO_CHARS): short texts in which the scan found nothing, skipped next time.
    # A detector opts in by setting it to {} in its __init__: only one whose findings depend on its config
    # and the text alone (no clock, no counter, no I/O).
    clean_texts: dict[str, None] | None = None

    async def check(self, subject: Subject, gateway: Any) -> list[Finding]:  # the protocol's remote half
        return self.scan(subject)

    def scan(self, subject: Subject) -> list[Finding]:
        findings: list[Finding] = []
        cap = self.max_scan_chars
        clean = self.clean_texts
        for part, text in enumerate(subject.texts):
            if not text:
                continue
            if len(text) > cap:
                self._scan_one(text[:cap], part, findings)
                findings.append(Finding(UNSCANNED, part))
            elif clean is not None and len(text) <= CLEAN_MEMO_CHARS:
                if text in clean:
                    continue  # scanned before and nothing found: the same text finds nothing again
                found = len(findings)
                self._scan_one(text, part, findings)
                if len(findings) == found:
                    self._remember_clean(clean, text)
            else:
                self._scan_one(text, part, findings)
        return findings

    @staticmethod
    def _remember_clean(clean: dict[str, None], text: str) -> None:
        if len(clean) >= CLEAN_MEMO_ENTRIES:
            # The oldest goes (insertion order). A scan in a worker thread (a large subject, engine.run)
            # may change the dict between the two steps: then the memo starts over.
            try:
                del clean[next(iter(clean))]
            except (RuntimeError, StopIteration, KeyError):
                clean.clear()
        clean[text] = None

    def _scan_one(self, text: str, part: int, findings: list[Finding]) -> None:
        text = without_surrogates(text)
        if not (self.normalises and needs_normalising(text)):
            self._scan_text(text, part, findings)
            return
        copy, origin = normalise(text)
        found: list[Finding] = []
        if copy:
            self._scan_text(copy, part, found)
        for f in found:
            if f.whole:
                findings.append(f)
            else:
                findings.append(Finding(f.type, part, origin[f.start], origin[f.end - 1] + 1, f.score))

    def _scan_text(self, text: str, part: int, findings: list[Finding]) -> None:
        raise NotImplementedError


def string_list(config: Mapping[str, Any], key: str, path: str) -> list[str] | None:
    """config[key] as a list of strings (None when absent), else a ConfigError naming the item."""
    from runtime.config.load import ConfigError, _type_name

    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise ConfigError(f"{path}.{key}", f"must be a list of strings, got {_type_name(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f"{path}.{key}[{i}]", f"must be a string, got {_type_name(item)}")
    return value


def choose(
    names: list[str] | None, key: str, path: str, known: Iterable[str], groups: Mapping[str, tuple[str, ...]]
) -> tuple[str, ...]:
    """The names a `types`/`entities` list selects, in the kind's own (priority) order; None: all.
    A group name (`national_id`) stands for its members; an unknown name is a ConfigError with a hint."""
    from runtime.config.fields import suggest
    from runtime.config.load import ConfigError

    order = tuple(known)
    if names is None:
        return order
    chosen: set[str] = set()
    for i, name in enumerate(names):
        if name in groups:
            chosen.update(groups[name])
        elif name in order:
            chosen.add(name)
        else:
            every = (*order, *groups)
            raise ConfigError(
                f"{path}.{key}[{i}]", f"unknown name '{name}'{suggest(name, every)}; known: {', '.join(every)}"
            )
    if not chosen:
        raise ConfigError(f"{path}.{key}", "is empty: leave it out to check everything")
    return tuple(n for n in order if n in chosen)


class Spans:
    """The disjoint spans one text's findings occupy, sorted by start: whether a new candidate overlaps one
    is a binary search (a text with thousands of findings must not cost a quadratic scan)."""

    __slots__ = ("ends", "starts", "types")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.types: list[str] = []

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect_right(self.starts, start)
        # Disjoint and sorted: only the span starting at or before `start` and the next one can overlap.
        return (i > 0 and self.ends[i - 1] > start) or (i < len(self.starts) and self.starts[i] < end)

    def add(self, start: int, end: int, kind: str) -> None:
        i = bisect_right(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, end)
        self.types.insert(i, kind)

    def findings(self, part: int) -> list[Finding]:
        return [Finding(k, part, s, e) for s, e, k in zip(self.starts, self.ends, self.types, strict=True)]
