"""`pii`: personal data in text -- e-mail addresses, phone numbers, payment cards, IBANs, IP addresses and
national identifiers of common countries -- found by regexes, confirmed by libraries.

Candidates come from compiled regexes; a candidate is a finding only once its library says it is valid:
cards by the Luhn checksum (python-stdnum `luhn`) plus length and issuer-prefix sanity, IBANs by
`stdnum.iban`, phones by `phonenumbers`, IPs by `ipaddress`, each national id by its stdnum module.

Speed (docs/guardrails-detectors.md has the numbers): running a dozen regexes over a 2 KB prompt would
cost far more than the budget, so every entity but e-mail needs digits and is looked for only in small
windows around digit clusters (one C-speed regex pass finds them); clusters too short to hold any entity
are skipped without further work. E-mails are looked for only around each '@', IPv6 only around a ':'
between hex digits. Findings never carry the matched text.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runtime.guardrails.detectors.base import (
    SCAN_FIELD,
    OfflineDetector,
    Spans,
    check_fields,
    choose,
    max_scan_chars,
    string_list,
)
from runtime.guardrails.types import Finding

FIELDS = ("entities", "phone_regions", SCAN_FIELD)
DEFAULT_REGIONS = ("US", "GB", "FR", "DE", "IN")

# --- validators (libraries imported at build time, not per call) -------------------------------------

# Possessive runs: a digit run is never re-split when the boundary after it fails (no backtracking).
# Between a card's digit groups: one or two of space, '.', '-', '/', tab, NBSP or a Unicode dash (a text
# with NBSP or dashes is scanned as a normalised copy, where they are ' ' and '-'; kept here for callers
# that scan raw text).
_CARD_SEP = "[ .\\-/\t\u00a0\u2010-\u2015]{1,2}+"
_CARD_RUN = re.compile(r"(?<![\w\-])\d++(?:" + _CARD_SEP + r"\d++)*+(?![\w])")
_GROUP = re.compile(r"\d+")


def _card_prefix_ok(digits: str) -> bool:
    """Issuer (IIN) ranges and lengths of the card networks: Visa 4 (13/16/19), Mastercard 51-55 and
    2221-2720 (16), Amex 34/37 (15), Diners 30/36/38/39 (14-19), Discover/UnionPay/Maestro 6 (16-19),
    JCB 35 (16-19), Maestro 50/56-58 (12-19: we need 13+)."""
    n = len(digits)
    first = digits[0]
    if first == "4":
        return n in (13, 16, 19)
    if first == "5":
        return 16 <= n <= 19
    if first == "2":
        return n == 16 and 2221 <= int(digits[:4]) <= 2720
    if first == "3":
        if digits[:2] in ("34", "37"):
            return n == 15
        return digits[:2] in ("30", "35", "36", "38", "39") and 14 <= n <= 19
    if first == "6":
        return 16 <= n <= 19
    return False


_CARD_FIRST = frozenset("23456")  # the first digits _card_prefix_ok admits
_LUHN: Any = None


def _luhn() -> Any:
    """python-stdnum's luhn module, imported on first use (not per call: an import statement is a lookup)."""
    global _LUHN
    if _LUHN is None:
        from stdnum import luhn

        _LUHN = luhn
    return _LUHN


def _cards(text: str, lo: int, hi: int, spans: Spans) -> list[tuple[int, int]]:
    """Cards: a run of digit groups (single space or dash between them) holds a card when a group-aligned
    stretch of it has 13-19 digits, a card network's prefix and a valid Luhn checksum. Trying the stretches
    matters: '... order 1234 4111 1111 1111 1111' must still find the card after the order number."""
    luhn = _luhn()
    out: list[tuple[int, int]] = []
    for m in _CARD_RUN.finditer(text, lo, hi):
        r0, r1 = m.span()
        if r1 - r0 < 13:
            continue
        # (start, end) offsets of each digit group in text (one group when the run has no separator)
        groups = [(r0, r1)] if text[r0:r1].isdecimal() else [g.span() for g in _GROUP.finditer(text, r0, r1)]
        if not any(text[g0] in _CARD_FIRST for g0, _ in groups):
            continue  # a card starts a group with a network's first digit (_card_prefix_ok): none here
        i = 0
        while i < len(groups):
            found = False
            digits = ""
            for j in range(i, len(groups)):
                g0, g1 = groups[j]
                if g1 - g0 < 3:
                    break  # printed cards group 3+ digits: '4 4 4 4 ...' is no card (and no quadratic scan)
                digits += text[g0:g1]
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and _card_prefix_ok(digits) and luhn.is_valid(digits):
                    start, end = groups[i][0], groups[j][1]
                    if not spans.overlaps(start, end):
                        spans.add(start, end, "credit_card")
                        out.append((start, end))
                    i = j + 1
                    found = True
                    break
            if not found:
                i += 1
    return out


