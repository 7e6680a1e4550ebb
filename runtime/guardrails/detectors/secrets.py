"""`secrets`: credentials in text -- cloud keys, provider API keys, tokens, JWTs, private key blocks, and
(opt-in) generic `password=` / `api_key:` assignments of high-entropy values.

The patterns are detect-secrets' where it has one: its plugin classes are imported at build time and
their `denylist` regexes used as they are (AWS key ids and quoted secret keys, GitHub, GitLab, Slack,
Stripe, OpenAI's legacy keys, Azure storage account keys, SendGrid, PyPI, Square, Twilio, Mailchimp), its
private-key header list names what starts a key block, and its JWT check (`is_formally_valid`: each part
base64url, header and payload JSON) confirms a JWT. Our own patterns cover what it lacks: today's
OpenAI project/service keys, Anthropic, Google API and OAuth client secrets, Hugging Face, Groq and xAI
keys, AWS secret keys in unquoted assignments, Azure SAS signatures, whole PEM / PuTTY key blocks.

Speed: every secret but a key block is one long token (20+ characters of letters, digits and
`_-+/=.%:&`). A copy of the text with each token character mapped to 'x' and everything else to ' '
lets a C substring search for 20 'x's jump from one long token to the next; prose has few. In each long
token (and the 64 characters before it, where an `aws_secret_access_key =` stands), one regex of every
rule's literal anchors (`AKIA`, `ghp_`, `sk-ant-`, `T3BlbkFJ`...) says which rules can match there, and
only those run, on that window only. Key blocks are looked for when the text holds `PRIVATE KEY` or
PuTTY's header. Findings carry spans, never the value.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
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

FIELDS = ("types", "allow", "entropy", SCAN_FIELD)
GENERIC = "generic_secret"
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
# Long tokens: where every secret but a key block lives (the shortest, an AWS key id, has 20 characters).
_LONG_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/=.%:&")
_TOKEN_MAP = bytes(0x78 if i in _LONG_CHARS else 0x20 for i in range(256))  # token char -> 'x', else ' '
_LONG = b"x" * 20
_CONTEXT = 64  # chars before a long token a match may start at ('aws_secret_access_key = "...')
# The longest secret a stream must hold back whole (runtime/guardrails/stream.py reads `longest`): JWTs
# and Azure SAS URLs run to a few hundred characters, often more than a thousand. A key block with no END
# line is masked over at most this many characters after its BEGIN line, so a stream's hold is bounded.
LONGEST = 2048
# A key block's END line is looked for this far after BEGIN (an RSA-8192 PEM block is ~6.3 KB): a block
# that long is masked whole in a whole text; without END in reach it is masked over LONGEST characters.
BLOCK_MAX = 8192
# Unfinished candidates at the end of a text (`partial`): a JWT still being written (an `eyJ` token
# run), an Azure SAS query whose `sig=` has not arrived yet (`sv=YYYY-` and no whitespace after it).
_PARTIAL = (
    re.compile(r"(?<![\w\-])eyJ[A-Za-z0-9_\-.]*\Z"),
    re.compile(r"\bsv=\d{4}-[^\s\"'<>]*\Z"),
)


@dataclass(frozen=True, slots=True)
class _Rule:
    """One way to find one type of secret. `anchors`: literals one of which every match contains (or, for AWS
    secret keys, the 64 characters before it); `group`: the span reported (0: the whole match);
    `extend`: widen the span over the rest of the token (detect-secrets matches a prefix of some keys:
    a redaction must mask all of it); `valid`: a library check on the candidate."""

    type: str
    pattern: re.Pattern[str]
    anchors: tuple[str, ...]
    group: int = 0
    extend: bool = False
    valid: Callable[[str], bool] | None = None


def _ds(module: str, cls: str) -> Any:
    import importlib

    return getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), cls)


def _denylist(module: str, cls: str) -> list[re.Pattern[str]]:
    return list(_ds(module, cls).denylist)


def _edge(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """detect-secrets' token regexes, not preceded by a token character (so 'xghp_...' is not a GitHub
    token cut out of a longer identifier); flags kept."""
    return re.compile(r"(?<![A-Za-z0-9_\-])(?:" + pattern.pattern + ")", pattern.flags)


def _rules() -> dict[str, list[_Rule]]:
    """type -> its rules, in report order. Built once per process (the first build)."""
    aws_id, aws_secret_quoted = _denylist("aws", "AWSKeyDetector")
    private_headers = tuple(p.pattern for p in _denylist("private_key", "PrivateKeyDetector"))
    jwt_valid: Callable[[str], bool] = _ds("jwt", "JwtTokenDetector").is_formally_valid
    slack_token, slack_webhook = _denylist("slack", "SlackDetector")
    pem_anchors = (*(h for h in private_headers if h.startswith("BEGIN")), "BEGIN ENCRYPTED PRIVATE KEY")
    r: dict[str, list[_Rule]] = {
        "private_key": [
            # The END line must repeat the BEGIN label (\1, \2; "( BLOCK|)" so \2 always takes part: a
            # reference to a group that did not match never matches). No END (yet: a stream): the header and
            # the key body that follows it, base64 lines and their Proc-Type/DEK-Info headers, up to
            # BLOCK_MAX; prose after a header alone stops it at its first other character.
            _Rule(
                "private_key",
                re.compile(
                    r"-{4,5} ?BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK|) ?-{4,5}"
                    rf"(?:.{{0,{BLOCK_MAX}}}?-{{4,5}} ?END \1PRIVATE KEY\2 ?-{{4,5}}"
                    rf"|[A-Za-z0-9+/=\s:,-]{{0,{BLOCK_MAX}}})",
                    re.S,
                ),
                pem_anchors,
            ),
            _Rule(
                "private_key",
                re.compile(
                    rf"PuTTY-User-Key-File-\d+:(?:.{{0,{BLOCK_MAX}}}?Private-MAC: ?[0-9a-fA-F]+|.{{0,{LONGEST}}})", re.S
                ),
                tuple(h for h in private_headers if h.startswith("PuTTY")) or ("PuTTY-User-Key-File",),
            ),
        ],
        "aws_access_key": [_Rule("aws_access_key", _edge(aws_id), ("AKIA", "ASIA", "ABIA", "ACCA", "A3T"))],
        "aws_secret_key": [
            _Rule("aws_secret_key", aws_secret_quoted, ("aws", "AWS", "Aws"), group=1),
            _Rule(
                "aws_secret_key",
                re.compile(
                    r"aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])", re.I
                ),
                ("secret", "SECRET", "Secret"),
                group=1,
            ),
        ],
        "jwt": [
            _Rule(
                "jwt",
                re.compile(r"(?<![\w\-])eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"),
                ("eyJ",),
                valid=jwt_valid,
            )
        ],
        "github_token": [
            *(
                _Rule("github_token", _edge(p), ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"))
                for p in _denylist("github_token", "GitHubTokenDetector")
            ),
            _Rule("github_token", re.compile(r"(?<![\w\-])github_pat_[A-Za-z0-9_]{70,}"), ("github_pat_",)),
        ],
        "gitlab_token": [
            _Rule(
                "gitlab_token",
                _edge(p),
                (
                    "glpat-",
                    "gldt-",
                    "glft-",
                    "glsoat-",
                    "glrt-",
                    "GR1348941",
                    "glcbt-",
                    "glimt-",
                    "glptt-",
                    "glagent-",
                    "gloas-",
                ),
            )
            for p in _denylist("gitlab_token", "GitLabTokenDetector")
        ],
        "slack_token": [_Rule("slack_token", _edge(slack_token), ("xox", "XOX", "Xox"))],
        "slack_webhook": [_Rule("slack_webhook", slack_webhook, ("hooks.slack.com",), extend=True)],
        "stripe_key": [
            _Rule("stripe_key", _edge(p), ("k_live_",), extend=True) for p in _denylist("stripe", "StripeDetector")
        ],
        "openai_api_key": [
            *(
                _Rule("openai_api_key", _edge(p), ("T3BlbkFJ",), extend=True)
                for p in _denylist("openai", "OpenAIDetector")
            ),
            _Rule(
                "openai_api_key",
                re.compile(r"(?<![\w\-])sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,}"),
                ("sk-proj-", "sk-svcacct-", "sk-admin-"),
            ),
        ],
        "anthropic_api_key": [
            _Rule(
                "anthropic_api_key", re.compile(r"(?<![\w\-])sk-ant-[a-z]{3,8}\d{2}-[A-Za-z0-9_\-]{32,}"), ("sk-ant-",)
            )
        ],
        "google_api_key": [
            _Rule("google_api_key", re.compile(r"(?<![\w\-])AIza[0-9A-Za-z_\-]{35}(?![\w\-])"), ("AIza",))
        ],
        "google_oauth_secret": [
            _Rule("google_oauth_secret", re.compile(r"(?<![\w\-])GOCSPX-[A-Za-z0-9_\-]{28}(?![\w\-])"), ("GOCSPX-",))
        ],
        "huggingface_token": [
            _Rule("huggingface_token", re.compile(r"(?<![\w\-])hf_[A-Za-z0-9]{34,40}(?![\w\-])"), ("hf_",))
        ],
        "groq_api_key": [_Rule("groq_api_key", re.compile(r"(?<![\w\-])gsk_[A-Za-z0-9]{52}(?![\w\-])"), ("gsk_",))],
        "xai_api_key": [_Rule("xai_api_key", re.compile(r"(?<![\w\-])xai-[A-Za-z0-9]{70,90}(?![\w\-])"), ("xai-",))],
        "azure_storage_key": [
            _Rule(
                "azure_storage_key",
                re.compile(p.pattern.replace("AccountKey=", "AccountKey=(", 1) + ")"),
                ("AccountKey=",),
                group=1,
            )
            for p in _denylist("azure_storage_key", "AzureStorageKeyDetector")
        ],
        "azure_sas_token": [
            _Rule(
                "azure_sas_token",
                re.compile(r"\bsv=\d{4}-\d{2}-\d{2}&[^\s\"'<>]*?\bsig=([A-Za-z0-9%+/=]{40,})"),
                ("sig=",),
                group=1,
            )
        ],
        "sendgrid_key": [_Rule("sendgrid_key", _edge(p), ("SG.",)) for p in _denylist("sendgrid", "SendGridDetector")],
        "pypi_token": [
            _Rule("pypi_token", _edge(p), ("pypi-Ag",)) for p in _denylist("pypi_token", "PypiTokenDetector")
        ],
        "square_oauth_secret": [
            _Rule("square_oauth_secret", _edge(p), ("sq0csp-",))
            for p in _denylist("square_oauth", "SquareOAuthDetector")
        ],
        "twilio_key": [
            _Rule("twilio_key", re.compile(r"(?<![\w\-])(?:" + p.pattern + r")(?![\w\-])"), (p.pattern[:2],))
            for p in _denylist("twilio", "TwilioKeyDetector")
        ],
        "mailchimp_key": [
            _Rule("mailchimp_key", re.compile(r"(?<![\w\-])(?:" + p.pattern + r")(?![\w\-])"), ("-us",))
            for p in _denylist("mailchimp", "MailchimpDetector")
        ],
    }
    return r


_CACHE: dict[str, list[_Rule]] = {}

# Every type this kind reports (also the order of `types` in docs and errors); `generic_secret` only
# when asked for (`entropy: true` or listed in `types`): it is the one prone to false positives.
TYPES = (
    "private_key",
    "aws_access_key",
    "aws_secret_key",
    "jwt",
    "github_token",
    "gitlab_token",
    "slack_token",
    "slack_webhook",
    "stripe_key",
    "openai_api_key",
    "anthropic_api_key",
    "google_api_key",
    "google_oauth_secret",
    "huggingface_token",
    "groq_api_key",
    "xai_api_key",
    "azure_storage_key",
    "azure_sas_token",
    "sendgrid_key",
    "pypi_token",
    "square_oauth_secret",
    "twilio_key",
    "mailchimp_key",
)

# Generic assignments: a credential-sounding name (anywhere in an identifier: `db_password`,
# `API_KEY_PROD`, `client_secret`), '=' / ':' / ':=' / '=>', a value. Tried only where a lower-cased copy
# of the text holds one of the stems (a C substring search each), anchored there: a regex with a
# case-insensitive alternation run over the whole text cost ~200 us per 2 KB. Bounded and possessive
# quantifiers keep every attempt short.
_STEMS = ("pass", "pwd", "secret", "key", "token")
_ASSIGN = re.compile(
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|key|token)"
    r"[A-Za-z0-9_\-.]{0,20}+[\"'\]]{0,2}[ \t]{0,4}+(?::=|=>|[:=])[ \t]{0,4}+[\"'`]?([^\s\"'`,;<>]{8,200}+)",
    re.I,
)
ENTROPY_MIN = 3.0  # bits per character (Shannon, over the value's own characters)


def entropy(value: str) -> float:
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _high_entropy(value: str) -> bool:
    """Random-looking: 8+ characters, at least two of lower / upper / digit / symbol, >= 3 bits a char.
    ('hunter22', 'correcthorsebattery' and 'changeme123' are not; 'Zx9!kP2#qL7v' is.)"""
    classes = (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
        + any(not c.isalnum() for c in value)
    )
    return classes >= 2 and entropy(value) >= ENTROPY_MIN


def _re2(pattern: str) -> Any:
    import re2

    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


def _checked(valid: Callable[[str], bool], candidate: str) -> bool:
    """A library's verdict; any error it raises is a "no" (its message could quote the candidate)."""
    try:
        return bool(valid(candidate))
    except Exception:
        return False


