"""The holdback: a streamed answer checked as it goes, with a secret split across chunks still caught.

Per choice, text not yet released is *held*. Each batch appends its text to the held text and scans it
with the streamable (offline, span-finding) detectors of the output rules; the text is released up to
`len(held) - window`, except that a finding straddling that cut moves the cut back to its start. Findings
before the cut are masked (redact), refuse the stream (block: GuardrailBlocked from `feed`, which the
relay turns into the ingress's error event) or are recorded (flag). A choice's finish_reason flushes its
held text; `finish()` flushes the rest. `window` is the longest match a streamable detector can make
(WINDOW characters unless a detector says more), so what is held back, and the added delay, is bounded
by that many characters.

Remote and whole-text (non-streamable) providers cannot judge a partial answer: they run once over the
full text when the upstream stream ends, while the last window and the chunks from the first
finish_reason on are still held. They can only stop or mask that tail: what was released is gone.

Chunks keep their other fields (role, tool_calls, finish_reason, usage) and their order; the released
text goes in the batch's last chunk that carried text for that choice; chunks left with nothing are
dropped; a flush is a chunk of its own just before the finishing one.
"""

from __future__ import annotations

from typing import Any

from runtime.guardrails.engine import Hit, apply_to_texts, fired_of
from runtime.guardrails.types import OUTPUT, Finding, ProviderSettings, Subject

WINDOW = 128  # characters: the longest secret the built-in streamable detectors match, by default
MAX_WINDOW = 4096
META = ("id", "object", "created", "model", "system_fingerprint")


def _streamable(provider: ProviderSettings) -> bool:
    return not provider.detector.remote and bool(getattr(provider.detector, "streamable", False))


def _whole(provider: ProviderSettings) -> bool:
    return not _streamable(provider)


