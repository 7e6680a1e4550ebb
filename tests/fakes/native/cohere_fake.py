"""A fake Cohere v2 API: POST /v2/chat (JSON, or SSE with `event:` names and typed data) and /v2/embed.

It checks `Authorization: Bearer <key>` (401 {"message": "invalid api token"}), the v2 message shapes
(roles, tool_calls with string arguments, tool messages answering an earlier call), tool definitions,
`tool_choice` in REQUIRED/NONE, and `input_type` for embeddings. Errors are {"message": ...}.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from ..base import NOT_JSON, FakeProvider, Handler, json_response
from ..recorder import RecordedRequest
from ..reply import Reply
from .common import NativeReply, answer_text, apply_stops, fragments, send_stream, sse, words
from .gemini_fake import vector

ROLES = ("system", "user", "assistant", "tool")


def error(status: int, message: str) -> web.Response:
    return json_response({"id": "err-fake", "message": message}, status)


def error_reply(status: int, message: str, **kw: Any) -> NativeReply:
    return NativeReply(status=status, json={"id": "err-fake", "message": message}, **kw)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content or () if isinstance(p, dict))


def validate(body: Any) -> str | None:
    if body is NOT_JSON or not isinstance(body, dict):
        return "invalid request: body must be JSON"
    if not isinstance(body.get("model"), str):
        return "invalid request: model must be a string"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "invalid request: messages must not be empty"
    calls: set[str] = set()
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ROLES:
            return f"invalid request: messages[{i}].role must be one of {ROLES}"
        if role == "assistant":
            for call in m.get("tool_calls") or ():
                if not isinstance((call.get("function") or {}).get("arguments"), str) or not call.get("id"):
                    return f"invalid request: messages[{i}].tool_calls need an id and string arguments"
                calls.add(call["id"])
            if not m.get("tool_calls") and "content" not in m:
                return f"invalid request: messages[{i}] needs content or tool_calls"
        if role == "tool" and m.get("tool_call_id") not in calls:
            return f"invalid request: messages[{i}].tool_call_id does not match a tool call"
        if role in ("user", "system") and not _text(m.get("content")) and not isinstance(m.get("content"), list):
            return f"invalid request: messages[{i}].content must not be empty"
    for i, tool in enumerate(body.get("tools") or ()):
        fn = tool.get("function") or {}
        if tool.get("type") != "function" or not fn.get("name") or not isinstance(fn.get("parameters"), dict):
            return f"invalid request: tools[{i}] must be a function with name and parameters"
    if body.get("tool_choice") not in (None, "REQUIRED", "NONE"):
        return "invalid request: tool_choice must be REQUIRED or NONE"
    fmt = body.get("response_format")
    if fmt is not None and fmt.get("type") not in ("text", "json_object"):
        return "invalid request: response_format.type must be text or json_object"
    for name in ("top_p", "top_k", "stop"):
        if name in body:
            return f"invalid request: unknown field {name}"
    return None


class FakeCohere(FakeProvider):
    def __init__(self, keys: Iterable[str] = ("co-fake-key",), *, name: str = "fake-cohere") -> None:
        super().__init__()
        self.keys = set(keys)
        self.name = name
        self._ids = itertools.count(1)

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        return [("POST", "/v2/chat", self.chat), ("POST", "/v2/embed", self.embed)]

    def auth_error(self, request: web.Request) -> web.Response | None:
        value = request.headers.get("Authorization", "")
        if not value.startswith("Bearer ") or value[7:] not in self.keys:
            return error(401, "invalid api token")
        return None

    async def embed(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        body = rec.body
        if body.get("input_type") not in ("search_document", "search_query", "classification", "clustering"):
            return error(400, "invalid request: valid input_type must be provided with the provided model")
        dims = int(body.get("output_dimension") or 8)
        return json_response(
            {
                "id": "emb-fake",
                "texts": body["texts"],
                "embeddings": {"float": [vector(t, dims) for t in body["texts"]]},
                "meta": {
                    "api_version": {"version": "2"},
                    "billed_units": {"input_tokens": sum(words(t) for t in body["texts"])},
                },
                "response_type": "embeddings_by_type",
            }
        )

    async def chat(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        body = rec.body
        problem = validate(body)
        if problem:
            return error(400, problem)
        answer = self.answer(body, reply)
        if not body.get("stream"):
            return json_response(answer, headers=dict(reply.headers))
        return await send_stream(request, list(self.events(answer)), reply, self.recorder, {})

    def answer(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        user = next((_text(m["content"]) for m in reversed(body["messages"]) if m["role"] == "user"), "")
        message: dict[str, Any] = {"role": "assistant"}
        if reply.tool_calls or (body.get("tool_choice") == "REQUIRED" and body.get("tools")):
            calls = reply.tool_calls or (
                {
                    "id": "call_req",
                    "name": body["tools"][0]["function"]["name"],
                    "arguments": json.dumps({"echo": user}),
                },
            )
            message["tool_plan"] = "I will call the tools."
            message["tool_calls"] = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in calls
            ]
            finish, text = "TOOL_CALL", ""
        else:
            text = answer_text(self.name, user, reply)
            if (body.get("response_format") or {}).get("type") == "json_object" and reply.content is None:
                text = json.dumps({"echo": user})
            text, hit, cut = apply_stops(text, body.get("stop_sequences"), body.get("max_tokens"))
            finish = "MAX_TOKENS" if cut else "STOP_SEQUENCE" if hit else "COMPLETE"
            message["content"] = [{"type": "text", "text": text}]
        if isinstance(reply, NativeReply) and reply.finish:
            finish = reply.finish
        prompt = sum(words(_text(m.get("content"))) for m in body["messages"])
        out = words(text) or 5
        tokens = {"input_tokens": prompt, "output_tokens": out}
        usage: dict[str, Any] = {"billed_units": dict(tokens), "tokens": dict(tokens)}
        usage.update(reply.usage or {})
        return {"id": f"chat-fake-{next(self._ids)}", "finish_reason": finish, "message": message, "usage": usage}

    @staticmethod
    def events(answer: dict[str, Any]) -> Iterable[bytes]:
        message = answer["message"]
        yield sse(
            "message-start",
            {
                "id": answer["id"],
                "type": "message-start",
                "delta": {
                    "message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
                },
            },
        )
        if message.get("tool_plan"):
            yield sse(
                "tool-plan-delta",
                {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": message["tool_plan"]}}},
            )
        for index, call in enumerate(message.get("tool_calls") or ()):
            start = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
            yield sse(
                "tool-call-start",
                {"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": start}}},
            )
            for piece in fragments(call["function"]["arguments"]):
                yield sse(
                    "tool-call-delta",
                    {
                        "type": "tool-call-delta",
                        "index": index,
                        "delta": {"message": {"tool_calls": {"function": {"arguments": piece}}}},
                    },
                )
            yield sse("tool-call-end", {"type": "tool-call-end", "index": index})
        for index, part in enumerate(message.get("content") or ()):
            yield sse(
                "content-start",
                {
                    "type": "content-start",
                    "index": index,
                    "delta": {"message": {"content": {"type": "text", "text": ""}}},
                },
            )
            pieces = part["text"].split(" ")
            for n, piece in enumerate(pieces):
                text = piece if n == len(pieces) - 1 else piece + " "
                yield sse(
                    "content-delta",
                    {"type": "content-delta", "index": index, "delta": {"message": {"content": {"text": text}}}},
                )
            yield sse("content-end", {"type": "content-end", "index": index})
        yield sse(
            "message-end",
            {"type": "message-end", "delta": {"finish_reason": answer["finish_reason"], "usage": answer["usage"]}},
        )
