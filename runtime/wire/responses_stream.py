"""Internal (OpenAI chat) stream chunks -> the Responses API's typed SSE events.

    response.created, response.in_progress
    per output item: response.output_item.added
      message:       response.content_part.added, response.output_text.delta..., response.output_text.done,
                     response.content_part.done
      function_call: response.function_call_arguments.delta..., response.function_call_arguments.done
    response.output_item.done
    response.completed (or response.incomplete when the answer was cut for length or filtered)

Every event carries a `sequence_number`. A failure after the first byte is an `error` event (with an
`error` object too, so the openai SDK raises it) and the stream ends without response.completed.
"""

from __future__ import annotations

from typing import Any

from runtime.codecs.sse import encode_event
from runtime.core.context import RequestContext
from runtime.core.text import utf8
from runtime.errors import GatewayError
from runtime.providers.base import Usage
from runtime.providers.common import dumps
from runtime.wire.responses import INCOMPLETE, call_item, message_item, response_shell, usage_object


class ResponsesEncoder:
    __slots__ = (
        "_calls",
        "_created",
        "_internal",
        "_model",
        "_open",
        "_output",
        "_reason",
        "_rid",
        "_seq",
        "_started",
        "_text",
    )

    def __init__(self, model: str, created: int, internal: dict[str, Any]) -> None:
        self._model = model
        self._created = created
        self._internal = internal
        self._rid = ""
        self._seq = 0
        self._started = False
        self._output: list[dict[str, Any]] = []  # finished items, in order
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}  # tool call index -> open function_call item
        self._reason: str | None = None

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        body = {"type": kind, "sequence_number": self._seq, **payload}
        self._seq += 1
        return encode_event(kind, utf8(dumps(body)))  # utf8: lone surrogates -> U+FFFD, never a crash

    def _shell(self, status: str) -> dict[str, Any]:
        return response_shell(self._rid, self._model, self._created, self._internal, status)

    def _start(self, out: list[bytes]) -> None:
        self._started = True
        out.append(self._event("response.created", {"response": self._shell("in_progress")}))
        out.append(self._event("response.in_progress", {"response": self._shell("in_progress")}))

    def _index(self) -> int:
        return len(self._output)

    def _close_open(self, out: list[bytes]) -> None:
        item = self._open
        if item is None:
            return
        self._open = None
        index = self._index()
        if item["type"] == "message":
            text = "".join(self._text)
            self._text = []
            ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
            out.append(self._event("response.output_text.done", {**ids, "text": text, "logprobs": []}))
            part = {"type": "output_text", "text": text, "annotations": []}
            out.append(self._event("response.content_part.done", {**ids, "part": part}))
            item = message_item(item["id"], text)
        else:
            item = {**item, "status": "completed"}
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    {
                        "item_id": item["id"],
                        "output_index": index,
                        "name": item["name"],
                        "arguments": item["arguments"],
                    },
                )
            )
        out.append(self._event("response.output_item.done", {"output_index": index, "item": item}))
        self._output.append(item)

    def _open_item(self, item: dict[str, Any], out: list[bytes]) -> None:
        self._close_open(out)
        self._open = item
        out.append(self._event("response.output_item.added", {"output_index": self._index(), "item": item}))

    def encode(self, chunk: dict[str, Any]) -> bytes:
        out: list[bytes] = []
        self._rid = self._rid or str(chunk.get("id") or "")
        if not self._started:
            self._start(out)
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self._open is None or self._open["type"] != "message":
                    item = message_item(f"msg_{self._rid}_{self._index()}", "", "in_progress")
                    self._open_item(item, out)
                    out.append(
                        self._event(
                            "response.content_part.added",
                            {
                                "item_id": item["id"],
                                "output_index": self._index(),
                                "content_index": 0,
                                "part": {"type": "output_text", "text": "", "annotations": []},
                            },
                        )
                    )
                self._text.append(delta["content"])
                out.append(
                    self._event(
                        "response.output_text.delta",
                        {
                            "item_id": self._open["id"],  # type: ignore[index]
                            "output_index": self._index(),
                            "content_index": 0,
                            "delta": delta["content"],
                            "logprobs": [],
                        },
                    )
                )
            for call in delta.get("tool_calls") or ():
                self._tool_delta(call, out)
            if choice.get("finish_reason"):
                self._reason = INCOMPLETE.get(choice["finish_reason"])
        return b"".join(out)

    def _tool_delta(self, call: dict[str, Any], out: list[bytes]) -> None:
        fn = call.get("function") or {}
        item = self._calls.get(call.get("index", 0))
        if item is None:
            item = call_item(call.get("id") or "", fn.get("name") or "", "", "in_progress")
            self._calls[call.get("index", 0)] = item
            self._open_item(item, out)
        fragment = fn.get("arguments") or ""
        if fragment:
            item["arguments"] += fragment
            if self._open is item:  # interleaved fragments of an earlier call only join its final arguments
                out.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        {"item_id": item["id"], "output_index": self._index(), "delta": fragment},
                    )
                )

    def end(self, usage: Usage | None, rid: str = "") -> bytes:
        out: list[bytes] = []
        self._rid = self._rid or rid
        if not self._started:
            self._start(out)
        self._close_open(out)
        status = "incomplete" if self._reason else "completed"
        response = self._shell(status)
        response["output"] = self._output
        response["usage"] = usage_object(usage)
        if self._reason:
            response["incomplete_details"] = {"reason": self._reason}
        out.append(self._event(f"response.{status}", {"response": response}))
        return b"".join(out)

    def error(self, err: GatewayError, ctx: RequestContext) -> bytes:
        error = {"type": err.type, "code": err.code or err.type, "message": err.message, "param": err.param}
        return self._event("error", {"code": error["code"], "message": err.message, "param": err.param, "error": error})