class StreamFilter:
    def __init__(self, guard: Any, ctx: Any) -> None:
        self.guard = guard
        self.ctx = ctx
        providers = [p for _, ps in guard.rules for p in ps]
        self.has_stream = any(_streamable(p) for p in providers)
        self.has_whole = any(_whole(p) for p in providers)
        longest = [int(getattr(p.detector, "longest", WINDOW) or WINDOW) for p in providers if _streamable(p)]
        self.window = min(MAX_WINDOW, max([WINDOW, *longest]))
        self.held: dict[int, str] = {}
        self.full: dict[int, list[str]] = {}  # raw text per choice, for the whole-text checks at the end
        self.tail: list[dict[str, Any]] | None = None  # chunks held from the first finish_reason on
        self.meta: dict[str, Any] = {}
        self.completion = False  # a text completion's chunks (choices[i].text, no delta)

    async def feed(self, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        last: dict[int, tuple[dict[str, Any], str]] = {}  # choice -> where this batch's released text goes
        emptied: set[int] = set()
        for chunk in chunks:
            if not self.meta:
                self.meta = {k: chunk[k] for k in META if k in chunk}
            finishing: list[int] = []
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict):
                    continue
                index = choice.get("index", 0)
                holder, key = _text_of(choice)
                if holder is not None:
                    text = holder[key]
                    if text:
                        self.held[index] = self.held.get(index, "") + text
                        if self.has_whole:
                            self.full.setdefault(index, []).append(text)
                        holder[key] = ""
                        last[index] = (holder, key)
                        emptied.add(id(chunk))
                        self.completion = self.completion or key == "text"
                if choice.get("finish_reason"):
                    finishing.append(index)
            if self.tail is not None or (finishing and self.has_whole):
                if self.tail is None:
                    self.tail = []
                self.tail.append(chunk)
                continue
            for index in finishing:
                released = await self._release(index, final=True)
                last.pop(index, None)
                if released:
                    out.append(self._chunk(index, released))
            out.append(chunk)
        for index, (holder, key) in last.items():
            holder[key] = await self._release(index, final=False)
        return [c for c in out if id(c) not in emptied or not _empty(c)]

    async def finish(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        extra: dict[int, list[Finding]] = {}
        if self.has_whole and self.full:
            extra = await self._whole()
        for index in sorted(self.held):
            released = await self._release(index, final=True, extra=extra.get(index, ()))
            if released:
                out.append(self._chunk(index, released))
        out.extend(self.tail or ())
        self.tail = None
        return out

    async def _whole(self) -> dict[int, list[Finding]]:
        """The remote and whole-text providers over each choice's full text; their redactions, as spans
        of the held tail (what was already released cannot be masked any more)."""
        guard = self.guard
        order = sorted(self.full)
        texts = ["".join(self.full[i]) for i in order]
        outcome = await guard.engine.run(OUTPUT, guard.rules, Subject(OUTPUT, texts), guard.view, guard.gateway, _whole)
        for fired in fired_of(OUTPUT, outcome):
            guard.state.record(self.ctx, fired)
        apply_to_texts(texts, outcome, guard.state)  # remembers the values, for the log scrub
        if outcome.blocked is not None:
            raise outcome.blocked
        extra: dict[int, list[Finding]] = {}
        for part, findings in outcome.redactions.items():
            index = order[part]
            offset = len(texts[part]) - len(self.held.get(index, ""))
            for f in findings:
                start, end = (offset, len(texts[part])) if f.whole else (f.start, f.end)
                if end > offset:
                    extra.setdefault(index, []).append(Finding(f.type, 0, max(0, start - offset), end - offset))
        return extra

    async def _release(self, index: int, final: bool, extra: Any = ()) -> str:
        held = self.held.get(index, "")
        if not held:
            return ""
        cut = len(held) if final else len(held) - self.window
        if cut <= 0:
            return ""
        guard = self.guard
        hits: list[Hit] = []
        if self.has_stream:
            subject = Subject(OUTPUT, [held])
            for rule, providers in guard.rules:
                for provider in providers:
                    if _streamable(provider):
                        hits.append(Hit(rule, provider, provider.detector.scan(subject)))
            moved = not final
            while moved:
                moved = False
                for hit in hits:
                    for f in hit.findings:
                        if not f.whole and f.start < cut < f.end:
                            cut, moved = f.start, True
            if cut <= 0:
                return ""
            for hit in hits:
                hit.findings = [f for f in hit.findings if (f.whole and final) or (not f.whole and f.end <= cut)]
        outcome = guard.engine.decide(OUTPUT, hits, guard.view)
        for fired in fired_of(OUTPUT, outcome):
            guard.state.record(self.ctx, fired)
        if extra:
            outcome.redactions.setdefault(0, []).extend(f for f in extra if f.start < cut)
        released = apply_to_texts([held[:cut]], outcome, guard.state)[0]
        if outcome.blocked is not None:
            self.held[index] = ""
            raise outcome.blocked
        self.held[index] = held[cut:]
        return released

    def _chunk(self, index: int, text: str) -> dict[str, Any]:
        chunk = dict(self.meta)
        if self.completion:
            chunk["choices"] = [{"index": index, "text": text, "finish_reason": None}]
        else:
            chunk.setdefault("object", "chat.completion.chunk")
            chunk["choices"] = [{"index": index, "delta": {"content": text}, "finish_reason": None}]
        return chunk


def _text_of(choice: dict[str, Any]) -> tuple[Any, str]:
    """Where a chunk's choice carries text: a chat delta's content, or a text completion's `text`."""
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return (delta, "content") if isinstance(delta.get("content"), str) else (None, "")
    if isinstance(choice.get("text"), str):
        return choice, "text"
    return None, ""


def _empty(chunk: dict[str, Any]) -> bool:
    """A chunk whose only payload was text this filter took (and holds): nothing left to send."""
    if chunk.get("usage"):
        return False
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict) or choice.get("finish_reason"):
            return False
        delta = choice.get("delta")
        if isinstance(delta, dict) and (delta.get("content") or set(delta) - {"content"}):
            return False
        if delta is None and choice.get("text"):
            return False
    return True
