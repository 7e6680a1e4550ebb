"""Internal (OpenAI) stream chunks -> Anthropic Messages SSE events, for the /anthropic ingress.

OpenAI streams text and tool-call deltas flat; Anthropic wants content blocks: a block opens
(content_block_start), gets deltas (text_delta / input_json_delta / thinking_delta) and closes
(content_block_stop). A new kind of delta, or a new tool call index, closes the open block and opens
the next. Usage arrives last in OpenAI streams, so message_start carries zeros and message_delta the
totals (the SDK overwrites with message_delta's cumulative counts).
"""

from __future__ import annotations

from typing import Any

from runtime.codecs.sse import encode_event
from runtime.core.context import RequestContext
from runtime.core.text import utf8
from runtime.errors import GatewayError
from runtime.providers.base import Usage
from runtime.providers.common import dumps
from runtime.wire.anthropic_ingress import STOP_REASON, error_status_and_body, message_id, usage_dict


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return encode_event(name, utf8(dumps(payload)))  # utf8: a lone surrogate becomes U+FFFD, never a crash


class AnthropicEncoder:
    """Feed chunks with `encode`, finish with `end(usage)`; each returns the bytes to send."""

    __slots__ = ("_blocks", "_index", "_kind", "_model", "_started", "_stop", "_stop_sequence", "_tool_blocks")

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._index = -1  # the open content block, -1 when none
        self._kind: str | None = None  # "text" | "thinking" | "tool"
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool call index -> Anthropic block index
        self._blocks = 0
        self._stop = "end_turn"
        self._stop_sequence: str | None = None

    def _start(self, rid: str, out: list[bytes]) -> None:
        self._started = True
        message: dict[str, Any] = {
            "id": message_id(rid),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        out.append(_event("message_start", {"type": "message_start", "message": message}))

    def _close_block(self, out: list[bytes]) -> None:
        if self._index >= 0:
            out.append(_event("content_block_stop", {"type": "content_block_stop", "index": self._index}))
            self._index = -1
            self._kind = None

    def _open(self, kind: str, block: dict[str, Any], out: list[bytes]) -> int:
        self._close_block(out)
        self._index = self._blocks
        self._blocks += 1
        self._kind = kind
        out.append(
            _event("content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block})
        )
        return self._index

    def _delta(self, index: int, delta: dict[str, Any], out: list[bytes]) -> None:
        out.append(_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))

    def encode(self, chunk: dict[str, Any]) -> bytes:
        out: list[bytes] = []
        if not self._started:
            self._start(str(chunk.get("id") or ""), out)
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            thinking = delta.get("reasoning_content")
            if thinking:
                if self._kind != "thinking":
                    self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""}, out)
                self._delta(self._index, {"type": "thinking_delta", "thinking": thinking}, out)
            text = delta.get("content")
            if text:
                if self._kind != "text":
                    self._open("text", {"type": "text", "text": ""}, out)
                self._delta(self._index, {"type": "text_delta", "text": text}, out)
            for call in delta.get("tool_calls") or ():
                self._tool_delta(call, out)
            if choice.get("finish_reason"):
                self._stop = STOP_REASON.get(choice["finish_reason"], "end_turn")
                if choice.get("stop_sequence"):
                    self._stop, self._stop_sequence = "stop_sequence", choice["stop_sequence"]
        return b"".join(out)

    def _tool_delta(self, call: dict[str, Any], out: list[bytes]) -> None:
        index = call.get("index", 0)
        fn = call.get("function") or {}
        block = self._tool_blocks.get(index)
        if block is None:
            block = self._open(
                "tool", {"type": "tool_use", "id": call.get("id") or "", "name": fn.get("name") or "", "input": {}}, out
            )
            self._tool_blocks[index] = block
        if fn.get("arguments"):
            # A fragment for an earlier call (interleaved parallel calls) still names that call's block.
            self._delta(block, {"type": "input_json_delta", "partial_json": fn["arguments"]}, out)

    def end(self, usage: Usage | None, rid: str = "") -> bytes:
        out: list[bytes] = []
        if not self._started:
            self._start(rid, out)
        self._close_block(out)
        out.append(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._stop, "stop_sequence": self._stop_sequence},
                    "usage": usage_dict(usage),
                },
            )
        )
        out.append(_event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    @staticmethod
    def error(err: GatewayError, ctx: RequestContext) -> bytes:
        _status, body = error_status_and_body(err, {})
        return _event("error", body)
