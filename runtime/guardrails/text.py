"""Where a request's and an answer's texts are, how to read them and how to write masked text back.

The input stage checks every message's text: a string content, or the text of a content list (its
`text` and `refusal` parts joined into ONE text, so a card split across two parts of a message is still
one match), an assistant message's `refusal`, its tool call arguments (and the legacy `function_call`
ones), the system prompt; the request's `prediction.content`; each tool's `function.description` (a
client can put anything there and it is forwarded to the model); or a completion's prompt / an
embedding's input. Texts of SEPARATE messages are never joined: each is its own text (a value split
across two messages is two halves no detector can match, by design: joining would let a match span a
role boundary and mask text the client wrote into another message).

The output stage checks each choice's `content`, `reasoning_content`, `refusal` and tool call arguments.

Each text is a `Slot`: the container(s) and key(s) it lives at, so redaction rewrites the body in place
without re-walking it. A slot over several parts maps the masked text back onto its parts (`set`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runtime.guardrails.types import Finding, mask


class Masked(str):
    """A redacted text that remembers where each mask went: `spans` are (start, end) in the source text
    and (at, at + len(mask)) in this one, so a slot over several parts can map them back exactly."""

    spans: tuple[tuple[int, int, int, int], ...]
    source_len: int


class Slot:
    """One text of a body: `holder[key]` (a dict and a field name, or a list and an index)."""

    __slots__ = ("holder", "key")

    def __init__(self, holder: Any, key: Any) -> None:
        self.holder = holder
        self.key = key

    def get(self) -> str:
        value = self.holder[self.key]
        return value if isinstance(value, str) else ""

    def set(self, text: str) -> None:
        self.holder[self.key] = str(text)


class JoinedSlot(Slot):
    """One text made of several parts (a message's text parts, in order): `get` joins them; `set` takes
    the masked joined text and writes each part its own piece. A mask goes in the part where its span
    starts; a span crossing parts removes its text from every part it touches."""

    __slots__ = ("pieces",)

    def __init__(self, pieces: list[tuple[Any, Any]]) -> None:
        super().__init__(pieces[0][0], pieces[0][1])
        self.pieces = pieces

    def _parts(self) -> list[str]:
        out = []
        for holder, key in self.pieces:
            value = holder[key]
            out.append(value if isinstance(value, str) else "")
        return out

    def get(self) -> str:
        return "".join(self._parts())

    def set(self, text: str) -> None:
        parts = self._parts()
        source = "".join(parts)
        if text == source:
            return
        spans = getattr(text, "spans", None)
        if spans is None or getattr(text, "source_len", -1) != len(source):
            spans = (_changed(source, text),)
        bound = 0
        for (holder, key), part in zip(self.pieces, parts, strict=True):
            lo, hi = bound, bound + len(part)
            bound = hi
            pieces: list[str] = []
            at = lo
            for start, end, m_start, m_end in spans:
                if end <= lo or start >= hi:
                    continue
                pieces.append(source[at : max(at, start)])
                if lo <= start < hi:
                    pieces.append(text[m_start:m_end])
                at = min(hi, end)
            pieces.append(source[at:hi])
            holder[key] = "".join(pieces)


def _changed(source: str, text: str) -> tuple[int, int, int, int]:
    """A text that is not a known redaction of `source` (the log scrub's replacements): the one span from
    the first to the last changed character, so no original piece of it survives in any part."""
    limit = min(len(source), len(text))
    head = 0
    while head < limit and source[head] == text[head]:
        head += 1
    tail = 0
    while tail < limit - head and source[-1 - tail] == text[-1 - tail]:
        tail += 1
    return head, len(source) - tail, head, len(text) - tail


def _joined_or_single(pieces: list[tuple[Any, Any]]) -> list[Slot]:
    if not pieces:
        return []
    if len(pieces) == 1:
        return [Slot(*pieces[0])]
    return [JoinedSlot(pieces)]


def _text_parts(content: list[Any]) -> list[tuple[Any, Any]]:
    """The textual parts of a content list, in order: `text` parts' text and `refusal` parts' refusal."""
    pieces: list[tuple[Any, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            pieces.append((part, "text"))
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            pieces.append((part, "refusal"))
    return pieces


def _content_slots(holder: Mapping[str, Any]) -> list[Slot]:
    content = holder.get("content")
    if isinstance(content, str):
        return [Slot(holder, "content")]
    if isinstance(content, list):
        return _joined_or_single(_text_parts(content))
    return []


def input_slots(body: Mapping[str, Any]) -> list[Slot]:
    """The texts of an internal (OpenAI-shaped) request body, in order."""
    slots: list[Slot] = []
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            slots.extend(_content_slots(message))
            if isinstance(message.get("refusal"), str):
                slots.append(Slot(message, "refusal"))
            slots.extend(_tool_argument_slots(message))
        prediction = body.get("prediction")
        if isinstance(prediction, dict):
            slots.extend(_content_slots(prediction))
        tools = body.get("tools")
        if isinstance(tools, list):
            for tool in tools:
                function = tool.get("function") if isinstance(tool, dict) else None
                if isinstance(function, dict) and isinstance(function.get("description"), str):
                    slots.append(Slot(function, "description"))
        return slots
    for field in ("prompt", "input"):
        value = body.get(field)
        if isinstance(value, str):
            slots.append(Slot(body, field))
        elif isinstance(value, list):
            slots.extend(Slot(value, i) for i, item in enumerate(value) if isinstance(item, str))
    return slots


OUTPUT_FIELDS = ("content", "reasoning_content", "refusal")


def output_slots(data: Mapping[str, Any]) -> list[Slot]:
    """The texts of a whole answer (OpenAI-shaped): each choice's message content, reasoning and refusal
    and its tool call arguments (or a completion's text)."""
    slots: list[Slot] = []
    choices = data.get("choices")
    if not isinstance(choices, list):
        return slots
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            for field in OUTPUT_FIELDS:
                if isinstance(message.get(field), str):
                    slots.append(Slot(message, field))
            slots.extend(_tool_argument_slots(message))
        elif isinstance(choice.get("text"), str):
            slots.append(Slot(choice, "text"))
    return slots


def _tool_argument_slots(message: Mapping[str, Any]) -> list[Slot]:
    """The arguments of a message's tool calls (a JSON text the model wrote, or the client sends back),
    and of the legacy `function_call`: a key or a card number can travel there too. A mask never
    contains a quote, so redacting inside them keeps the JSON valid."""
    calls = message.get("tool_calls")
    legacy = message.get("function_call")
    if calls is None and legacy is None:
        return []  # the usual message: no calls (every request's every message comes through here)
    functions: list[Any] = []
    if isinstance(calls, list):
        functions.extend(call.get("function") if isinstance(call, dict) else None for call in calls)
    functions.append(legacy)
    return [
        Slot(function, "arguments")
        for function in functions
        if isinstance(function, dict) and isinstance(function.get("arguments"), str)
    ]


def message_views(body: Mapping[str, Any]) -> list[dict[str, str]]:
    """`request.messages` as CEL sees them: [{"role", "content"}] with each message's text joined."""
    out: list[dict[str, str]] = []
    messages = body.get("messages")
    if not isinstance(messages, list):
        return out
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(
                p["text"]
                for p in content
                if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            )
        role = message.get("role")
        out.append(
            {"role": role if isinstance(role, str) else "", "content": content if isinstance(content, str) else ""}
        )
    return out


def merged_spans(text_len: int, findings: Iterable[Finding]) -> list[tuple[int, int, str]]:
    """The [start, end) spans to mask in one text, overlaps merged (the first finding's type names a merged
    span); a whole-part finding masks the whole text."""
    spans = sorted(
        ((0, text_len, f.type) if f.whole else (max(0, f.start), min(text_len, f.end), f.type) for f in findings),
        key=lambda s: (s[0], -s[1]),
    )
    out: list[tuple[int, int, str]] = []
    for start, end, kind in spans:
        if end <= start:
            continue
        if out and start < out[-1][1]:
            last = out[-1]
            out[-1] = (last[0], max(last[1], end), last[2])
        else:
            out.append((start, end, kind))
    return out


def redact(text: str, findings: Sequence[Finding]) -> str:
    """`text` with every finding's span replaced by its mask (a `Masked` str that remembers where)."""
    spans = merged_spans(len(text), findings)
    if not spans:
        return text
    pieces: list[str] = []
    placed: list[tuple[int, int, int, int]] = []
    at = 0
    length = 0
    for start, end, kind in spans:
        pieces.append(text[at:start])
        length += start - at
        label = mask(kind)
        pieces.append(label)
        placed.append((start, end, length, length + len(label)))
        length += len(label)
        at = end
    pieces.append(text[at:])
    out = Masked("".join(pieces))
    out.spans = tuple(placed)
    out.source_len = len(text)
    return out


def matched_values(text: str, findings: Iterable[Finding]) -> list[str]:
    """The matched substrings (kept only in a request's own state, to scrub logs; never logged)."""
    return [text[s:e] for s, e, _ in merged_spans(len(text), findings)]
