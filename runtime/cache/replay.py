"""A stored answer sent again (whole, or as a stream of OpenAI chunk dicts the pipeline renders in the
client's format), and the other way round: a streamed miss folded into a whole answer to store.

Entries are OpenAI-shaped (`chat.completion`, `text_completion`, an embeddings `list`). A stored
answer keeps its `id` (the id of the request that produced it, which names the entry), so a hit
answers with the same id as the original; `created` is the original's too.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import ujson

from runtime.core.accumulate import StreamAccumulator
from runtime.providers.base import ParsedResponse, Usage

PIECE_CHARS = 64  # a replayed stream sends content in pieces of about this many characters
_PIECE = re.compile(r"\S*\s*")  # a word with the spaces after it


def clone(data: dict[str, Any]) -> dict[str, Any]:
    """A deep copy (an encoder may adjust what it is given; the stored answer must not change)."""
    out: dict[str, Any] = ujson.loads(ujson.dumps(data, ensure_ascii=False, escape_forward_slashes=False))
    return out


def as_response(stored: dict[str, Any]) -> ParsedResponse:
    """A stored answer as a fresh ParsedResponse. Encoded once: the bytes are what an OpenAI client gets
    as they are (`raw`: the ingress does not encode again), and decoding them gives the other ingresses a
    copy they may adjust without touching the stored answer."""
    raw = ujson.dumps(stored, ensure_ascii=False, escape_forward_slashes=False).encode()
    data: dict[str, Any] = ujson.loads(raw)
    return ParsedResponse(data, Usage.from_openai(data.get("usage")), raw)


def pieces(text: str, size: int = PIECE_CHARS) -> list[str]:
    """`text` in pieces of whole words, each about `size` characters (joined, they give `text` back)."""
    if len(text) <= size:
        return [text]
    out: list[str] = []
    current = ""
    for word in _PIECE.findall(text):
        if current and len(current) + len(word) > size:
            out.append(current)
            current = ""
        current += word
    if current:
        out.append(current)
    return out


def chunks(stored: dict[str, Any]) -> list[dict[str, Any]]:
    """A stored chat.completion or text_completion as the chunk dicts of the same answer streamed: a role
    chunk, the content in pieces, the tool calls, the finish reason, then a usage chunk (the pipeline
    decides whether the client sees it)."""
    base: dict[str, Any] = {"id": stored.get("id") or "", "created": stored.get("created") or 0}
    base["model"] = stored.get("model") or ""
    if stored.get("system_fingerprint"):
        base["system_fingerprint"] = stored["system_fingerprint"]
    out: list[dict[str, Any]] = []
    if stored.get("object") == "text_completion":
        kind = "text_completion"
        for choice in stored.get("choices") or ():
            index = choice.get("index", 0)
            for piece in pieces(str(choice.get("text") or "")):
                out.append(
                    {**base, "object": kind, "choices": [{"index": index, "text": piece, "finish_reason": None}]}
                )
            out.append(
                {
                    **base,
                    "object": kind,
                    "choices": [{"index": index, "text": "", "finish_reason": choice.get("finish_reason") or "stop"}],
                }
            )
    else:
        kind = "chat.completion.chunk"

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "object": kind, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}

        for choice in stored.get("choices") or ():
            index = choice.get("index", 0)
            message = choice.get("message") or {}
            out.append(chunk(index, {"role": "assistant", "content": ""}))
            content = message.get("content")
            if isinstance(content, str) and content:
                out.extend(chunk(index, {"content": piece}) for piece in pieces(content))
            refusal = message.get("refusal")
            if isinstance(refusal, str) and refusal:
                out.append(chunk(index, {"refusal": refusal}))
            for i, call in enumerate(message.get("tool_calls") or ()):
                fn = call.get("function") or {}
                out.append(
                    chunk(
                        index,
                        {
                            "tool_calls": [
                                {
                                    "index": i,
                                    "id": call.get("id"),
                                    "type": "function",
                                    "function": {"name": fn.get("name") or "", "arguments": ""},
                                }
                            ]
                        },
                    )
                )
                arguments = str(fn.get("arguments") or "")
                for piece in pieces(arguments) if arguments else ():
                    out.append(chunk(index, {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
            out.append(chunk(index, {}, choice.get("finish_reason") or "stop"))
    usage = stored.get("usage")
    if isinstance(usage, dict):
        out.append({**base, "object": kind, "choices": [], "usage": usage})
    return out


async def replay_stream(stored: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The stored answer as an async iterator of chunk dicts (a pre-hook's streaming answer)."""
    for chunk in chunks(clone(stored)):
        yield chunk


def _finish_reasons(data: dict[str, Any]) -> list[Any]:
    return [c.get("finish_reason") for c in data.get("choices") or () if isinstance(c, dict)]


def storable(data: dict[str, Any]) -> bool:
    """A complete answer worth replaying: every choice finished, none refused by a content filter.
    Embeddings (no choices) are complete when they have data."""
    if data.get("object") == "list":
        return bool(data.get("data"))
    reasons = _finish_reasons(data)
    return bool(reasons) and all(r and r != "content_filter" for r in reasons)


class StreamCapture:
    """Folds a miss's stream (the chunk dicts it observes) into the whole answer, to store once the stream
    ended well. Used as a per-request observer (ctx.observers)."""

    __slots__ = ("_acc", "created", "endpoint", "fingerprint", "id", "model", "usage")

    def __init__(self, endpoint: str) -> None:
        self._acc = StreamAccumulator(None)
        self.endpoint = endpoint
        self.id = ""
        self.model = ""
        self.created = 0
        self.fingerprint: str | None = None
        self.usage: dict[str, Any] | None = None

    def observe(self, _ctx: Any, chunk: dict[str, Any]) -> None:
        if not self.id:
            self.id = str(chunk.get("id") or "")
            self.model = str(chunk.get("model") or "")
            self.created = int(chunk.get("created") or 0)
            self.fingerprint = chunk.get("system_fingerprint")
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        self._acc.add(chunk)

    def answer(self) -> dict[str, Any] | None:
        """The assembled answer, or None when the stream did not finish every choice."""
        choices = self._acc.result()
        if not choices or not all(c["finish_reason"] for c in choices):
            return None
        data: dict[str, Any] = {"id": self.id, "created": self.created, "model": self.model}
        if self.endpoint == "completions":
            data["object"] = "text_completion"
            data["choices"] = [
                {
                    "index": c["index"],
                    "text": c["message"]["content"] or "",
                    "logprobs": None,
                    "finish_reason": c["finish_reason"],
                }
                for c in choices
            ]
        else:
            data["object"] = "chat.completion"
            for c in choices:
                c["message"].setdefault("refusal", None)
                c["logprobs"] = None
            data["choices"] = choices
        if self.fingerprint:
            data["system_fingerprint"] = self.fingerprint
        if self.usage is not None:
            data["usage"] = self.usage
        return data