@dataclass(frozen=True, slots=True)
class _Entity:
    """One regex-found, library-validated entity. `min_digits`: a digit cluster with fewer cannot hold it."""

    name: str
    pattern: re.Pattern[str]
    valid: Callable[[str], bool]
    min_digits: int


def _stdnum(module: str) -> Callable[[str], bool]:
    import importlib

    mod = importlib.import_module(f"stdnum.{module}")
    is_valid: Callable[[str], bool] = mod.is_valid
    return is_valid


def _checked(valid: Callable[[str], bool], candidate: str) -> bool:
    """A library's verdict; any error it raises is a "no" (its message could quote the candidate, and a
    detector's exception must never carry text it was checking)."""
    try:
        return bool(valid(candidate))
    except Exception:
        return False


def _ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


_DIGIT_GROUPS = re.compile(r"\d+")
_DATE = re.compile(r"\d{4}[\-/.]\d{1,2}[\-/.]\d{1,2}|\d{1,2}[\-/.]\d{1,2}[\-/.]\d{2,4}")


def _phone_validator(regions: tuple[str, ...]) -> Callable[[str], bool]:
    import phonenumbers

    parse = phonenumbers.parse
    is_valid = phonenumbers.is_valid_number
    national = phonenumbers.format_number
    national_format = phonenumbers.PhoneNumberFormat.NATIONAL
    error = phonenumbers.NumberParseException
    # phonenumbers loads each region's metadata and compiles its patterns on first use (1-4 ms each): do
    # it here, at config load, not in the first request with a phone-like number. A number with another
    # +country code still pays that once per process.
    for region in regions:
        with contextlib.suppress(Exception):
            example = phonenumbers.example_number(region)
            if example is not None:
                is_valid(parse(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL), region))
                is_valid(parse(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164), None))
            is_valid(parse("020 7946 0958", region))

    def valid(candidate: str) -> bool:
        digits = sum(map(candidate.count, "0123456789"))
        if not 7 <= digits <= 15 or _DATE.fullmatch(candidate):
            return False  # dates look like numbers to phonenumbers too
        try:
            if candidate.startswith("+"):
                return bool(is_valid(parse(candidate, None)))
            groups = _DIGIT_GROUPS.findall(candidate)
            if len(groups) == 1 and not candidate.startswith("0"):
                return False  # unformatted digits: an id, a timestamp, an amount far more often than a phone
            for region in regions:
                number = parse(candidate, region)
                if is_valid(number) and _grouped_as(groups, _DIGIT_GROUPS.findall(national(number, national_format))):
                    return True
            return False
        except error:
            return False

    return valid


def _grouped_as(groups: list[str], formatted: list[str]) -> bool:
    """Whether a number written without +CC is grouped as its region formats it (libphonenumber's "exact
    grouping", counted from the end so an omitted trunk '0' does not matter), or not grouped at all:
    '020 7946 0958', '(415) 555-2671', '01 42 68 53 00' are phone numbers; a ZIP+4 code '94105-1234',
    which France would also accept as a number ('09 41 05 12 34'), is not."""

    def cuts(parts: list[str]) -> list[int]:
        out, total = [], 0
        for part in reversed(parts[1:]):
            total += len(part)
            out.append(total)
        return out

    return len(groups) == 1 or cuts(groups) == cuts(formatted)


