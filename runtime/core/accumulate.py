"""Rebuild a streamed answer for the request log: text, tool calls and finish reason per choice.

Only used when content logging is on; it folds each chunk's deltas as they pass.
"""

from __future__ import annotations

from typing import Any


class StreamAccumulator:
    __slots__ = ("_choices",)

    def __init__(self) -> None:
        self._choices: dict[int, dict[str, Any]] = {}

    def add(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            slot = self._choices.setdefault(choice.get("index", 0), {"text": [], "tools": {}, "finish": None})
            if choice.get("finish_reason"):
                slot["finish"] = choice["finish_reason"]
            if "text" in choice and isinstance(choice["text"], str):  # legacy completions
                slot["text"].append(choice["text"])
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            content = delta.get("content")
            if isinstance(content, str):
                slot["text"].append(content)
            for call in delta.get("tool_calls") or ():
                if not isinstance(call, dict):
                    continue
                entry = slot["tools"].setdefault(call.get("index", 0), {"id": None, "name": "", "arguments": []})
                if call.get("id"):
                    entry["id"] = call["id"]
                fn = call.get("function") or {}
                if fn.get("name"):
                    entry["name"] += fn["name"]
                if fn.get("arguments"):
                    entry["arguments"].append(fn["arguments"])

    def result(self) -> list[dict[str, Any]]:
        out = []
        for index in sorted(self._choices):
            slot = self._choices[index]
            message: dict[str, Any] = {"role": "assistant", "content": "".join(slot["text"]) or None}
            if slot["tools"]:
                message["tool_calls"] = [
                    {
                        "id": t["id"],
                        "type": "function",
                        "function": {"name": t["name"], "arguments": "".join(t["arguments"])},
                    }
                    for _, t in sorted(slot["tools"].items())
                ]
            out.append({"index": index, "message": message, "finish_reason": slot["finish"]})
        return out
