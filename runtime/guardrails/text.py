"""Where a request's and an answer's texts are, how to read them and how to write masked text back.

The input stage checks every message's text (string contents and the text parts of content lists, the
system prompt included), or a completion's prompt / an embedding's input. Each text is a `Slot`: the
container and key it lives at, so redaction rewrites the body in place without re-walking it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runtime.guardrails.types import Finding, mask


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
        self.holder[self.key] = text


def input_slots(body: Mapping[str, Any]) -> list[Slot]:
    """The texts of an internal (OpenAI-shaped) request body, in order."""
    slots: list[Slot] = []
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                slots.append(Slot(message, "content"))
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                        slots.append(Slot(part, "text"))
            slots.extend(_tool_argument_slots(message))
        return slots
    for field in ("prompt", "input"):
        value = body.get(field)
        if isinstance(value, str):
            slots.append(Slot(body, field))
        elif isinstance(value, list):
            slots.extend(Slot(value, i) for i, item in enumerate(value) if isinstance(item, str))
    return slots


def output_slots(data: Mapping[str, Any]) -> list[Slot]:
    """The texts of a whole answer (OpenAI-shaped): each choice's message content (or a completion's text)."""
    slots: list[Slot] = []
    choices = data.get("choices")
    if not isinstance(choices, list):
        return slots
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict):
            if isinstance(message.get("content"), str):
                slots.append(Slot(message, "content"))
            slots.extend(_tool_argument_slots(message))
        elif isinstance(choice.get("text"), str):
            slots.append(Slot(choice, "text"))
    return slots


def _tool_argument_slots(message: Mapping[str, Any]) -> list[Slot]:
    """The arguments of a message's tool calls (a JSON text the model wrote, or the client sends back): a
    key or a card number can travel there too. A mask never contains a quote, so redacting inside them
    keeps the JSON valid."""
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return []
    out = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            out.append(Slot(function, "arguments"))
    return out


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
    """`text` with every finding's span replaced by its mask."""
    spans = merged_spans(len(text), findings)
    if not spans:
        return text
    pieces: list[str] = []
    at = 0
    for start, end, kind in spans:
        pieces.append(text[at:start])
        pieces.append(mask(kind))
        at = end
    pieces.append(text[at:])
    return "".join(pieces)


def matched_values(text: str, findings: Iterable[Finding]) -> list[str]:
    """The matched substrings (kept only in a request's own state, to scrub logs; never logged)."""
    return [text[s:e] for s, e, _ in merged_spans(len(text), findings)]