# Each pattern is bounded on both sides so a candidate is never a slice of a longer number.
_B = r"(?<![\w.\-])"  # not inside a word, a dotted number or a dashed code
_E = r"(?![\w]|[.\-]\w)"
_CF = "[0-9LMNPQRSTUVlmnpqrstuv]"  # codice fiscale digits (omocodia letters included)

# name -> (pattern, stdnum module, min digits). Order = priority when two candidates overlap: strong
# checksums and distinctive shapes first, phones next, then bare-digit ids whose checksums are weak.
_IDS_STRONG: dict[str, tuple[str, str, int]] = {
    "us_ssn": (rf"{_B}\d{{3}}-\d{{2}}-\d{{4}}{_E}", "us.ssn", 9),
    "fr_insee": (rf"{_B}[12] ?\d{{2}} ?\d{{2}} ?(?:\d{{2}}|2[ABab]) ?\d{{3}} ?\d{{3}} ?\d{{2}}{_E}", "fr.nir", 13),
    "it_codice_fiscale": (
        rf"{_B}[A-Za-z]{{6}}{_CF}{{2}}[A-Za-z]{_CF}{{2}}[A-Za-z]{_CF}{{3}}[A-Za-z]{_E}",
        "it.codicefiscale",
        1,
    ),
    "es_dni": (rf"{_B}\d{{8}}-?[A-Za-z]{_E}", "es.dni", 8),
    "es_nie": (rf"{_B}[XYZxyz]-?\d{{7}}-?[A-Za-z]{_E}", "es.nie", 7),
    "br_cpf": (rf"{_B}\d{{3}}\.?\d{{3}}\.?\d{{3}}-?\d{{2}}{_E}", "br.cpf", 11),
}
_IDS_WEAK: dict[str, tuple[str, str, int]] = {
    "de_tax_id": (rf"{_B}\d{{2}} ?\d{{3}} ?\d{{3}} ?\d{{3}}{_E}", "de.idnr", 11),
    "uk_nhs": (rf"{_B}\d{{3}}[ \-]?\d{{3}}[ \-]?\d{{4}}{_E}", "gb.nhs", 10),
    "nl_bsn": (rf"{_B}\d{{4}}\.?\d{{2}}\.?\d{{3}}{_E}", "nl.bsn", 9),
    "in_aadhaar": (rf"{_B}[2-9]\d{{3}}[ \-]?\d{{4}}[ \-]?\d{{4}}{_E}", "in_.aadhaar", 12),
    "ca_sin": (rf"{_B}\d{{3}}[ \-]?\d{{3}}[ \-]?\d{{3}}{_E}", "ca.sin", 9),
    "pl_pesel": (rf"{_B}\d{{11}}{_E}", "pl.pesel", 11),
}
NATIONAL_IDS = (*_IDS_STRONG, *_IDS_WEAK)

# Printed in groups of four (the last shorter) or compact: one way to read it, so no backtracking.
_IBAN = rf"{_B}[A-Z]{{2}}\d{{2}}(?: ?[A-Z0-9]{{4}}){{2,7}}+(?: ?[A-Z0-9]{{1,3}})?{_E}"
_IPV4 = r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)"
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4})(?![\w:]|\.\w)")
# A phone candidate is never a date (2024-09-17, 17/09/2024): phonenumbers would accept some of them.
_NOT_DATE = r"(?!\d{4}[\-/.]\d{1,2}[\-/.]\d{1,2}(?![\w]|[.\-]\d)|\d{1,2}[\-/.]\d{1,2}[\-/.]\d{2,4}(?![\w]|[.\-]\d))"
_PHONE = (
    r"(?<![\w+\-.])" + _NOT_DATE + r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d++(?:[ .\-]\d++){0,5}+"
    r"(?![\w]|[.\-]\w)"
)
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w\-])")
_EMAIL = re.compile(
    r"(?<![\w.%+\-])[A-Za-z0-9._%+\-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w\-])"
)

# Every entity this kind knows, in priority order (the order also names them in docs and errors).
ENTITIES = ("credit_card", "email", "iban", *_IDS_STRONG, "ip_address", "phone", *_IDS_WEAK)
GROUPS = {"national_id": NATIONAL_IDS}

