"""Rebuild a streamed answer for the request log: text, tool calls and finish reason per choice.

Only used when content logging is on; it folds each chunk's deltas as they pass. With a `limit`
(`client.max_log_content_kb`) it keeps at most that many characters of text and arguments in all and
only counts the rest, so a long answer costs bounded memory; the result says how much was cut.
"""

from __future__ import annotations

from typing import Any

import ujson

from runtime.codecs.sse import SSEParser
from runtime.core.text import truncation_marker

SETTING = "client.max_log_content_kb"


class StreamAccumulator:
    __slots__ = ("_choices", "_room")

    def __init__(self, limit: int | None = None) -> None:
        self._choices: dict[int, dict[str, Any]] = {}
        self._room = limit if limit is not None else -1  # characters still kept; -1: no limit

    def _keep(self, parts: list[str], holder: dict[str, Any], text: str) -> None:
        """Append `text` while there is room; count what does not fit in holder["cut"]."""
        room = self._room
        if room < 0:
            parts.append(text)
        elif len(text) <= room:
            parts.append(text)
            self._room = room - len(text)
        else:
            if room:
                parts.append(text[:room])
                self._room = 0
            holder["cut"] = holder.get("cut", 0) + len(text) - room

    def add(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            slot = self._choices.get(index)
            if slot is None:  # (not setdefault: that would build a new dict for every chunk)
                slot = self._choices[index] = {"text": [], "tools": {}, "finish": None}
            if choice.get("finish_reason"):
                slot["finish"] = choice["finish_reason"]
            text = choice.get("text")
            if isinstance(text, str):  # legacy completions
                self._keep(slot["text"], slot, text)
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            content = delta.get("content")
            if isinstance(content, str) and content:
                if self._room < 0 or len(content) <= self._room:  # the common case, inline
                    slot["text"].append(content)
                    if self._room >= 0:
                        self._room -= len(content)
                else:
                    self._keep(slot["text"], slot, content)
            calls = delta.get("tool_calls")
            if not calls:
                continue
            keep = self._keep
            for call in calls:
                if not isinstance(call, dict):
                    continue
                entry = slot["tools"].setdefault(call.get("index", 0), {"id": None, "name": "", "arguments": []})
                if call.get("id"):
                    entry["id"] = call["id"]
                fn = call.get("function")
                if not isinstance(fn, dict):
                    continue
                name, arguments = fn.get("name"), fn.get("arguments")
                if name and isinstance(name, str):
                    entry["name"] += name
                if arguments and isinstance(arguments, str):
                    keep(entry["arguments"], entry, arguments)

    def result(self) -> list[dict[str, Any]]:
        out = []
        for index in sorted(self._choices):
            slot = self._choices[index]
            text = "".join(slot["text"])
            if slot.get("cut"):
                text += truncation_marker(slot["cut"], SETTING)
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if slot["tools"]:
                message["tool_calls"] = [
                    {
                        "id": t["id"],
                        "type": "function",
                        "function": {"name": t["name"], "arguments": _joined(t)},
                    }
                    for _, t in sorted(slot["tools"].items())
                ]
            out.append({"index": index, "message": message, "finish_reason": slot["finish"]})
        return out


def _joined(tool: dict[str, Any]) -> str:
    arguments = "".join(tool["arguments"])
    return arguments + truncation_marker(tool["cut"], SETTING) if tool.get("cut") else arguments


class RawAccumulator:
    """The streaming fast path's log content: the forwarded SSE bytes, folded into a StreamAccumulator
    in batches (parsed once per `FOLD_AT` bytes and at the end, not once per event as they pass), so
    the text logged is the same as the parsed path's and memory stays bounded by the same limit."""

    FOLD_AT = 64 * 1024

    __slots__ = ("_acc", "_parser", "_pending", "_size")

    def __init__(self, limit: int | None = None) -> None:
        self._acc = StreamAccumulator(limit)
        self._parser = SSEParser()
        self._pending: list[bytes] = []
        self._size = 0

    def add(self, data: bytes) -> None:
        self._pending.append(data)
        self._size += len(data)
        if self._size >= self.FOLD_AT:
            self._fold()

    def _fold(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._size = 0
        add = self._acc.add
        # The scanner hands over whole events with LF line ends: a one-line `data: {...}` event is read
        # straight from the bytes; anything else (comments, multi-line data) goes through the parser.
        for event in data.split(b"\n\n"):
            if event.startswith(b"data: {") and b"\n" not in event:
                payloads: Any = (event[6:],)
            elif event.strip():
                payloads = [e.data for e in self._parser.feed(event + b"\n\n") if e.data != "[DONE]"]
            else:
                continue
            for payload in payloads:
                try:
                    chunk = ujson.loads(payload)
                except ValueError:
                    continue  # the relay already refused malformed events; nothing here to log
                if isinstance(chunk, dict):
                    add(chunk)

    def as_chunks(self) -> StreamAccumulator:
        """The fold so far, to go on with chunk dicts (a broken fast-path stream continued as chunks)."""
        self._fold()
        return self._acc

    def result(self) -> list[dict[str, Any]]:
        self._fold()
        return self._acc.result()
