"""The holdback: a streamed answer checked as it goes, with a secret split across chunks still caught.

Per choice and per text channel (`delta.content`, `delta.reasoning_content`, `delta.refusal`, or a text
completion's `text`: each its own held text, so a card split across reasoning chunks is one match),
text not yet released is *held*. Once at least `window` new characters have arrived since the last
scan, the held text is scanned with the streamable (offline, span-finding) detectors of the output
rules and released up to `len(held) - window`, except that a finding straddling that cut (or an
unfinished candidate a detector reports with its optional `partial(text)` method, e.g. a JWT prefix)
moves the cut back to its start. So each character is scanned about twice, never once per chunk, and
what is held back is under twice the window characters plus, for a straddling finding, at most MAX_HOLD
more: past that, the text up to the normal cut is released with the straddling finding's known part
acted on (masked, blocked or flagged) and an unfinished candidate released as is. While a finding
holds the cut, the next scan waits for the held text to grow by half, so a long hold is rescanned a
bounded number of times. Findings before the cut are masked (redact), refuse the stream (block:
GuardrailBlocked from `feed`, which the relay turns into the ingress's error event) or are recorded
(flag). A choice's finish_reason flushes its held text; `finish()` flushes the rest. `window` is the
longest match a streamable detector can make (WINDOW characters unless a detector says more).

Remote and whole-text (non-streamable) providers cannot judge a partial answer: they run once over the
full text when the upstream stream ends, while the last window and the chunks from the first
finish_reason on are still held. They can only stop or mask that tail: what was released is gone.

Chunks keep their other fields (role, tool_calls, finish_reason, usage) and their order; the released
text goes in the batch's last chunk that carried text for that channel; chunks left with nothing are
dropped; a flush is a chunk of its own just before the finishing one.

`restart()` is for a stream continued on another target after a break (runtime/core/resume.py): the
continuation starts from what the client received, so the held (never sent) text is dropped.
"""

from __future__ import annotations

from typing import Any

from runtime.guardrails.engine import Hit, apply_to_texts, fired_of
from runtime.guardrails.types import OUTPUT, Finding, ProviderSettings, Subject

WINDOW = 128  # characters: the longest secret the built-in streamable detectors match, by default
MAX_WINDOW = 4096
MAX_HOLD = 8192  # characters a straddling finding may hold beyond the window
META = ("id", "object", "created", "model", "system_fingerprint")
CHANNELS = ("reasoning_content", "content", "refusal")  # the text fields of a chat delta that are held

Key = tuple[int, str]  # (choice index, field)


def _streamable(provider: ProviderSettings) -> bool:
    return not provider.detector.remote and bool(getattr(provider.detector, "streamable", False))


def _whole(provider: ProviderSettings) -> bool:
    return not _streamable(provider)


def _partial_spans(detector: Any, text: str) -> list[tuple[int, int]]:
    """A detector's unfinished candidates at the end of `text` (optional method; a bad answer is ignored:
    the spans only delay text, they never decide anything)."""
    partial = getattr(detector, "partial", None)
    if not callable(partial):
        return []
    try:
        spans = partial(text)
    except Exception:  # an optional hint; the real scan still runs
        return []
    out = []
    for span in spans or ():
        try:
            start, end = int(span[0]), int(span[1])
        except (TypeError, ValueError, IndexError):
            continue
        if 0 <= start < end:
            out.append((start, end))
    return out