# Digit clusters: 4+ digits with short gaps of letters/separators between them ("GB82 WEST 1234 5698",
# "+1 (415) 555-2671", "192.168.0.1"). Found on a copy of the text where every ASCII digit is '0' and
# every non-ASCII character one '?' (offsets unchanged): the pattern then starts with a literal, which
# `re` finds at C speed instead of trying the pattern at every position (5x faster on prose). Most prose
# numbers ("2023", "3.11") are too short to match at all.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= i <= 0x39 else i for i in range(256))
# Possessive: a gap never holds a digit, so giving characters back could not help; it only cost time.
_CLUSTER = re.compile(rb"0(?:[A-Za-z .\-/():+\t]{0,6}+0){3,}+")
_DATE_SHAPE = re.compile(rb"0000([\-/.])00?\1(?:00?)|00?([\-/.])00?\2(?:00|0000)")
_MIN_CLUSTER = 7  # "1.1.1.1", "X1234567L"'s digits... nothing shorter can hold an entity
_LEFT = 8  # chars before a cluster an entity may start with: "GB" of an IBAN, "RSSMRA" of a codice fiscale, "+("
_LOCAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_HEX = frozenset("0123456789abcdefABCDEF:")


class PiiDetector(OfflineDetector):
    kind = "pii"
    remote = False
    streamable = True
    normalises = True  # full-width digits, zero-width chars: a normalised copy is scanned (base.py)

    def __init__(self, entities: tuple[str, ...], regions: tuple[str, ...], timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.entities = entities
        self.regions = regions
        self._cards = "credit_card" in entities
        self._email = "email" in entities
        self._ipv6 = "ip_address" in entities
        table: list[_Entity] = []
        for name in entities:
            if name == "iban":
                from stdnum import iban

                table.append(_Entity(name, re.compile(_IBAN), iban.is_valid, 8))
            elif name in _IDS_STRONG or name in _IDS_WEAK:
                pattern, module, min_digits = _IDS_STRONG.get(name) or _IDS_WEAK[name]
                table.append(_Entity(name, re.compile(pattern), _stdnum(module), min_digits))
            elif name == "ip_address":
                table.append(_Entity(name, re.compile(_IPV4), _ip, 4))
            elif name == "phone":
                table.append(_Entity(name, re.compile(_PHONE), _phone_validator(regions), 7))
        self._table = tuple(table)
        self._digits = bool(table) or self._cards
        # Findings depend on the entities, the regions and the text only: texts found clean are remembered.
        self.clean_texts = {}

    def _scan_text(self, text: str, part: int, findings: list[Finding]) -> None:
        spans = Spans()
        n = len(text)
        # E-mails and IPv6 first: digits inside an address belong to it, and an IPv6 address with an IPv4
        # tail is one address.
        if self._email and "@" in text:
            self._emails(text, spans)
        if self._ipv6 and ":" in text:
            self._ipv6s(text, spans)
        if self._digits:
            mapped = text.encode("ascii", "replace").translate(_DIGITS_AS_ZERO)
            for m in _CLUSTER.finditer(mapped):
                lo, hi = m.span()
                if hi - lo < _MIN_CLUSTER or _DATE_SHAPE.fullmatch(mapped, lo, hi):
                    continue  # too short for any entity, or a date (common in prose, never an entity)
                wlo = max(0, lo - _LEFT)
                whi = hi
                while whi < n and whi - hi < 4 and (text[whi].isalnum() or text[whi] == "-"):
                    whi += 1  # a trailing check letter (DNI, codice fiscale) belongs to the window
                # + 2: the patterns' end checks see the real next characters, not the window's end.
                self._window(text, (lo, hi), (wlo, min(n, whi + 2)), m.group().count(b"0"), spans)
        findings.extend(spans.findings(part))

    def _window(
        self,
        text: str,
        span: tuple[int, int],
        window: tuple[int, int],
        digits: int,
        spans: Spans,
    ) -> None:
        lo, hi = window
        if self._cards and digits >= 13:
            cards = _cards(text, lo, hi, spans)
            if any(s <= span[0] and span[1] <= e for s, e in cards):
                return  # the whole cluster is a card
        for entity in self._table:
            if digits < entity.min_digits:
                continue
            for m in entity.pattern.finditer(text, lo, hi):
                start, end = m.span()
                if not spans.overlaps(start, end) and _checked(entity.valid, m.group()):
                    spans.add(start, end, entity.name)

    def _emails(self, text: str, spans: Spans) -> None:
        at = text.find("@")
        floor = 0  # the end of the last e-mail: the next one cannot start before it
        n = len(text)
        while at >= 0:
            if at == 0 or at + 1 >= n or not text[at + 1].isalnum() or text[at - 1] not in _LOCAL_CHARS:
                at = text.find("@", at + 1)  # "@john", "a @ b", "@@": no address around this '@'
                continue
            # The domain first, anchored right after the '@' (cheap, and it fails fast on 'a@a@a@...');
            # then the address around this '@', searched only between the last one and the domain's end.
            domain = _DOMAIN.match(text, at + 1)
            if domain is None:
                at = text.find("@", at + 1)
                continue
            m = _EMAIL.search(text, max(floor, at - 64), domain.end())
            nxt = at + 1
            if m is not None and m.start() <= at < m.end():
                start, end = m.span()
                if not spans.overlaps(start, end):
                    spans.add(start, end, "email")
                nxt = floor = end
            at = text.find("@", nxt)

    def _ipv6s(self, text: str, spans: Spans) -> None:
        n = len(text)
        colon = text.find(":")
        while colon >= 0:
            nxt = colon + 1
            # Only a ':' between hex digits or colons, with another ':' within a group's length, can be
            # part of an address ("Note: ...", "at 10:30" are not).
            if (
                (colon == 0 or text[colon - 1] in _HEX)
                and (colon + 1 >= n or text[colon + 1] in _HEX)
                and (text.find(":", colon + 1, colon + 6) > 0 or text.find(":", max(0, colon - 5), colon) >= 0)
            ):
                # An address (45 chars at most) holding a ':' in [colon, colon + 46) lies within
                # [colon - 45, colon + 91): every such address is found here, so the next window starts at
                # colon + 46 (linear in the text even for '1:1:1:...'). A match cut by the window's end is
                # left for the next window.
                lo = max(0, colon - 45)
                hi = min(n, colon + 91)
                for m in _IPV6.finditer(text, lo, hi):
                    start, end = m.span()
                    if end == hi < n:
                        break
                    if ":" in m.group() and not spans.overlaps(start, end) and _ip(m.group()):
                        spans.add(start, end, "ip_address")
                nxt = max(nxt, colon + 46)
            colon = text.find(":", nxt)


def build(config: Mapping[str, Any], path: str, warnings: list[str], timeout_s: float) -> PiiDetector:
    """config: `entities` (default: all; `national_id` stands for every country's id), `phone_regions`
    (where a number written without +country code may be from; default US, GB, FR, DE, IN)."""
    from runtime.config.load import ConfigError

    check_fields(config, path, FIELDS)
    entities = choose(string_list(config, "entities", path), "entities", path, ENTITIES, GROUPS)
    regions = string_list(config, "phone_regions", path)
    chosen_regions: tuple[str, ...]
    if regions is None:
        chosen_regions = DEFAULT_REGIONS
    else:
        import phonenumbers

        known = phonenumbers.SUPPORTED_REGIONS
        for i, region in enumerate(regions):
            if region.upper() not in known:
                raise ConfigError(
                    f"{path}.phone_regions[{i}]",
                    f"'{region}' is not a region phonenumbers knows (ISO 3166 alpha-2: US, GB, ...)",
                )
        if not regions:
            raise ConfigError(f"{path}.phone_regions", "is empty: leave it out for the default regions")
        chosen_regions = tuple(r.upper() for r in regions)
    detector = PiiDetector(entities, chosen_regions, timeout_s)
    detector.max_scan_chars = max_scan_chars(config, path)
    return detector
