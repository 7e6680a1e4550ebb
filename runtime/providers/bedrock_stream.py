"""ConverseStream (AWS event-stream frames) -> OpenAI chunks.

Events, by `:event-type`: messageStart, contentBlockStart (a toolUse's id and name), contentBlockDelta
(text, toolUse input fragments, reasoning), contentBlockStop, messageStop (stopReason), then metadata
(usage). The stream is finished at `metadata`, or at EOF after `messageStop` when no metadata came.
A `:message-type` of exception (or error) inside the 200 stream is raised as a ProviderError.
"""

from __future__ import annotations

from typing import Any

import ujson

from runtime.codecs.eventstream import EventStreamDecoder, Message
from runtime.errors import UpstreamGarbage
from runtime.providers.base import Usage
from runtime.providers.bedrock_wire import FINISH, JSON_TOOL, error_from, usage_of
from runtime.providers.common import STOP, TOOL_CALLS, ChunkMaker


class ConverseStream:
    __slots__ = ("_blocks", "_chunks", "_decoder", "_stopped", "_tools", "finished", "usage")

    def __init__(self, model: str, created: int, rid: str) -> None:
        self._decoder = EventStreamDecoder()
        self._chunks = ChunkMaker(rid, model, created)
        self._blocks: dict[int, int] = {}  # content block index -> tool call index (-1: JSON-mode text)
        self._tools = 0
        self._stopped = False
        self.usage: Usage | None = None
        self.finished = False

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for message in self._decoder.feed(data):
            self._message(message, out)
        return out

    def close(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._decoder.pending:
            raise UpstreamGarbage("Bedrock stream ended inside an event-stream frame")
        if self._stopped and not self.finished:
            self.finished = True
            if self.usage is not None:
                out.append(self._chunks.usage(self.usage))
        return out

    def _message(self, message: Message, out: list[dict[str, Any]]) -> None:
        headers = message.headers
        kind = headers.get(":message-type", "event")
        try:
            payload = ujson.loads(message.payload) if message.payload else {}
        except ValueError:
            raise UpstreamGarbage(f"Bedrock stream event is not JSON: {message.payload[:120]!r}") from None
        if kind in ("exception", "error"):
            name = headers.get(":exception-type") or headers.get(":error-code")
            text = payload.get("message") or payload.get("Message") or headers.get(":error-message") or str(name)
            raise error_from(name, 500, text, payload, streaming=True)
        event = headers.get(":event-type")
        maker = self._chunks
        if event == "messageStart":
            out.append(maker.role())
        elif event == "contentBlockStart":
            start = (payload.get("start") or {}).get("toolUse")
            if start:
                index = payload.get("contentBlockIndex", 0)
                if start.get("name") == JSON_TOOL:
                    self._blocks[index] = -1
                else:
                    self._blocks[index] = self._tools
                    out.append(maker.tool_start(self._tools, start.get("toolUseId") or "", start.get("name") or ""))
                    self._tools += 1
        elif event == "contentBlockDelta":
            self._delta(payload, out)
        elif event == "messageStop":
            self._stopped = True
            finish = FINISH.get(payload.get("stopReason") or "end_turn", STOP)
            if finish == TOOL_CALLS and not self._tools:
                finish = STOP
            out.append(maker.finish(finish))
        elif event == "metadata":
            self.usage = usage_of(payload.get("usage"))
            if self.usage is not None:
                out.append(maker.usage(self.usage))
            self.finished = True

    def _delta(self, payload: dict[str, Any], out: list[dict[str, Any]]) -> None:
        delta = payload.get("delta") or {}
        if "text" in delta:
            if delta["text"]:
                out.append(self._chunks.text(delta["text"]))
        elif "toolUse" in delta:
            fragment = (delta["toolUse"] or {}).get("input") or ""
            tool = self._blocks.get(payload.get("contentBlockIndex", 0))
            if fragment and tool is not None:
                out.append(self._chunks.text(fragment) if tool < 0 else self._chunks.tool_args(tool, fragment))
        elif "reasoningContent" in delta:
            text = (delta["reasoningContent"] or {}).get("text")
            if text:
                out.append(self._chunks.delta({"reasoning_content": text}))
