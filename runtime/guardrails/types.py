"""The guardrails' shared vocabulary: what a detector is given, what it finds, and what can be done.

A *guardrail provider* (config.json `guardrails_config.guardrail_providers[i]`, Go Bifrost's name) is one
configured detector: a `provider_name` (the detector kind: "pii", "secrets", "regex", "webhook", ...), a
`policy_name` and its `config`. A *rule* (`guardrail_rules[i]`) says when (a CEL expression, a stage,
a sampling rate) which providers run. Each provider's config carries its `action`: what is done with
what it finds.

Detectors never see, keep or report more than spans: a Finding names a type and where it is, never the
matched text, so nothing downstream (log rows, metrics, errors, the admin test console) can leak it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

INPUT = "input"
OUTPUT = "output"
BOTH = "both"
STAGES = (INPUT, OUTPUT)
APPLY_TO = (INPUT, OUTPUT, BOTH)

BLOCK = "block"  # the request (input) or the answer (output) is refused with an error naming the rule
REDACT = "redact"  # each finding's span is replaced by a mask before the provider / the client sees it
FLAG = "flag"  # recorded only (log row, metrics)
ACTIONS = (BLOCK, REDACT, FLAG)
# When two rules act on one request, the strongest action wins.
STRENGTH = {FLAG: 0, REDACT: 1, BLOCK: 2}

FAIL_OPEN = "fail_open"  # a remote detector that times out or errs lets the text through (recorded)
FAIL_CLOSED = "fail_closed"  # ... or blocks it
FAILURE_POLICIES = (FAIL_OPEN, FAIL_CLOSED)


def mask(finding_type: str) -> str:
    """What replaces a redacted span: names the kind of data, never any of it."""
    return f"[REDACTED:{finding_type}]"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a detector found. `part` indexes `Subject.texts`; [start, end) is the span in that text.
    end == -1: the finding concerns the whole part (a moderation category, a size limit, a judge's verdict):
    it can block or flag; redacting it masks the whole part."""

    type: str  # "credit_card", "email", "aws_access_key", "regex:<description>", "moderation:violence", ...
    part: int = 0
    start: int = 0
    end: int = -1
    score: float | None = None  # a remote detector's confidence, when it gives one

    @property
    def whole(self) -> bool:
        return self.end < 0


@dataclass(slots=True)
class Subject:
    """What one stage hands the detectors.

    texts: input: the text of every message (string contents and the text parts of content lists, in order;
           the system prompt included), or the prompt / input of a completion or embedding; output: the
           answer's text (one entry per choice) or, for a stream, the window being checked.
    body:  input stage only: the internal (OpenAI-shaped) request body, for size limits (message count,
           prompt tokens); None at the output stage.
    request: the request's fields as CEL sees them (`request.model`, `request.provider`, ...): remote
           detectors may forward them (the webhook) but must never forward headers.
    """

    stage: str
    texts: list[str]
    body: Mapping[str, Any] | None = None
    request: Mapping[str, Any] = field(default_factory=dict)


class DetectorError(Exception):
    """A remote detector could not give a verdict (timeout, connection refused, bad answer). Its message
    names the detector and the cause, never the text it was checking nor any secret of its config."""


class Detector(Protocol):
    """One configured guardrail provider, ready to check text.

    Offline detectors (`remote = False`) implement `scan`: synchronous, no I/O, microseconds; they run on
    the event loop. Remote detectors (`remote = True`) implement `async check(subject, gateway)`, bounded by
    their `timeout_s` (the engine also bounds it), raising DetectorError on any failure; `gateway` is the
    running runtime.core.gateway.Gateway (for moderation and judge calls through configured providers).
    `streamable`: an offline detector whose findings are local spans (so a stream can be checked window
    by window with a holdback); False for whole-text checks (size limits), which a stream checks once at
    its end.
    """

    kind: str  # the provider_name
    remote: bool
    streamable: bool
    timeout_s: float

    def scan(self, subject: Subject) -> list[Finding]: ...

    async def check(self, subject: Subject, gateway: Any) -> list[Finding]: ...


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """The settings every guardrail provider has, whatever its kind (parsed by runtime/guardrails/config.py).
    `detector` is the built detector (its own fields checked by its kind's `build`)."""

    id: int
    provider_name: str
    policy_name: str
    enabled: bool
    action: str  # BLOCK | REDACT | FLAG ("action", or Go's "mode")
    failure_policy: str  # FAIL_OPEN | FAIL_CLOSED (remote detectors)
    timeout_s: float  # Go's `timeout` (seconds); the kind's default when absent
    detector: Detector
    config: Mapping[str, Any] = field(default_factory=dict)  # as configured (shown by the admin API, secrets masked)


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """One `guardrail_rules[i]`. `program` is the compiled CEL program (None: the expression is the
    constant "true", evaluated without the interpreter). `uses_findings`: the expression reads `findings`,
    so the rule's providers run first and the expression decides whether their actions apply; otherwise it
    is a gate evaluated before any of its providers run. `request_fields`: which `request.<x>` names the
    expression reads (a rule that reads only scalar fields is memoised per distinct value tuple)."""

    id: int
    name: str
    description: str
    enabled: bool
    cel_expression: str
    apply_to: str  # INPUT | OUTPUT | BOTH
    sampling_rate: int  # percent of matching requests checked (100: all)
    timeout_s: float | None  # the rule's bound on its remote providers (None: each provider's own)
    provider_ids: tuple[int, ...]
    program: Any
    uses_findings: bool
    request_fields: frozenset[str]

    def applies_to(self, stage: str) -> bool:
        return self.apply_to == BOTH or self.apply_to == stage


@dataclass(frozen=True, slots=True)
class GuardrailsConfig:
    """config.json `guardrails_config`, checked. `providers` by id."""

    providers: Mapping[int, ProviderSettings]
    rules: tuple[RuleSettings, ...]
    raw: Mapping[str, Any] = field(default_factory=dict)  # the block as configured

    def __reduce__(self) -> tuple[Any, ...]:
        # Compiled CEL programs do not pickle: a config sent to a spawned worker is parsed again there.
        from runtime.guardrails.config import rebuild

        return (rebuild, (dict(self.raw),))

    @property
    def active(self) -> bool:
        """Whether any enabled rule has an enabled provider (else the plugin is not built at all)."""
        return any(
            r.enabled and any(self.providers[i].enabled for i in r.provider_ids if i in self.providers)
            for r in self.rules
        )


@dataclass(frozen=True, slots=True)
class Fired:
    """What the request log, /metrics and the test console record of one rule that acted: never a matched
    value. `types` are the finding types (sorted, unique); `action` what was done ("block", "redact",
    "flag"); `error` a remote detector's failure ("timeout", "unavailable") with the policy applied."""

    rule: str
    provider: str  # policy_name (provider_name when it has none)
    stage: str
    action: str
    types: tuple[str, ...] = ()
    count: int = 0
    error: str | None = None

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "provider": self.provider,
            "stage": self.stage,
            "action": self.action,
            "types": list(self.types),
            "count": self.count,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


def strongest(actions: Sequence[str]) -> str | None:
    return max(actions, key=STRENGTH.__getitem__) if actions else None
