"""The guardrails engine: which rules apply to a request, running their detectors, applying actions.

One `GuardrailEngine` per configuration (the plugin builds it; a config edit builds a new one). A stage
(input, or a whole output) runs like this (docs/guardrails.md has the user's view):

1. Every enabled rule for the stage with an enabled provider, kept with probability sampling_rate %.
2. A rule whose CEL expression does not read `findings` is a gate: evaluated first, its providers run
   only when it is true. A rule that reads `findings` runs its providers first; their actions apply
   only if the expression is then true. A CEL runtime error: the rule does not apply (logged, counted).
3. Offline detectors run at once (synchronous, microseconds); the remote ones of every rule run
   concurrently, each bounded by min(rule timeout, provider timeout). A remote failure applies the
   provider's failure policy: fail_closed refuses (GuardrailUnavailable), fail_open records and goes on.
4. Actions: the strongest wins. block raises GuardrailBlocked naming the rule and the kinds of data
   found (never the data); redact masks each span; flag records only. Each acting (rule, provider)
   is recorded as a Fired (ctx.guardrails).

Matched values are kept only in the request's `RequestState` (to scrub the log at the end), never
logged, raised or returned.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import GuardrailBlocked, GuardrailUnavailable
from runtime.guardrails.activation import RequestView
from runtime.guardrails.config import REQUEST_FIELDS, SCALAR_FIELDS
from runtime.guardrails.text import input_slots, matched_values, merged_spans, redact
from runtime.guardrails.types import (
    BLOCK,
    FAIL_CLOSED,
    FLAG,
    INPUT,
    OUTPUT,
    REDACT,
    STRENGTH,
    DetectorError,
    Finding,
    Fired,
    GuardrailsConfig,
    ProviderSettings,
    RuleSettings,
    Subject,
    mask,
)

log = logging.getLogger("bifrost.guardrails")

ROUTED_SCALARS = frozenset({"provider", "model"})
MEMO_LIMIT = 4096  # distinct (rule, stage, scalar values) verdicts kept per engine
OFFLOAD_CHARS = 65_536  # characters of one stage's texts above which offline scans run in a thread
# Request fields a remote detector may be given (the webhook forwards them): never headers or messages.
REMOTE_FIELDS = (
    "model",
    "model_requested",
    "provider",
    "virtual_key",
    "virtual_key_name",
    "team",
    "team_name",
    "customer",
    "endpoint",
    "ingress",
    "stream",
)


class StaticView:
    """Request fields from a mapping (the admin test console): missing ones are CEL's empty values."""

    def __init__(self, request: Mapping[str, Any]) -> None:
        self._values = {k: request.get(k, v) for k, v in REQUEST_FIELDS.items()}

    def get(self, name: str) -> Any:
        return self._values[name]

    def fields(self, names: frozenset[str]) -> dict[str, Any]:
        return {name: self._values[name] for name in names}


@dataclass
class RequestState:
    """What guardrails know about one request: the records of what acted and the matched values still
    to scrub from the log (values that went through unmasked: flagged, fail-open; or the input of a
    blocked or redacted request, still in its raw bytes). Never logged."""

    fired: dict[tuple[str, str, str, str], Fired] = field(default_factory=dict)
    values: list[str] = field(default_factory=list)
    view: Any = None  # the request's RequestView, shared by both stages (fields and sampling draws once)

    def view_of(self, ctx: Any, gateway: Any) -> RequestView:
        if self.view is None:
            self.view = RequestView(ctx, gateway)
        return self.view  # type: ignore[no-any-return]

    def record(self, ctx: Any, fired: Fired) -> None:
        key = (fired.rule, fired.provider, fired.stage, fired.action)
        old = self.fired.get(key)
        if old is not None:
            fired = Fired(
                fired.rule,
                fired.provider,
                fired.stage,
                fired.action,
                tuple(sorted(set(old.types) | set(fired.types))),
                old.count + fired.count,
                fired.error or old.error,
            )
        self.fired[key] = fired
        if ctx is not None:
            ctx.guardrails = [f.view() for f in self.fired.values()]


@dataclass
class Hit:
    """One provider's findings for one rule in one stage run."""

    rule: RuleSettings
    provider: ProviderSettings
    findings: list[Finding]
    error: str | None = None  # "timeout" | "unavailable": a fail-open remote failure


@dataclass
class StageResult:
    hits: list[Hit]  # the ones whose actions apply
    blocked: GuardrailBlocked | None = None
    redactions: dict[int, list[Finding]] = field(default_factory=dict)  # part -> findings to mask
    flagged: dict[int, list[Finding]] = field(default_factory=dict)  # part -> findings left in the text


