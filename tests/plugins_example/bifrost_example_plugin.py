"""A small third-party plugin, installed in tests through a `bifrost.plugins` entry point.

It shows what a plugin can do through the hook contract (runtime/core/hooks.py): refuse, answer with a
response or a stream, reroute, see the request headers and set the caller, watch a stream's chunks and
stop it, and record every hook call (one JSON line per call in the `record` file) so tests can check
order and that on_finish runs once. Every behaviour is keyed on the requested model.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from runtime.core.context import RequestContext
from runtime.errors import GatewayError
from runtime.providers.base import ParsedResponse, Usage

ANSWER = "answered by the example plugin"


class ExamplePlugin:
    name = "example"
    # Checked by the config loader: unknown fields or wrong types are errors at plugins[i].config.<field>.
    config_fields = {
        "tag": str,
        "record": str,
        "reroute_to": str,
        "stop_on": str,
        "caller_header": str,
        "finish_waits_for": str,
    }

    def __init__(self, config: dict[str, Any]) -> None:
        self.tag = config.get("tag", "example")
        self.record = config.get("record")
        self.reroute_to = config.get("reroute_to")
        self.stop_on = config.get("stop_on")
        self.caller_header = config.get("caller_header")
        self.finish_waits_for = config.get("finish_waits_for")

    def _note(self, hook: str, ctx: RequestContext, **extra: Any) -> None:
        if self.record:
            row = {"tag": self.tag, "hook": hook, "id": ctx.id, "ingress": ctx.ingress, **extra}
            with open(self.record, "a") as f:  # a test plugin: a tiny blocking write is fine here
                f.write(json.dumps(row) + "\n")

    async def pre_hook(self, ctx: RequestContext) -> Any:
        model = ctx.body.get("model")
        if self.caller_header:
            ctx.caller = ctx.headers.get(self.caller_header)
        self._note("pre", ctx, model=model, stream=ctx.stream, caller=ctx.caller, endpoint=ctx.endpoint)
        if model == "hook/refuse":
            raise GatewayError("refused by the example plugin", status=403, type="permission_error", code="refused")
        if model == "hook/raise":
            raise RuntimeError("a bug in the example plugin")
        if model == "hook/reroute" and self.reroute_to:
            ctx.body["model"] = self.reroute_to
        if model == "hook/answer":
            if ctx.stream:
                return _chunks()
            data = {
                "id": "chatcmpl-hook",
                "object": "chat.completion",
                "created": 0,
                "model": "hook/answer",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
            }
            return ParsedResponse(data, Usage(3, 5))
        return None

    async def post_hook(self, ctx: RequestContext, response: ParsedResponse | None) -> None:
        self._note("post", ctx, status=ctx.status, has_response=response is not None, error_type=ctx.error_type)

    def on_chunk(self, ctx: RequestContext, chunk: dict[str, Any]) -> None:
        if not self.stop_on:
            return
        for choice in chunk.get("choices") or ():
            if self.stop_on in ((choice.get("delta") or {}).get("content") or ""):
                raise GatewayError("stopped by the example plugin's output check", status=400, code="output_check")

    def on_finish(self, ctx: RequestContext) -> None:
        if self.finish_waits_for and ctx.headers.get("x-finish-waits"):
            # A handshake for the test that the answer leaves before on_finish: the client creates this file
            # only once it has read its answer. Blocking the loop (at most 10 s) is the point: if on_finish
            # ran before the answer was sent, the file could not appear and the note says so.
            deadline = time.monotonic() + 10
            while not os.path.exists(self.finish_waits_for) and time.monotonic() < deadline:
                time.sleep(0.01)
            self._note("finish", ctx, status=ctx.status, answer_was_read=os.path.exists(self.finish_waits_for))
            return
        self._note("finish", ctx, status=ctx.status)


async def _chunks() -> AsyncIterator[dict[str, Any]]:
    base = {"id": "chatcmpl-hook", "object": "chat.completion.chunk", "created": 0, "model": "hook/answer"}
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    for word in ANSWER.split(" "):
        text = word if word == "answered" else " " + word
        yield {**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    yield {**base, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}
