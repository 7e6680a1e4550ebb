"""The offline detectors after the security review: long secrets survive a stream's holdback (secrets
`longest`, `partial` spans of unfinished JWTs / SAS queries, bounded key blocks), formatting tricks do not
hide PII or keys (a normalised copy is scanned, spans mapped back), user regexes run on RE2 (linear
time), one scan reads at most `max_scan_chars` characters (the rest is a `size:unscanned` finding), and
a 10,000-word list is one trie-shaped regex.

Every value is made up and assembled at run time so no literal here looks like a live credential."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from runtime.config.load import ConfigError
from runtime.guardrails.detectors import secrets
from runtime.guardrails.types import Subject
from tests.guardrails.test_engine_stream import chunk, make_filter, texts


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


SIG = "Q2hhbmdlTWVQbGVhc2VUaGlzSXNBRmFrZVNpZ25hdHVyZUZvclRlc3RpbmdPbmx5MTIz%3D"
SAS = (
    "https://acct.blob.core.windows.net/c/file.txt?sv=2022-11-02&ss=bfqt&srt=sco&sp=rwdlacupiytfx"
    "&se=2025-12-31T23:59:59Z&st=2024-01-01T00:00:00Z&spr=https&skoid=6c1a1b2c-1234-4cde-9f00-abcdefabcdef"
    "&sktid=72f988bf-86f1-41af-91ab-2d7cd011db47&skt=2024-01-01T00:00:00Z&ske=2025-12-31T00:00:00Z&sks=b"
    "&skv=2022-11-02&sig=" + SIG
)
# A JWT with a long payload: far longer than the default 128-character stream window.
LONG_JWT = ".".join([_b64({"alg": "HS256", "typ": "JWT"}), _b64({"sub": "x", "claims": "c" * 600}), "S" * 43 + "fl_Kx"])


def secrets_provider(action: str = "redact") -> dict[str, Any]:
    return {"id": 1, "provider_name": "secrets", "policy_name": "s", "config": {"action": action}}


async def _stream(text: str, providers: list[dict[str, Any]], step: int = 12) -> str:
    f, _, _ = make_filter(providers, _rules())
    sent: list[dict[str, Any]] = []
    for i in range(0, len(text), step):
        sent += await f.feed([chunk(text[i : i + step])])
    sent += await f.feed([chunk(finish="stop")])
    sent += await f.finish()
    return texts(sent)


def _rules() -> list[dict[str, Any]]:
    return [{"id": 1, "name": "r1", "cel_expression": "true", "apply_to": "output", "provider_config_ids": [1]}]


def detector(**config: Any) -> secrets.SecretsDetector:
    return secrets.build(config, "p.config", [], 1.0)


# --- 1. long secrets on streams -------------------------------------------------------------------------


def test_secrets_longest_covers_jwts_and_sas_urls() -> None:
    d = detector()
    assert d.longest >= len(SAS) and d.longest >= len(LONG_JWT)
    found = d.scan(Subject("output", ["url " + SAS, "t " + LONG_JWT]))
    assert [f.type for f in found] == ["azure_sas_token", "jwt"]


@pytest.mark.parametrize("secret", [SAS, LONG_JWT])
async def test_long_secret_split_across_small_chunks_is_masked_on_a_stream(secret: str) -> None:
    out = await _stream("Here it is: " + secret + " - use it soon.", [secrets_provider()])
    assert SIG not in out and "fl_Kx" not in out
    assert out.startswith("Here it is: ") and out.endswith(" - use it soon.") and "[REDACTED:" in out


def test_partial_spans_of_unfinished_candidates_at_the_end() -> None:
    d = detector()
    jwt_head = LONG_JWT[:300]
    assert d.partial("token: " + jwt_head) == [(7, 7 + len(jwt_head))]
    sas_head = SAS[: SAS.index("&sig=")]
    start = len("link ") + sas_head.index("sv=")
    assert d.partial("link " + sas_head) == [(start, len("link ") + len(sas_head))]
    # Not at the end, finished, or plain prose: nothing to hold.
    assert d.partial("token: " + jwt_head + " done") == []
    assert d.partial("just words here, eyJ is not at the end.") == []
    # Only the types this detector checks; a run longer than `longest` is not held for ever.
    assert detector(types=["aws_access_key"]).partial("token: " + jwt_head) == []
    assert d.partial("token: eyJ" + "a" * (d.longest + 10)) == []


def test_unterminated_key_block_is_bounded_but_a_terminated_one_is_whole() -> None:
    d = detector()
    body = ("MIIEowIBAAKCAQEA" * 4 + "\n") * 400  # ~27 KB of key body, no END line
    text = "-----BEGIN RSA PRIVATE KEY-----\n" + body
    (f,) = d.scan(Subject("output", [text]))
    assert f.type == "private_key" and f.start == 0
    # The header and the key body after it (base64 lines), bounded: a stream's hold stays bounded too.
    assert len("-----BEGIN RSA PRIVATE KEY-----") + d.longest < f.end <= len("-----BEGIN RSA PRIVATE KEY-----") + 8192
    # A header alone, then prose: the prose is not part of the finding.
    (h,) = d.scan(Subject("output", ["-----BEGIN PRIVATE KEY----- (that is how a PEM file starts)."]))
    assert h.end == len("-----BEGIN PRIVATE KEY----- ")
    block = "-----BEGIN RSA PRIVATE KEY-----\n" + body[:3300] + "-----END RSA PRIVATE KEY-----"
    (g,) = d.scan(Subject("output", ["x " + block + " y"]))
    assert (g.start, g.end) == (2, 2 + len(block))  # an RSA-4096-sized block is masked whole


# --- 3. user regexes on RE2 ------------------------------------------------------------------------------


def regex_detector(*patterns: Any, **config: Any) -> Any:
    from runtime.guardrails.detectors import regex

    return regex.build({"patterns": list(patterns), **config}, "p.config", [], 1.0)


def test_catastrophic_pattern_is_linear_on_re2() -> None:
    # Python's backtracking `re` takes 2^40 steps here (hours); RE2 answers at once.
    d = regex_detector({"pattern": r"^(\w+\s?)*ORD-\d+$", "description": "order line"})
    assert d.scan(Subject("input", ["a" * 40 + "!"])) == []
    (f,) = d.scan(Subject("input", ["see ORD-1234"]))
    assert (f.type, f.start, f.end) == ("regex:order line", 0, 12)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "backreference"),
        (r"foo(?=bar)", "lookahead"),
        (r"(?<!x)foo", "lookahead/lookbehind"),
        (r"a++", "possessive"),
        ("(unclosed", "missing )"),
    ],
)
def test_patterns_re2_refuses_are_config_errors_with_a_reason(pattern: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        regex_detector({"pattern": "ok"}, {"pattern": pattern})
    assert err.value.path == "p.config.patterns[1].pattern"
    assert "RE2" in str(err.value) and why in str(err.value)


def test_flags_map_to_re2() -> None:
    text = "Line one\nORD-1 x\nord-2"
    assert [
        text[f.start : f.end] for f in regex_detector({"pattern": r"ord-\d", "flags": "i"}).scan(Subject("i", [text]))
    ] == ["ORD-1", "ord-2"]
    assert [
        text[f.start : f.end]
        for f in regex_detector({"pattern": r"^ord-\d$", "flags": "im"}).scan(Subject("i", [text]))
    ] == ["ord-2"]
    assert [
        text[f.start : f.end] for f in regex_detector({"pattern": r"one.ORD", "flags": "s"}).scan(Subject("i", [text]))
    ] == ["one\nORD"]
    assert regex_detector({"pattern": r"one.ORD"}).scan(Subject("i", [text])) == []


def test_spans_are_character_offsets_with_non_ascii_text() -> None:
    text = "café ☕ naïve ORD-77 ✓"
    (f,) = regex_detector({"pattern": r"ORD-\d+"}).scan(Subject("i", [text]))
    assert text[f.start : f.end] == "ORD-77"


# --- 4. max_scan_chars -----------------------------------------------------------------------------------


def _kinds() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("pii", {}),
        ("secrets", {}),
        ("regex", {"patterns": [{"pattern": r"ORD-\d+"}]}),
        ("wordlist", {"words": ["falcon"]}),
    ]


@pytest.mark.parametrize(("kind", "config"), _kinds())
def test_text_beyond_max_scan_chars_is_an_unscanned_finding(kind: str, config: dict[str, Any]) -> None:
    import importlib

    build = importlib.import_module(f"runtime.guardrails.detectors.{kind}").build
    d = build({**config, "max_scan_chars": 100}, "p.config", [], 1.0)
    short = "x " * 40
    assert d.scan(Subject("i", [short])) == []
    long = "x " * 40 + "y" * 200
    (f,) = d.scan(Subject("i", ["ok", long]))
    assert (f.type, f.part, f.whole) == ("size:unscanned", 1, True)
    # The default is 1,000,000 characters; the field is checked.
    assert build(config, "p.config", [], 1.0).max_scan_chars == 1_000_000
    for bad in (0, -1, "10", 1.5, True):
        with pytest.raises(ConfigError) as err:
            build({**config, "max_scan_chars": bad}, "p.config", [], 1.0)
        assert err.value.path == "p.config.max_scan_chars"


# --- 4. wordlist: a trie-shaped regex; phrases across any whitespace / zero-width run --------------------


def words_detector(words: list[str], **config: Any) -> Any:
    from runtime.guardrails.detectors import wordlist

    return wordlist.build({"words": words, **config}, "p.config", [], 1.0)


@pytest.mark.parametrize(
    "text",
    [
        "project falcon",
        "project  falcon",
        "project\nfalcon",
        "project\u00a0falcon",
        "project\u200bfalcon",
        "project \u200b falcon",
        "PROJECT\tFalcon",
    ],
)
def test_phrase_matches_across_whitespace_and_zero_width_runs(text: str) -> None:
    (f,) = words_detector(["project falcon"]).scan(Subject("i", ["see " + text + "."]))
    assert (f.start, f.end) == (4, 4 + len(text))


def test_phrase_not_matched_when_glued_or_hyphenated() -> None:
    d = words_detector(["project falcon"])
    assert d.scan(Subject("i", ["projectfalcon project-falcon"])) == []


def test_trie_matches_what_a_plain_alternation_matches() -> None:
    import random
    import re

    rng = random.Random(7)
    alphabet = "abcde"
    words = sorted({"".join(rng.choices(alphabet, k=rng.randint(1, 6))) for _ in range(300)})
    plain = re.compile(
        r"(?<!\w)(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")(?!\w)", re.I
    )
    d = words_detector(words)
    for _ in range(200):
        text = " ".join("".join(rng.choices(alphabet + "AB", k=rng.randint(1, 7))) for _ in range(12))
        expected = [m.span() for m in plain.finditer(text)]
        assert [(f.start, f.end) for f in d.scan(Subject("i", [text]))] == expected


def test_longest_word_wins_and_ten_thousand_words_compile() -> None:
    d = words_detector(["new york", "new york city", "new"])
    text = "in New York City today"
    (f,) = d.scan(Subject("i", [text]))
    assert text[f.start : f.end] == "New York City"
    big = words_detector([f"w{i:05d}x" for i in range(10_000)])
    (g,) = big.scan(Subject("i", ["a w04242x b w4242x"]))
    assert (g.start, g.end) == (2, 9)


# --- 2. formatting tricks: a normalised copy is scanned, spans are exact in the original ----------------

CARD_DIGITS = "4111111111111111"


def pii_detector(**config: Any) -> Any:
    from runtime.guardrails.detectors import pii

    return pii.build(config, "p.config", [], 1.0)


def _card(sep: str) -> str:
    return sep.join(CARD_DIGITS[i : i + 4] for i in range(0, 16, 4))


@pytest.mark.parametrize(
    "card",
    [
        _card("."),
        _card("/"),
        _card("\t"),
        _card("  "),
        _card("\u00a0"),
        _card("\u2013"),
        _card("\u2014"),
        _card("\u200b"),
        _card(" \u200b"),
        "\uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11",
        "".join(chr(0x0660 + int(d)) for d in CARD_DIGITS),  # Arabic-Indic digits
        "".join(chr(0x0966 + int(d)) for d in CARD_DIGITS),  # Devanagari digits
        "4111\u200d111111111111",
    ],
)
def test_card_formatting_tricks_are_found_with_exact_spans(card: str) -> None:
    text = "pay with " + card + " today"
    (f,) = pii_detector(entities=["credit_card"]).scan(Subject("i", [text]))
    assert (f.type, text[f.start : f.end]) == ("credit_card", card)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("mail john\u200b.doe@example.com now", "john\u200b.doe@example.com"),
        ("mail john.doe\uff20example.com now", "john.doe\uff20example.com"),
        ("mail \uff4a\uff4f\uff48\uff4e@example.com now", "\uff4a\uff4f\uff48\uff4e@example.com"),
    ],
)
def test_email_formatting_tricks(text: str, value: str) -> None:
    (f,) = pii_detector(entities=["email"]).scan(Subject("i", [text]))
    assert (f.type, text[f.start : f.end]) == ("email", value)


@pytest.mark.parametrize(
    "key",
    [
        "AKIA\u200bIOSFODNN7EXAMPLE",
        "AKIAIOSF\u2060ODNN7EXAMPLE",
        "\uff21\uff2b\uff29\uff21IOSFODNN7EXAMPLE",
        "\ufeffAKIAIOSFODNN7EXAMPLE",
    ],
)
def test_aws_key_formatting_tricks(key: str) -> None:
    text = "café key " + key + " ok"
    (f,) = detector().scan(Subject("i", [text]))
    assert f.type == "aws_access_key"
    assert text[f.start : f.end] == key.lstrip("\ufeff")  # a dropped BOM before the key is not in it


def test_ascii_and_plain_unicode_text_is_not_normalised() -> None:
    from runtime.guardrails.detectors.base import needs_normalising

    assert not needs_normalising("plain ascii 4111 1111 1111 1111")
    assert not needs_normalising("café 東京 naïve, no wait")
    assert needs_normalising("café — wait")  # a dash: cards and phones are printed with them
    assert needs_normalising("4111\u20131111")


def test_format_char_list_matches_unicodedata() -> None:
    import re
    import unicodedata

    from runtime.guardrails.detectors.base import FORMAT_CHARS

    listed = re.compile(f"[{FORMAT_CHARS}]")
    for c in range(0x80, 0x110000):
        is_cf = unicodedata.category(chr(c)) == "Cf"
        assert is_cf == bool(listed.match(chr(c))), hex(c)


def test_normalised_spans_in_a_mixed_text_map_back_exactly() -> None:
    text = "naïve ☕ \uff4a@example.com and 4111\u200b1111\u200b1111\u200b1111, phone +44\u00a020\u00a07946\u00a00958"
    found = {(f.type, text[f.start : f.end]) for f in pii_detector().scan(Subject("i", [text]))}
    assert ("email", "\uff4a@example.com") in found
    assert ("credit_card", "4111\u200b1111\u200b1111\u200b1111") in found
    assert ("phone", "+44\u00a020\u00a07946\u00a00958") in found


def test_digit_blocks_match_unicodedata() -> None:
    import unicodedata

    from runtime.guardrails.detectors.base import DIGIT_ZEROS, needs_normalising

    zeros = {c for c in range(0x80, 0x110000) if unicodedata.decimal(chr(c), None) == 0}
    assert zeros == set(DIGIT_ZEROS)
    for z in DIGIT_ZEROS:
        assert needs_normalising("x" + chr(z + 7)) and unicodedata.decimal(chr(z + 9)) == 9


async def test_key_block_on_a_stream_is_refused_by_a_block_rule_before_any_of_it_is_sent() -> None:
    from runtime.errors import GuardrailBlocked

    line = "MIIEowIBAAKCAQEAzZ9yX3kQ1p8Lm2Vb7Hc5Jd0Ee4Rf6Tg8Yh1Uj3Ik5Ol7Pq9Ws2Xt4Za6Nb8Mc0"
    block = "-----BEGIN RSA PRIVATE KEY-----\n" + (line + "\n") * 100 + "-----END RSA PRIVATE KEY-----"
    f, _, _ = make_filter([secrets_provider("block")], _rules())
    sent: list[dict[str, Any]] = []
    with pytest.raises(GuardrailBlocked):
        text = "key:\n" + block
        for i in range(0, len(text), 40):
            sent += await f.feed([chunk(text[i : i + 40])])
        sent += await f.finish()  # the block may be refused as soon as it is whole, or at the end: never sent
    assert "MIIE" not in texts(sent) and "BEGIN" not in texts(sent)
    # A 4096-bit RSA block (~3.3 KB) with redact is masked whole: held until its END line arrives.
    block = "-----BEGIN RSA PRIVATE KEY-----\n" + (line + "\n") * 40 + "-----END RSA PRIVATE KEY-----"
    out = await _stream("key:\n" + block + "\nbye", [secrets_provider()], step=40)
    assert out == "key:\n[REDACTED:private_key]\nbye"


@pytest.mark.parametrize("filler", [0, 4000])  # many changed characters (translate) / a few (walk to each)
def test_normalise_origin_maps_every_copied_character_back(filler: int) -> None:
    import random
    import unicodedata

    from runtime.guardrails.detectors.base import _map_char, normalise

    rng = random.Random(filler)
    pool = "ab4 @.-\u200b\u2060\ufeff\u00a0\u2013\uff14\uff20\uff21\u0664\u0966\ufb01\u00bd\u00e9\u6771"
    for _ in range(50):
        text = "x" * rng.randint(0, filler) + "".join(rng.choices(pool, k=rng.randint(0, 40)))
        copy, origin = normalise(text)
        assert len(origin) == len(copy) and list(origin) == sorted(origin)
        rebuilt: dict[int, str] = {}
        for ch, i in zip(copy, origin, strict=True):
            rebuilt[i] = rebuilt.get(i, "") + ch
        for i, c in enumerate(text):
            # ASCII is kept, format chars dropped, digits as ASCII digits, the rest NFKC (or '-').
            assert rebuilt.get(i, "") == (c if c.isascii() else _map_char(c))
        assert _map_char("\u200b") == "" and _map_char("\u0664") == "4" and _map_char("\uff20") == "@"
        assert _map_char("\u2013") == "-" and _map_char("\u00a0") == " " and unicodedata.category("\u2060") == "Cf"


def test_secrets_allow_patterns_run_on_re2() -> None:
    key = "AKIA" + "IOSFODNN7EXAMPLE"
    # Compiled by RE2 (linear time whatever the entry), with RE2's meaning: a full match of the value.
    d = detector(allow=["([A-Z0-9]+)+!"])
    assert [f.type for f in d.scan(Subject("i", ["key " + key]))] == ["aws_access_key"]
    assert detector(allow=["AKIA[A-Z0-9]*"]).scan(Subject("i", ["key " + key])) == []
    assert detector(allow=["(?=AKIA)AKIA.*"]).scan(Subject("i", ["key " + key]))  # not RE2: a literal only
    assert type(detector(allow=["x.*"])._allow_patterns[0]).__module__.startswith("re2")


@pytest.mark.parametrize(
    "text", ["fal\u200bcon", "\uff46\uff41\uff4c\uff43\uff4f\uff4e", "FAL\u00adCON", "fal\u2060con"]
)
def test_word_with_format_chars_or_full_width_letters_inside(text: str) -> None:
    (f,) = words_detector(["falcon"]).scan(Subject("i", ["the " + text + " flies"]))
    assert (f.start, f.end) == (4, 4 + len(text))


def test_words_in_the_list_are_normalised_too() -> None:
    (f,) = words_detector(["\uff46\uff41\uff4c\uff43\uff4f\uff4e"]).scan(Subject("i", ["a falcon"]))
    assert (f.start, f.end) == (2, 8)


@pytest.mark.parametrize("kind", ["pii", "secrets", "regex", "wordlist"])
def test_a_lone_surrogate_is_no_crash_and_spans_stay_exact(kind: str) -> None:
    """JSON lets a client send "\\ud800" (not text); RE2 takes UTF-8 and raised on it: a 500 for every
    request with one, with any RE2-backed detector configured."""
    from runtime.guardrails.kinds import KINDS

    config: dict[str, Any] = {
        "pii": {"entities": ["email"]},
        "secrets": {},
        "regex": {"patterns": [{"pattern": "falcon", "description": "bird"}]},
        "wordlist": {"words": ["falcon"]},
    }[kind]
    detector = KINDS[kind].builder()(config, "p.config", [], 1.0)
    value = {"pii": "jane@example.com", "secrets": "AKIA" + "Q3EGRIXZ7YB5NC2W"}.get(kind, "falcon")
    text = f"\ud800 x {value} \udc00 fal\u200b\ud800con"
    found = detector.scan(Subject("input", [text]))
    assert any(text[f.start : f.end] == value for f in found), found
