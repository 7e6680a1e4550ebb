"""Internal (OpenAI) stream chunks -> Gemini `streamGenerateContent?alt=sse` chunks, for the /genai ingress.

Text is forwarded as it arrives, one GenerateContentResponse per delta. Gemini sends a function call
whole, so tool-call fragments are collected and sent, with the finish reason and the usage, in the last
chunk (OpenAI streams report usage after the finish reason). A failure mid-stream is a chunk that starts
with `{"error":`, which the SDK raises as an APIError.
"""

from __future__ import annotations

from typing import Any

from runtime.core.context import RequestContext
from runtime.core.text import utf8
from runtime.errors import GatewayError
from runtime.providers.base import Usage
from runtime.providers.common import dumps
from runtime.wire.genai_ingress import FINISH, error_body, function_call_part, usage_metadata


def _frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + utf8(dumps(payload)) + b"\r\n\r\n"  # utf8: lone surrogates -> U+FFFD, never a crash


class GenAIEncoder:
    __slots__ = ("_calls", "_finish", "_id", "_model")

    def __init__(self, model: str) -> None:
        self._model = model
        self._id = ""
        self._calls: dict[int, dict[int, dict[str, str]]] = {}  # choice -> tool index -> id/name/arguments
        self._finish: dict[int, str] = {}

    def _response(self, candidates: list[dict[str, Any]]) -> dict[str, Any]:
        return {"candidates": candidates, "modelVersion": self._model, "responseId": self._id}

    def encode(self, chunk: dict[str, Any]) -> bytes:
        self._id = self._id or str(chunk.get("id") or "")
        out: list[bytes] = []
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            delta = choice.get("delta") or {}
            parts = []
            if delta.get("reasoning_content"):
                parts.append({"text": delta["reasoning_content"], "thought": True})
            if delta.get("content"):
                parts.append({"text": delta["content"]})
            if parts:
                out.append(_frame(self._response([{"content": {"role": "model", "parts": parts}, "index": index}])))
            for call in delta.get("tool_calls") or ():
                entry = self._calls.setdefault(index, {}).setdefault(
                    call.get("index", 0), {"id": "", "name": "", "arguments": ""}
                )
                fn = call.get("function") or {}
                entry["id"] = call.get("id") or entry["id"]
                entry["name"] += fn.get("name") or ""
                entry["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                self._finish[index] = FINISH.get(choice["finish_reason"], "STOP")
        return b"".join(out)

    def end(self, usage: Usage | None, rid: str = "") -> bytes:
        self._id = self._id or rid
        candidates = []
        for index in sorted(set(self._finish) | set(self._calls)) or [0]:
            parts = [
                function_call_part(c["id"], c["name"], c["arguments"])
                for _, c in sorted(self._calls.get(index, {}).items())
            ]
            candidates.append(
                {
                    "content": {"role": "model", "parts": parts},
                    "index": index,
                    "finishReason": self._finish.get(index, "STOP"),
                }
            )
        final = self._response(candidates)
        meta = usage_metadata(usage)
        if meta:
            final["usageMetadata"] = meta
        return _frame(final)

    @staticmethod
    def error(err: GatewayError, ctx: RequestContext) -> bytes:
        return _frame(error_body(err))