class SecretsDetector(OfflineDetector):
    kind = "secrets"
    remote = False
    streamable = True
    normalises = True  # 'AKIA\u200b...', full-width letters: a normalised copy is scanned (base.py)

    def __init__(self, types: tuple[str, ...], generic: bool, allow: Iterable[str], timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.types = types
        self.generic = generic
        self.longest = LONGEST  # what a stream holds back (see LONGEST)
        if not _CACHE:
            _CACHE.update(_rules())
        rules = [rule for t in types for rule in _CACHE[t]]
        self._blocks = tuple(rule for rule in rules if rule.type == "private_key")
        # anchor -> (priority, rule): the rules' order decides which type a span gets when two overlap.
        by_anchor: dict[str, list[tuple[int, _Rule]]] = {}
        for i, rule in enumerate(rules):
            if rule.type != "private_key":
                for anchor in rule.anchors:
                    by_anchor.setdefault(anchor, []).append((i, rule))
        self._by_anchor = {a: tuple(r) for a, r in by_anchor.items()}
        # Longest first, so 'sk-ant-' is not read as a shorter anchor that also starts there.
        self._anchors = re.compile("|".join(re.escape(a) for a in sorted(by_anchor, key=len, reverse=True)) or "(?!)")
        literals: set[str] = set()
        patterns: list[Any] = []
        for entry in allow:
            literals.add(entry)
            # RE2, as the `regex` kind: an allow entry is configuration, and matching it against a found
            # value must take linear time whatever it is. Not a valid RE2 pattern: a literal only.
            with contextlib.suppress(Exception):
                patterns.append(_re2(entry))
        self._allow_literals = frozenset(literals)
        self._allow_patterns = tuple(patterns)

    def partial(self, text: str) -> list[tuple[int, int]]:
        """Spans of unfinished candidates at the END of `text`: a JWT still being written, an Azure SAS
        query whose `sig=` has not arrived. Not findings (the text so far is no secret); a stream holds
        them back until more text decides. At most `longest` characters each: an endless run is released.
        Only the types this detector checks."""
        n = len(text)
        lo = max(0, n - self.longest)
        out: list[tuple[int, int]] = []
        for kind, pattern in zip(("jwt", "azure_sas_token"), _PARTIAL, strict=True):
            if kind in self.types:
                m = pattern.search(text, lo)
                if m is not None and m.end() > m.start():
                    out.append(m.span())
        return out

    def _allowed(self, value: str) -> bool:
        if not self._allow_literals:
            return False
        return value in self._allow_literals or any(p.fullmatch(value) for p in self._allow_patterns)

    def _scan_text(self, text: str, part: int, findings: list[Finding]) -> None:
        spans = Spans()
        n = len(text)
        if self._blocks and ("PRIVATE KEY" in text or "PuTTY-User-Key-File" in text):
            for rule in self._blocks:
                self._run(rule, text, 0, n, spans)
        if self._by_anchor:
            mapped = text.encode("ascii", "replace").translate(_TOKEN_MAP)
            i = mapped.find(_LONG)
            while i >= 0:
                end = mapped.find(b" ", i)
                if end < 0:
                    end = n
                lo, hi = max(0, i - _CONTEXT), min(n, end + 2)  # + a closing quote the patterns look at
                rules: dict[int, _Rule] = {}
                for m in self._anchors.finditer(text, lo, end):
                    rules.update(self._by_anchor[m.group()])
                for order in sorted(rules):
                    self._run(rules[order], text, lo, hi, spans)
                i = mapped.find(_LONG, end)
        if self.generic and ("=" in text or ":" in text):
            self._assignments(text, spans)
        findings.extend(spans.findings(part))

    def _run(self, rule: _Rule, text: str, lo: int, hi: int, spans: Spans) -> None:
        n = len(text)
        for m in rule.pattern.finditer(text, lo, hi):
            start, end = m.span(rule.group)
            if start < 0:
                continue
            if rule.extend:
                while end < n and text[end] in _TOKEN_CHARS:
                    end += 1
            if spans.overlaps(start, end):
                continue
            if rule.valid is not None and not _checked(rule.valid, text[start:end]):
                continue
            if self._allowed(text[start:end]):
                continue
            spans.add(start, end, rule.type)

    def _assignments(self, text: str, spans: Spans) -> None:
        lower = text.lower()  # same offsets for ASCII; a non-ASCII char whose lower case differs in length
        if len(lower) != len(text):  # (rare: 'İ') would shift them, so such a text is matched as it is
            lower = text
        for stem in _STEMS:
            i = lower.find(stem)
            while i >= 0:
                m = _ASSIGN.match(text, i)
                nxt = i + len(stem)
                if m is not None:
                    start, end = m.span(1)
                    value = m.group(1)
                    if not spans.overlaps(start, end) and _high_entropy(value) and not self._allowed(value):
                        spans.add(start, end, GENERIC)
                    nxt = end  # a stem inside this value is not a new assignment (and keeps this linear)
                i = lower.find(stem, nxt)


def build(config: Mapping[str, Any], path: str, warnings: list[str], timeout_s: float) -> SecretsDetector:
    """config: `types` (default: every type but generic_secret), `allow` (values never reported: each
    entry a literal or a regex matching the whole value), `entropy` (true: also report generic
    credential assignments of high-entropy values)."""
    from runtime.config.load import ConfigError, _type_name

    check_fields(config, path, FIELDS)
    names = string_list(config, "types", path)
    chosen = choose(names, "types", path, (*TYPES, GENERIC), {})
    generic_flag = config.get("entropy", False)
    if not isinstance(generic_flag, bool):
        raise ConfigError(f"{path}.entropy", f"must be true or false, got {_type_name(generic_flag)}")
    generic = generic_flag or (names is not None and GENERIC in chosen)
    allow = string_list(config, "allow", path) or []
    for i, entry in enumerate(allow):
        if not entry:
            raise ConfigError(f"{path}.allow[{i}]", "is empty")
    detector = SecretsDetector(tuple(t for t in chosen if t != GENERIC), generic, allow, timeout_s)
    detector.max_scan_chars = max_scan_chars(config, path)
    return detector