class GuardrailEngine:
    def __init__(self, config: GuardrailsConfig, on_cel_error: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.cel_errors = 0
        self.on_cel_error = on_cel_error  # the plugin counts them in /metrics (by rule)
        self._memo: dict[tuple[Any, ...], bool] = {}
        self.stage_rules: dict[str, tuple[tuple[RuleSettings, tuple[ProviderSettings, ...]], ...]] = {}
        for stage in (INPUT, OUTPUT):
            rows = []
            for rule in config.rules:
                if not rule.enabled or not rule.applies_to(stage):
                    continue
                providers = tuple(
                    config.providers[i]
                    for i in rule.provider_ids
                    if i in config.providers and config.providers[i].enabled
                )
                if providers:
                    rows.append((rule, providers))
            self.stage_rules[stage] = tuple(rows)
        self.random: Callable[[], float] = random.random

    async def check_input(self, ctx: Any, gateway: Any, state: RequestState | None = None) -> None:
        """The input stage (module function check_input); `state` keeps what the log scrub needs."""
        await check_input(self, ctx, gateway, state if state is not None else RequestState())

    def output_guard(self, ctx: Any, gateway: Any, state: RequestState | None = None) -> Any:
        """What the plugin sets as ctx.guard: None when no rule can act on this request's output."""
        if not self.stage_rules[OUTPUT]:
            return None
        state = state if state is not None else RequestState()
        view = state.view_of(ctx, gateway)
        rules = self.selected(OUTPUT, view)
        if not rules:
            return None
        from runtime.guardrails.output import OutputGuard

        return OutputGuard(self, rules, view, gateway, state)

    # -- rule selection -------------------------------------------------------------------------------------

    def sampled(self, rule: RuleSettings, view: Any = None) -> bool:
        """Whether this request is in the rule's sample: one draw per request and rule, so a rule on
        both stages checks both or neither."""
        rate = rule.sampling_rate
        if rate >= 100:
            return True
        if rate <= 0:
            return False
        draws = getattr(view, "draws", None)
        if draws is None:
            return self.random() * 100 < rate
        if rule.id not in draws:
            draws[rule.id] = self.random() * 100 < rate
        return bool(draws[rule.id])

    def evaluate(self, rule: RuleSettings, view: Any, stage: str, findings: list[dict[str, Any]] | None) -> bool:
        """The rule's expression for this request (False on a CEL runtime error, logged and counted).

        A rule reading `request.provider` or `request.model` is true when it is true for ANY target the
        request may go to (its primary, a weighted alternative, a fallback): "no keys to openai" must hold
        for the fallback to openai too."""
        program = rule.program
        if program is None:
            return True
        if rule.request_fields & ROUTED_SCALARS and hasattr(view, "targets"):
            targets = view.targets()
            if len(targets) > 1:
                return any(
                    self._evaluate(rule, view.with_target(provider, model), stage, findings)
                    for provider, model in targets
                )
        return self._evaluate(rule, view, stage, findings)

    def _evaluate(self, rule: RuleSettings, view: Any, stage: str, findings: list[dict[str, Any]] | None) -> bool:
        program = rule.program
        fields = rule.request_fields
        memo_key: tuple[Any, ...] | None = None
        if findings is None and fields <= SCALAR_FIELDS:
            memo_key = (rule.id, rule.cel_expression, stage, *(view.get(n) for n in sorted(fields)))
            hit = self._memo.get(memo_key)
            if hit is not None:
                return hit
        activation = {"request": view.fields(fields), "stage": stage, "findings": findings or []}
        try:
            result = program.execute(activation)
        except Exception as exc:
            self.cel_errors += 1
            if self.on_cel_error is not None:
                self.on_cel_error(rule.name)
            # The rule's name and the error's kind only: an error's text may quote request values.
            log.warning(
                "guardrail rule '%s': CEL evaluation failed (%s); rule not applied", rule.name, type(exc).__name__
            )
            return False
        verdict = result is True
        if memo_key is not None:
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            self._memo[memo_key] = verdict
        return verdict

    def selected(
        self, stage: str, view: Any, sample: bool = True
    ) -> list[tuple[RuleSettings, tuple[ProviderSettings, ...]]]:
        """The rules that may act in `stage`: sampled, and gates evaluated (rules reading findings kept)."""
        out = []
        for rule, providers in self.stage_rules[stage]:
            if sample and not self.sampled(rule, view):
                continue
            if rule.uses_findings or self.evaluate(rule, view, stage, None):
                out.append((rule, providers))
        return out

    # -- running detectors ----------------------------------------------------------------------------------

    async def run(
        self,
        stage: str,
        rules: Sequence[tuple[RuleSettings, tuple[ProviderSettings, ...]]],
        subject: Subject,
        view: Any,
        gateway: Any,
        only: Callable[[ProviderSettings], bool] | None = None,
    ) -> StageResult:
        """Run the providers of `rules` over `subject` (those `only` admits), then decide the actions."""
        hits: list[Hit] = []
        remote: list[Hit] = []
        # A large text is scanned in a worker thread: the scans are linear, but a megabyte of digits costs
        # the pii detector about a second of validation, which must not stop every other request on this
        # loop (the GIL is handed back every few ms). Typical prompts stay on the loop: no thread hop.
        big = sum(len(t) for t in subject.texts) > OFFLOAD_CHARS
        for rule, providers in rules:
            for provider in providers:
                if only is not None and not only(provider):
                    continue
                hit = Hit(rule, provider, [])
                if provider.detector.remote:
                    remote.append(hit)
                elif big:
                    hit.findings = await asyncio.to_thread(provider.detector.scan, subject)
                else:
                    hit.findings = provider.detector.scan(subject)
                hits.append(hit)
        if remote:
            # The offline detectors' redactions come first: a remote party (a webhook, a judge model, a
            # moderation provider) never receives what a redact rule masks; a block needs no remote call.
            offline = self.decide(stage, [h for h in hits if not h.provider.detector.remote], view)
            if offline.blocked is not None:
                return offline
            shown = subject
            spans: dict[int, list[tuple[int, int, str]]] = {}
            if offline.redactions:
                texts = list(subject.texts)
                for part, findings in offline.redactions.items():
                    if 0 <= part < len(texts):
                        spans[part] = merged_spans(len(texts[part]), findings)
                        texts[part] = redact(texts[part], findings)
                shown = Subject(stage, texts, subject.body, subject.request)
            if not shown.request:
                shown.request = subject.request = {name: view.get(name) for name in REMOTE_FIELDS}
            outcomes = await asyncio.gather(*(self._remote(h.rule, h.provider, shown, gateway) for h in remote))
            for hit, (findings, error) in zip(remote, outcomes, strict=True):
                # Spans found in the masked texts, mapped back onto the texts the caller holds.
                hit.findings = [_unmasked(f, spans.get(f.part)) for f in findings] if spans else findings
                hit.error = error
                if error is not None and hit.provider.failure_policy == FAIL_CLOSED:
                    raise GuardrailUnavailable(
                        f"guardrail rule '{hit.rule.name}' could not check the {stage} "
                        f"({hit.provider.policy_name}: {error})"
                    )
        return self.decide(stage, hits, view)

    async def _remote(
        self, rule: RuleSettings, provider: ProviderSettings, subject: Subject, gateway: Any
    ) -> tuple[list[Finding], str | None]:
        bound = provider.timeout_s if rule.timeout_s is None else min(rule.timeout_s, provider.timeout_s)
        try:
            async with asyncio.timeout(bound):
                findings = await provider.detector.check(subject, gateway)
            return list(findings), None
        except TimeoutError:
            log.warning(
                "guardrail rule '%s': provider '%s' timed out after %ss", rule.name, provider.policy_name, bound
            )
            return [], "timeout"
        except DetectorError as exc:
            log.warning("guardrail rule '%s': provider '%s' failed: %s", rule.name, provider.policy_name, exc)
            # A detector's own timeout (the webhook bounds its session too) is still a timeout.
            return [], "timeout" if isinstance(exc.__cause__, TimeoutError) or str(exc).endswith(
                "timeout"
            ) else "unavailable"

    def decide(self, stage: str, hits: list[Hit], view: Any) -> StageResult:
        # Rules reading `findings` apply their providers' actions only when the expression says so.
        by_rule: dict[int, list[Hit]] = {}
        for hit in hits:
            by_rule.setdefault(hit.rule.id, []).append(hit)
        acting: list[Hit] = []
        for rule_hits in by_rule.values():
            rule = rule_hits[0].rule
            if rule.uses_findings:
                seen = [
                    {"type": t, "provider": h.provider.provider_name, "policy": h.provider.policy_name, "count": n}
                    for h in rule_hits
                    for t, n in _counts(h.findings).items()
                ]
                if not self.evaluate(rule, view, stage, seen):
                    continue
            acting.extend(h for h in rule_hits if h.findings or h.error)
        result = StageResult(acting)
        strongest = max((STRENGTH[h.provider.action] for h in acting if h.findings), default=-1)
        for hit in acting:
            action = hit.provider.action
            for finding in hit.findings:
                if action == REDACT:
                    result.redactions.setdefault(finding.part, []).append(finding)
                else:
                    result.flagged.setdefault(finding.part, []).append(finding)
            if result.blocked is None and action == BLOCK and hit.findings and strongest == STRENGTH[BLOCK]:
                types = ", ".join(sorted({f.type for f in hit.findings}))
                result.blocked = GuardrailBlocked(
                    f"blocked by guardrail rule '{hit.rule.name}' ({hit.provider.policy_name}: {types})"
                )
        return result


def fired_of(stage: str, result: StageResult) -> list[Fired]:
    """One Fired per acting (rule, provider): what the log row and metrics record."""
    out = []
    for hit in result.hits:
        action = FLAG if hit.error else hit.provider.action
        out.append(
            Fired(
                hit.rule.name,
                hit.provider.policy_name or hit.provider.provider_name,
                stage,
                action,
                tuple(sorted({f.type for f in hit.findings})),
                len(hit.findings),
                hit.error,
            )
        )
    return out


def _unmasked(finding: Finding, spans: list[tuple[int, int, str]] | None) -> Finding:
    """A finding in a text whose `spans` were replaced by masks, as the same finding in the original text
    (a position inside a mask widens to the masked span)."""
    if not spans or finding.whole:
        return finding

    def original(position: int, end: bool) -> int:
        shift = 0  # original position - masked position, before the current mask
        for start, stop, kind in spans:
            masked_start = start - shift
            width = len(mask(kind))
            if position < masked_start or (end and position == masked_start):
                break
            if position < masked_start + width or (end and position == masked_start + width):
                return stop if end else start
            shift += (stop - start) - width
        return position + shift

    return Finding(
        finding.type, finding.part, original(finding.start, False), original(finding.end, True), finding.score
    )


def _counts(findings: list[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.type] = counts.get(f.type, 0) + 1
    return counts


def apply_to_texts(texts: list[str], result: StageResult, state: RequestState | None) -> list[str]:
    """The texts after redaction; the values of every finding are remembered (for the log scrub)."""
    out = list(texts)
    for part, findings in result.redactions.items():
        if 0 <= part < len(out):
            if state is not None:
                state.values.extend(matched_values(out[part], findings))
            out[part] = redact(out[part], findings)
    if state is not None:
        for part, findings in result.flagged.items():
            if 0 <= part < len(texts):
                state.values.extend(matched_values(texts[part], findings))
    return out


async def check_input(engine: GuardrailEngine, ctx: Any, gateway: Any, state: RequestState) -> None:
    """The input stage over ctx.body (see the module doc): may mask ctx.body's texts in place, raise
    GuardrailBlocked / GuardrailUnavailable, and records what acted in ctx.guardrails."""
    if not engine.stage_rules[INPUT]:
        return
    view = state.view_of(ctx, gateway)
    rules = engine.selected(INPUT, view)
    if not rules:
        return
    slots = input_slots(ctx.body)
    texts = [s.get() for s in slots]
    subject = Subject(INPUT, texts, ctx.body)
    result = await engine.run(INPUT, rules, subject, view, gateway)
    for fired in fired_of(INPUT, result):
        state.record(ctx, fired)
    masked = apply_to_texts(texts, result, state)
    if result.blocked is not None:
        raise result.blocked
    for part in result.redactions:
        if 0 <= part < len(slots):
            slots[part].set(masked[part])


def spans_of(result: StageResult, texts: Sequence[str]) -> list[dict[str, Any]]:
    """The admin console's findings: spans into the pasted text, with rule and provider."""
    out = []
    for hit in result.hits:
        for f in hit.findings:
            length = len(texts[f.part]) if 0 <= f.part < len(texts) else 0
            start, end = (0, length) if f.whole else (f.start, f.end)
            out.append(
                {
                    "rule": hit.rule.name,
                    "provider": hit.provider.policy_name,
                    "type": f.type,
                    "start": start,
                    "end": end,
                }
            )
    return out


async def try_text(
    config: GuardrailsConfig, gateway: Any, text: str, stage: str, request: Mapping[str, Any]
) -> dict[str, Any]:
    """The admin test console: what the rules of `stage` do to `text` for a request with these fields
    (missing ones empty). Sampling is ignored (every rule is tried); remote providers run as they would.
    The result holds spans into `text`, never a copy of a matched value."""
    engine = GuardrailEngine(config)
    stage = OUTPUT if stage == OUTPUT else INPUT
    view = StaticView(request)
    out: dict[str, Any] = {"stage": stage, "blocked": False, "error": None, "text": text, "fired": [], "findings": []}
    rules = engine.selected(stage, view, sample=False)
    if not rules:
        return out
    subject = Subject(stage, [text], None, {})
    try:
        result = await engine.run(stage, rules, subject, view, gateway)
    except GuardrailUnavailable as err:
        out.update(blocked=True, text=None, error={"type": err.type, "message": err.message})
        return out
    out["fired"] = [f.view() for f in fired_of(stage, result)]
    out["findings"] = spans_of(result, [text])
    if result.blocked is not None:
        out.update(blocked=True, text=None, error={"type": result.blocked.type, "message": result.blocked.message})
    else:
        out["text"] = apply_to_texts([text], result, None)[0]
    return out


__all__ = ["GuardrailEngine", "RequestState", "StaticView", "check_input", "try_text"]
