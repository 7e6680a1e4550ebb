"""A fake Anthropic Messages API: POST /v1/messages (JSON and SSE), POST /v1/messages/count_tokens.

It checks what Anthropic checks: `x-api-key` (401 authentication_error), `anthropic-version` (400),
`model`, `max_tokens`, non-empty `messages` alternating user/assistant, valid content blocks, every
tool_use answered by tool_result blocks at the start of the next user turn, `tool_choice` naming a
defined tool. Errors use Anthropic's envelope {"type": "error", "error": {type, message}}.

The "model" echoes "<name>: <last user text>", continues a trailing assistant turn (prefill: only the
rest of the answer is sent; a prefill ending in whitespace is refused, as Anthropic does), honours
stop_sequences and max_tokens (counted in words), answers a forced tool with that tool's input, and
streams the documented event sequence.
Also serves Vertex's Claude endpoints (`:rawPredict` / `:streamRawPredict`) through `vertex_routes`.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from ..base import NOT_JSON, FakeProvider, Handler, json_response
from ..recorder import RecordedRequest
from ..reply import Reply
from .common import NativeReply, answer_text, apply_stops, fragments, send_stream, sse, tool_calls_of, words

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MEDIA_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}


def error(status: int, etype: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(
        {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_fake"}, status, headers
    )


def error_reply(status: int, etype: str, message: str, **kw: Any) -> NativeReply:
    return NativeReply(status=status, json={"type": "error", "error": {"type": etype, "message": message}}, **kw)


def _block_error(block: Any, where: str, role: str) -> str | None:
    if not isinstance(block, dict):
        return f"{where}: content blocks must be objects"
    kind = block.get("type")
    if kind == "text":
        if not isinstance(block.get("text"), str) or not block["text"]:
            return f"{where}: text content blocks must be non-empty"
    elif kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64":
            if source.get("media_type") not in MEDIA_TYPES or not source.get("data"):
                return f"{where}.source: invalid base64 image source"
        elif source.get("type") != "url" or not str(source.get("url", "")).startswith("http"):
            return f"{where}.source: invalid image source"
    elif kind == "document":
        if (block.get("source") or {}).get("type") not in ("base64", "url", "text"):
            return f"{where}.source: invalid document source"
    elif kind == "tool_use" and role == "assistant":
        if not block.get("id") or not isinstance(block.get("input"), dict) or not block.get("name"):
            return f"{where}: tool_use needs id, name and an input object"
    elif kind == "tool_result" and role == "user":
        if not block.get("tool_use_id"):
            return f"{where}: tool_result needs tool_use_id"
    else:
        return f"{where}: unexpected block type {kind!r} in a {role} message"
    return None


def validate(body: Any, counting: bool = False) -> str | None:
    if body is NOT_JSON or not isinstance(body, dict):
        return "There was an error parsing the body"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not counting and not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    pending: set[str] = set()
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if i and messages[i - 1].get("role") == role:
            return f"messages.{i}: roles must alternate between user and assistant"
        content = m.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            return f"messages.{i}.content: must be a string or a non-empty list"
        for j, block in enumerate(blocks):
            problem = _block_error(block, f"messages.{i}.content.{j}", role)
            if problem:
                return problem
        if pending:
            leading = []
            for block in blocks:
                if block.get("type") != "tool_result":
                    break
                leading.append(block["tool_use_id"])
            if set(leading) != pending:
                return (
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {', '.join(sorted(pending - set(leading)))}"
                )
        pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    last = messages[-1]
    if (
        last.get("role") == "assistant"
        and isinstance(last.get("content"), str)
        and last["content"] != last["content"].rstrip()
    ):
        return "final assistant content cannot end with trailing whitespace"
    system = body.get("system")
    if (
        system is not None
        and not isinstance(system, str)
        and (not isinstance(system, list) or any(b.get("type") != "text" or not b.get("text") for b in system))
    ):
        return "system: must be a string or a list of text blocks"
    names = set()
    for i, tool in enumerate(body.get("tools") or ()):
        if not TOOL_NAME.match(str(tool.get("name", ""))) or not isinstance(tool.get("input_schema"), dict):
            return f"tools.{i}: tools need a valid name and an input_schema object"
        names.add(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            return "tool_choice.type: invalid"
        if choice.get("type") == "tool" and choice.get("name") not in names:
            return f"tool_choice.name: no tool named {choice.get('name')!r}"
    for name in ("stop_sequences",):
        value = body.get(name)
        if value is not None and (not isinstance(value, list) or not all(isinstance(s, str) for s in value)):
            return f"{name}: must be a list of strings"
    temperature = body.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        return "temperature: must be between 0 and 1"
    return None


def all_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    system = body.get("system")
    if isinstance(system, str):
        parts.append(system)
    elif isinstance(system, list):
        parts.extend(b.get("text", "") for b in system)
    for m in body.get("messages", ()):
        content = m["content"]
        if isinstance(content, str):
            parts.append(content)
            continue
        for b in content:
            if b.get("type") == "text":
                parts.append(b["text"])
            elif b.get("type") == "tool_result":
                inner = b.get("content")
                parts.append(inner if isinstance(inner, str) else " ".join(x.get("text", "") for x in inner or ()))
    return " ".join(parts)


def last_user_text(body: dict[str, Any]) -> str:
    for m in reversed(body["messages"]):
        if m["role"] == "user":
            content = m["content"]
            if isinstance(content, str):
                return content
            return " ".join(b["text"] for b in content if b.get("type") == "text")
    return ""


def prefill_text(body: dict[str, Any]) -> str:
    """The partial answer a trailing assistant turn gives the model to continue ("" without one)."""
    last = body["messages"][-1]
    if last["role"] != "assistant":
        return ""
    content = last["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)


class FakeAnthropic(FakeProvider):
    def __init__(self, keys: Iterable[str] = ("sk-ant-fake-1",), *, name: str = "fake-anthropic") -> None:
        super().__init__()
        self.keys = set(keys)
        self.name = name
        self._ids = itertools.count(1)
        self.require_key = True  # Vertex's Claude endpoints use a bearer token instead (checked by FakeVertex)

    def routes(self) -> Iterable[tuple[str, str, Handler]]:
        return [("POST", "/v1/messages", self.messages), ("POST", "/v1/messages/count_tokens", self.count)]

    def auth_error(self, request: web.Request) -> web.Response | None:
        if not self.require_key:
            return None
        key = request.headers.get("x-api-key")
        if key not in self.keys:
            return error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return error(400, "invalid_request_error", "anthropic-version: header is required")
        return None

    async def count(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        problem = validate(rec.body, counting=True)
        if problem:
            return error(400, "invalid_request_error", problem)
        return json_response({"input_tokens": words(all_text(rec.body))})

    async def messages(
        self, request: web.Request, rec: RecordedRequest, reply: Reply, body: dict[str, Any] | None = None
    ) -> web.StreamResponse:
        body = body if body is not None else rec.body
        problem = validate(body)
        if problem:
            return error(400, "invalid_request_error", problem)
        message = self.answer(body, reply)
        if body.get("stream"):
            frames = list(self.events(message))
            err = reply.stream_error if isinstance(reply, NativeReply) else None
            return await send_stream(
                request,
                frames,
                reply,
                self.recorder,
                {"request-id": "req_fake"},
                error_frame=sse("error", err) if err else None,
            )
        return json_response(message, headers={"request-id": "req_fake", **reply.headers})

    def answer(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        stop_sequence = None
        choice = body.get("tool_choice") or {}
        calls = tool_calls_of(reply)
        if calls:
            content = [{"type": "tool_use", **call} for call in calls]
            stop = "tool_use"
        elif choice.get("type") == "tool":
            raw = reply.content if reply.content is not None else json.dumps({"echo": last_user_text(body)})
            content = [
                {
                    "type": "tool_use",
                    "id": f"toolu_fake{next(self._ids):04d}",
                    "name": choice["name"],
                    "input": json.loads(raw),
                }
            ]
            stop = "tool_use"
        else:
            text = answer_text(self.name, last_user_text(body), reply)
            prefill = prefill_text(body)
            if prefill and text.startswith(prefill):  # a trailing assistant turn is continued, not repeated
                text = text[len(prefill) :]
            text, stop_sequence, cut = apply_stops(text, body.get("stop_sequences"), body["max_tokens"])
            content = [{"type": "text", "text": text}]
            stop = "max_tokens" if cut else "stop_sequence" if stop_sequence else "end_turn"
        if isinstance(reply, NativeReply) and reply.finish:
            stop = reply.finish
        out_tokens = sum(words(b.get("text", "")) or words(json.dumps(b.get("input"))) for b in content)
        usage = {
            "input_tokens": words(all_text(body)),
            "output_tokens": out_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        usage.update(reply.usage or {})
        return {
            "id": f"msg_fake{next(self._ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-vertex"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": stop_sequence,
            "usage": usage,
        }

    def events(self, message: dict[str, Any]) -> Iterable[bytes]:
        usage = message["usage"]
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        yield sse("message_start", {"type": "message_start", "message": start})
        yield sse("ping", {"type": "ping"})
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                yield sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                )
                pieces = block["text"].split(" ")
                for n, piece in enumerate(pieces):
                    text = piece if n == len(pieces) - 1 else piece + " "
                    yield sse(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}},
                    )
            else:
                yield sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}},
                )
                for piece in fragments(json.dumps(block["input"])):
                    yield sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
            yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
        yield sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
                # The current API repeats the cumulative totals here.
                "usage": usage,
            },
        )
        yield sse("message_stop", {"type": "message_stop"})