class StreamFilter:
    def __init__(self, guard: Any, ctx: Any) -> None:
        self.guard = guard
        self.ctx = ctx
        providers = [p for _, ps in guard.rules for p in ps]
        self.has_stream = any(_streamable(p) for p in providers)
        self.has_whole = any(_whole(p) for p in providers)
        longest = [int(getattr(p.detector, "longest", WINDOW) or WINDOW) for p in providers if _streamable(p)]
        self.window = min(MAX_WINDOW, max([WINDOW, *longest]))
        self.held: dict[Key, str] = {}
        self.pending: dict[Key, int] = {}  # characters appended since the last scan
        self.base: dict[Key, int] = {}  # held length after the last release (a long hold waits longer)
        self.context: dict[Key, str] = {}  # the start of a finding cut by the bound (see _release)
        self.full: dict[Key, list[str]] = {}  # raw text per channel, for the whole-text checks at the end
        self.tail: list[dict[str, Any]] | None = None  # chunks held from the first finish_reason on
        self.meta: dict[str, Any] = {}
        self.completion = False  # a text completion's chunks (choices[i].text, no delta)

    async def feed(self, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        last: dict[Key, tuple[dict[str, Any], str]] = {}  # channel -> where this batch's released text goes
        emptied: set[int] = set()
        for chunk in chunks:
            if not self.meta:
                self.meta = {k: chunk[k] for k in META if k in chunk}
            finishing: list[int] = []
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", 0)
                for holder, field in _texts_of(choice):
                    text = holder[field]
                    if not text:
                        continue
                    key = (index, field)
                    self.held[key] = self.held.get(key, "") + text
                    self.pending[key] = self.pending.get(key, 0) + len(text)
                    if self.has_whole:
                        self.full.setdefault(key, []).append(text)
                    holder[field] = ""
                    last[key] = (holder, field)
                    emptied.add(id(chunk))
                    self.completion = self.completion or field == "text"
                if choice.get("finish_reason"):
                    finishing.append(index)
            if self.tail is not None or (finishing and self.has_whole):
                if self.tail is None:
                    self.tail = []
                self.tail.append(chunk)
                continue
            for index in finishing:
                for key in [k for k in self.held if k[0] == index]:
                    released = await self._release(key, final=True)
                    last.pop(key, None)
                    if released:
                        out.append(self._chunk(key, released))
            out.append(chunk)
        for key, (holder, field) in last.items():
            holder[field] = await self._release(key, final=False)
        return [c for c in out if id(c) not in emptied or not _empty(c)]

    async def finish(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        extra: dict[Key, list[Finding]] = {}
        if self.has_whole and self.full:
            extra = await self._whole()
        for key in sorted(self.held):
            released = await self._release(key, final=True, extra=extra.get(key, ()))
            if released:
                out.append(self._chunk(key, released))
        out.extend(self.tail or ())
        self.tail = None
        return out

    def restart(self) -> None:
        """The stream goes on from what the client received (a continuation on another target): drop the
        held, never sent, text and the held finishing chunks; the full-text record keeps only what was
        released, so the end-of-stream checks see the answer the client gets, once."""
        for key, parts in self.full.items():
            sent = "".join(parts)
            unsent = len(self.held.get(key, ""))
            self.full[key] = [sent[: len(sent) - unsent]] if unsent else [sent]
        self.held.clear()
        self.context.clear()
        self.pending.clear()
        self.base.clear()
        self.tail = None

    async def _whole(self) -> dict[Key, list[Finding]]:
        """The remote and whole-text providers over each channel's full text; their redactions, as spans
        of the held tail (what was already released cannot be masked any more)."""
        guard = self.guard
        order = sorted(self.full)
        texts = ["".join(self.full[k]) for k in order]
        outcome = await guard.engine.run(OUTPUT, guard.rules, Subject(OUTPUT, texts), guard.view, guard.gateway, _whole)
        for fired in fired_of(OUTPUT, outcome):
            guard.state.record(self.ctx, fired)
        apply_to_texts(texts, outcome, guard.state)  # remembers the values, for the log scrub
        if outcome.blocked is not None:
            raise outcome.blocked
        extra: dict[Key, list[Finding]] = {}
        for part, findings in outcome.redactions.items():
            key = order[part]
            offset = len(texts[part]) - len(self.held.get(key, ""))
            for f in findings:
                start, end = (offset, len(texts[part])) if f.whole else (f.start, f.end)
                if end > offset:
                    extra.setdefault(key, []).append(Finding(f.type, 0, max(0, start - offset), end - offset))
        return extra

    def _due(self, key: Key, held: str) -> bool:
        """Whether a non-final release scans now: a window of new text since the last scan (half the held
        text while a finding holds the cut back), or the hold reached its bound."""
        if len(held) <= self.window:
            return False
        if len(held) >= self.window + MAX_HOLD:
            return True
        return self.pending.get(key, 0) >= max(self.window, self.base.get(key, 0) // 2)

    async def _release(self, key: Key, final: bool, extra: Any = ()) -> str:
        held = self.held.get(key, "")
        if not held:
            return ""
        if not final and not self._due(key, held):
            return ""
        self.pending[key] = 0
        cut = len(held) if final else len(held) - self.window
        guard = self.guard
        hits: list[Hit] = []
        forced_from = -1
        if self.has_stream:
            # After a forced release the scans start with the start of the finding that was cut (already
            # released, masked), so its continuation is still recognised as the same finding.
            context = self.context.pop(key, "")
            scanned = context + held
            subject = Subject(OUTPUT, [scanned])
            partial: list[tuple[int, int]] = []
            raw: list[Finding] = []
            for rule, providers in guard.rules:
                for provider in providers:
                    if _streamable(provider):
                        found = provider.detector.scan(subject)
                        raw.extend(found)
                        hits.append(Hit(rule, provider, _shifted(found, len(context))))
                        if not final:
                            partial.extend(
                                (max(0, a - len(context)), b - len(context))
                                for a, b in _partial_spans(provider.detector, scanned)
                                if b > len(context)
                            )
            if not final:
                normal = cut
                moved = True
                while moved:
                    moved = False
                    for hit in hits:
                        for f in hit.findings:
                            if not f.whole and f.start < cut < f.end:
                                cut, moved = f.start, True
                    for start, end in partial:
                        if start < cut < end:
                            cut, moved = start, True
                if len(held) - cut > self.window + MAX_HOLD:
                    # The bound: release up to the normal cut, acting on what is known of the finding.
                    at = len(context) + normal
                    starts = [f.start for f in raw if not f.whole and f.start < at < f.end]
                    forced_from = min(starts) if starts else at  # in `scanned`
                    cut = normal
            if cut <= 0:
                if context:
                    self.context[key] = context
                self.base[key] = len(held)
                return ""
            for hit in hits:
                kept = []
                for f in hit.findings:
                    if f.whole:
                        if final:
                            kept.append(f)
                    elif f.end <= cut:
                        kept.append(f)
                    elif forced_from >= 0 and f.start < cut:
                        kept.append(Finding(f.type, f.part, f.start, cut, f.score))
                hit.findings = kept
            if 0 <= forced_from < len(context) + cut:
                self.context[key] = scanned[forced_from : forced_from + self.window]
        outcome = guard.engine.decide(OUTPUT, hits, guard.view)
        for fired in fired_of(OUTPUT, outcome):
            guard.state.record(self.ctx, fired)
        if extra:
            outcome.redactions.setdefault(0, []).extend(f for f in extra if f.start < cut)
        released = apply_to_texts([held[:cut]], outcome, guard.state)[0]
        if outcome.blocked is not None:
            self.held[key] = ""
            raise outcome.blocked
        self.held[key] = held[cut:]
        self.base[key] = len(held) - cut
        return str(released)

    def _chunk(self, key: Key, text: str) -> dict[str, Any]:
        index, field = key
        chunk = dict(self.meta)
        if self.completion and field == "text":
            chunk["choices"] = [{"index": index, "text": text, "finish_reason": None}]
        else:
            chunk.setdefault("object", "chat.completion.chunk")
            chunk["choices"] = [{"index": index, "delta": {field: text}, "finish_reason": None}]
        return chunk


def _shifted(findings: list[Finding], offset: int) -> list[Finding]:
    """Findings in `context + held` as spans of `held`: one that ends inside the context was released
    already; one that starts there begins at 0."""
    if not offset:
        return findings
    out = []
    for f in findings:
        if f.whole:
            out.append(f)
        elif f.end > offset:
            out.append(Finding(f.type, f.part, max(0, f.start - offset), f.end - offset, f.score))
    return out


def _texts_of(choice: dict[str, Any]) -> list[tuple[Any, str]]:
    """Where a chunk's choice carries text: a chat delta's text channels, or a text completion's `text`."""
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return [(delta, field) for field in CHANNELS if isinstance(delta.get(field), str)]
    if isinstance(choice.get("text"), str):
        return [(choice, "text")]
    return []


def _empty(chunk: dict[str, Any]) -> bool:
    """A chunk whose only payload was text this filter took (and holds): nothing left to send."""
    if chunk.get("usage"):
        return False
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict) or choice.get("finish_reason"):
            return False
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if any(delta.get(field) for field in CHANNELS) or set(delta) - set(CHANNELS):
                return False
        elif choice.get("text"):
            return False
    return True
