"""OpenAI chat <-> Anthropic Messages, as pure functions (shared by the Anthropic and Vertex adapters).

Request: system/developer messages are lifted into `system`; consecutive same-role turns are merged
(tool results of a parallel call become one user turn, results first); images become base64 or URL
image blocks; tool calls become `tool_use` blocks with parsed `input`. JSON mode has no native
switch, so it is a forced tool (`JSON_TOOL`) whose input is turned back into the answer's text.
`cache_control` on parts, messages and tools is kept (it is how prompt caching is asked for).

Usage: Anthropic's `input_tokens` excludes cache reads and writes, OpenAI's `prompt_tokens` includes
them, so prompt = input + cache_read + cache_creation and cached = cache_read.
"""

from __future__ import annotations

from typing import Any

from runtime.codecs import fields
from runtime.codecs.sse import SSEParser
from runtime.errors import InvalidRequest, ProviderError, UpstreamGarbage
from runtime.providers.base import Usage
from runtime.providers.common import (
    CONTENT_FILTER,
    LENGTH,
    STOP,
    TOOL_CALLS,
    ChunkMaker,
    append_turn,
    chat_completion,
    chat_messages,
    content_parts,
    file_data_of,
    function_tools,
    image_url_of,
    is_context_overflow,
    json_arguments,
    loads_object,
    max_tokens_of,
    message_tool_calls,
    parse_data_url,
    response_format_of,
    stop_list,
    text_of,
    tool_call,
    tool_choice_of,
)

DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients often leave it out
JSON_TOOL = "bifrost_json_output"

FINISH = {
    "end_turn": STOP,
    "stop_sequence": STOP,
    "pause_turn": STOP,
    "max_tokens": LENGTH,
    "model_context_window_exceeded": LENGTH,
    "tool_use": TOOL_CALLS,
    "refusal": CONTENT_FILTER,
}


def _image_block(url: str) -> dict[str, Any]:
    inline = parse_data_url(url)
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    media, data = inline
    return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}


def _user_blocks(content: Any, path: str = "messages") -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(content_parts(content, path)):
        kind = part.get("type")
        if kind == "text":
            if not part.get("text"):
                continue  # Anthropic rejects empty text blocks
            block: dict[str, Any] = {"type": "text", "text": part["text"]}
        elif kind == "image_url":
            block = _image_block(image_url_of(part))
        elif kind == "file":
            data = file_data_of(part, f"{path}[{i}]") or ""
            inline = parse_data_url(data)
            if inline is None:
                raise InvalidRequest("file parts need file.file_data as a base64 data URL", param="messages")
            block = {"type": "document", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
        else:
            raise InvalidRequest(f"content part type {kind!r} is not supported by Anthropic models", param="messages")
        if "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _assistant_blocks(message: dict[str, Any], path: str) -> list[dict[str, Any]]:
    blocks = [b for b in _user_blocks(message.get("content"), f"{path}.content") if b["type"] == "text"]
    for call_id, name, arguments in message_tool_calls(message, path):
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": json_arguments(arguments)})
    return blocks


def _tool_result(message: dict[str, Any], path: str) -> dict[str, Any]:
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": fields.opt_str(message, "tool_call_id", path)}
    if isinstance(content, list):
        block["content"] = _user_blocks(content, f"{path}.content")
    else:
        block["content"] = text_of(content, f"{path}.content")
    if message.get("is_error"):  # kept from the /anthropic ingress
        block["is_error"] = True
    return block


def _is_tool_result(block: dict[str, Any]) -> bool:
    return block["type"] == "tool_result"


def convert_messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI messages -> (Anthropic system blocks, Anthropic messages)."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(fields.objects(messages, "messages")):
        path = f"messages[{i}]"
        role = message.get("role")
        if role in ("system", "developer"):
            for block in _user_blocks(message.get("content"), f"{path}.content"):
                if block["type"] == "text":
                    system.append(block)
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), f"{path}.content")
            turn = "user"
        elif role == "assistant":
            blocks = _assistant_blocks(message, path)
            turn = "assistant"
        elif role == "tool":
            blocks = [_tool_result(message, path)]
            turn = "user"
        else:
            raise InvalidRequest(f"message role {role!r} is not supported by Anthropic models", param="messages")
        if not blocks:
            continue
        if "cache_control" in message:
            blocks[-1]["cache_control"] = message["cache_control"]
        append_turn(out, turn, blocks, _is_tool_result if role == "tool" else None)
    return system, out


def build_messages_body(
    body: dict[str, Any],
    model: str | None,
    stream: bool,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    counting: bool = False,
) -> dict[str, Any]:
    """An OpenAI chat body -> an Anthropic Messages body (`model` None: left out, as Vertex wants)."""
    messages = chat_messages(body)
    fields.check_sampling(body)
    n = body.get("n")
    if n not in (None, 1):
        raise InvalidRequest("Anthropic models return one choice; 'n' must be 1", param="n")
    system, converted = convert_messages(messages)
    out: dict[str, Any] = {}
    if model is not None:
        out["model"] = model
    out["messages"] = converted
    if system:
        out["system"] = system
    tools = [
        {
            "name": t["name"],
            "description": t["description"],
            "input_schema": t["parameters"],
            **({"cache_control": t["cache_control"]} if "cache_control" in t else {}),
        }
        for t in function_tools(body)
    ]
    choice = tool_choice_of(body)
    kind, schema, _name = response_format_of(body)
    if kind != "text":
        tools.append(
            {
                "name": JSON_TOOL,
                "description": "Respond with the answer as this tool's input.",
                "input_schema": schema or {"type": "object"},
            }
        )
        if len(tools) == 1:
            choice = ("function", JSON_TOOL)
    if tools:
        out["tools"] = tools
    if choice is not None and (tools or choice[0] == "none"):
        mapped: dict[str, Any] = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}.get(
            choice[0]
        ) or {"type": "tool", "name": choice[1]}
        out["tool_choice"] = mapped
    if body.get("parallel_tool_calls") is False and tools:
        out["tool_choice"] = {**out.get("tool_choice", {"type": "auto"}), "disable_parallel_tool_use": True}
    if "thinking" in body:
        out["thinking"] = body["thinking"]
    if counting:
        return out
    out["max_tokens"] = max_tokens_of(body) or default_max_tokens
    stops = stop_list(body.get("stop"))
    if stops:
        out["stop_sequences"] = stops
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            out[name] = body[name]
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    if stream:
        out["stream"] = True
    return out


def usage_of(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    read = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + read + written
    return Usage(prompt, usage.get("output_tokens") or 0, cached_tokens=read, cache_write_tokens=written)


def parse_message(raw: bytes, model: str, created: int) -> tuple[dict[str, Any], Usage | None]:
    """An Anthropic Messages response body -> (OpenAI chat.completion, usage)."""
    data = loads_object(raw, "Anthropic response")
    if data.get("type") == "error":
        raise error_from_body(500, data, {})
    content = data.get("content")
    if not isinstance(content, list):
        raise UpstreamGarbage(f"Anthropic response has no content list: {raw[:120]!r}")
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thinking.append(block.get("thinking") or "")
        elif kind == "tool_use":
            if block.get("name") == JSON_TOOL:
                texts.append(tool_call("", "", block.get("input"))["function"]["arguments"])
            else:
                calls.append(tool_call(block.get("id") or "", block.get("name") or "", block.get("input")))
    finish = FINISH.get(data.get("stop_reason") or "end_turn", STOP)
    if finish == TOOL_CALLS and not calls:
        finish = STOP  # only the JSON-mode tool was "called"
    usage = usage_of(data.get("usage"))
    answer = chat_completion(
        data.get("id") or "", data.get("model") or model, created, "".join(texts), calls, finish, usage
    )
    if thinking:
        answer["choices"][0]["message"]["reasoning_content"] = "".join(thinking)
    if data.get("stop_sequence"):
        # OpenAI's finish reason cannot say which stop sequence matched; keep it for the /anthropic ingress.
        answer["choices"][0]["stop_sequence"] = data["stop_sequence"]
    return answer, usage


class MessagesStream:
    """Anthropic SSE in, OpenAI chunks out. `finished` once `message_stop` arrives, or when the body ends
    cleanly after the stop reason (`message_delta`) without it. A malformed event is skipped and counted
    in `skipped`; an `error` event fails the stream."""

    __slots__ = (
        "_blocks",
        "_chunks",
        "_input",
        "_output",
        "_parser",
        "_stopped",
        "_tools",
        "finished",
        "skipped",
        "usage",
    )

    def __init__(self, model: str, created: int) -> None:
        self._parser = SSEParser()
        self._chunks = ChunkMaker("", model, created)
        self._blocks: dict[int, int] = {}  # content block index -> OpenAI tool call index (-1: JSON-mode text)
        self._tools = 0
        self._input: dict[str, int] = {}
        self._output = 0
        self.usage: Usage | None = None
        self.finished = False
        self._stopped = False  # the stop reason arrived
        self.skipped = 0

    def _set_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for name in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            if usage.get(name) is not None:
                self._input[name] = usage[name]  # later events repeat totals: replace, never add
        if usage.get("output_tokens") is not None:
            self._output = usage["output_tokens"]
        self.usage = usage_of({**self._input, "output_tokens": self._output})

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in self._parser.feed(data):
            if not event.data:
                continue
            try:
                payload = loads_object(event.data, "Anthropic stream event")
            except UpstreamGarbage:
                self.skipped += 1
                continue
            kind = payload.get("type") or event.event
            handler = _HANDLERS.get(kind or "")
            if handler is not None:
                handler(self, payload, out)
        return out

    def close(self) -> list[dict[str, Any]]:
        out = self.feed(b"\n\n") if self._parser.pending else []
        if self._stopped and not self.finished:
            self._message_stop({}, out)  # a clean end after the stop reason: complete without message_stop
        return out

    # -- event handlers --------------------------------------------------------------------------------
    def _message_start(self, payload: dict[str, Any], out: list[dict[str, Any]]) -> None:
        message = payload.get("message") or {}
        self._chunks.id = message.get("id") or ""
        self._chunks.model = message.get("model") or self._chunks.model
        self._set_usage(message.get("usage"))
        out.append(self._chunks.role())

    def _block_start(self, payload: dict[str, Any], out: list[dict[str, Any]]) -> None:
        block = payload.get("content_block") or {}
        index = payload.get("index", 0)
        if block.get("type") == "tool_use":
            if block.get("name") == JSON_TOOL:
                self._blocks[index] = -1
                return
            self._blocks[index] = self._tools
            out.append(self._chunks.tool_start(self._tools, block.get("id") or "", block.get("name") or ""))
            self._tools += 1
        elif block.get("type") == "text" and block.get("text"):
            out.append(self._chunks.text(block["text"]))

    def _block_delta(self, payload: dict[str, Any], out: list[dict[str, Any]]) -> None:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            out.append(self._chunks.text(delta.get("text") or ""))
        elif kind == "input_json_delta":
            fragment = delta.get("partial_json") or ""
            tool = self._blocks.get(payload.get("index", 0))
            if not fragment or tool is None:
                return
            out.append(self._chunks.text(fragment) if tool < 0 else self._chunks.tool_args(tool, fragment))
        elif kind == "thinking_delta":
            out.append(self._chunks.delta({"reasoning_content": delta.get("thinking") or ""}))

    def _message_delta(self, payload: dict[str, Any], out: list[dict[str, Any]]) -> None:
        self._set_usage(payload.get("usage"))
        delta = payload.get("delta") or {}
        reason = delta.get("stop_reason")
        if reason:
            self._stopped = True
            finish = FINISH.get(reason, STOP)
            if finish == TOOL_CALLS and not self._tools:
                finish = STOP
            chunk = self._chunks.finish(finish)
            if delta.get("stop_sequence"):
                chunk["choices"][0]["stop_sequence"] = delta["stop_sequence"]
            out.append(chunk)

    def _message_stop(self, payload: dict[str, Any], out: list[dict[str, Any]]) -> None:
        if self.usage is not None:
            out.append(self._chunks.usage(self.usage))
        self.finished = True

    def _error(self, payload: dict[str, Any], out: list[dict[str, Any]]) -> None:
        raise error_from_body(500, payload, {}, streaming=True)


_HANDLERS = {
    "message_start": MessagesStream._message_start,
    "content_block_start": MessagesStream._block_start,
    "content_block_delta": MessagesStream._block_delta,
    "message_delta": MessagesStream._message_delta,
    "message_stop": MessagesStream._message_stop,
    "error": MessagesStream._error,
}

# Anthropic error types -> the HTTP status they come with (used for errors inside a 200 stream).
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
    "timeout_error": 504,
}


def error_from_body(
    status: int, body: Any, headers: Any, streaming: bool = False, retry_after_s: float | None = None
) -> ProviderError:
    """Anthropic's `{"type": "error", "error": {type, message}}` -> ProviderError with the right status.

    529 (overloaded) becomes 503 so OpenAI clients and the retry policy see a familiar, retryable status.
    """
    err = body.get("error") if isinstance(body, dict) else None
    etype = err.get("type") if isinstance(err, dict) else None
    message = (err.get("message") if isinstance(err, dict) else None) or f"Anthropic returned HTTP {status}"
    if streaming and etype in ERROR_STATUS:
        status = ERROR_STATUS[etype]
    code = None
    if status == 529 or etype == "overloaded_error":
        status, etype, code = 503, "overloaded_error", "overloaded"
    elif etype == "invalid_request_error" and is_context_overflow(message):
        code = "context_length_exceeded"
    elif etype == "rate_limit_error":
        code = "rate_limit_exceeded"
    if streaming:
        message = f"Anthropic stream error: {message}"
    return ProviderError(
        message,
        status=status,
        type=etype or _fallback_type(status),
        code=code,
        retry_after_s=retry_after_s,
        provider_body=body,
    )


def _fallback_type(status: int) -> str:
    for etype, known in ERROR_STATUS.items():
        if known == status:
            return etype
    return "api_error" if status >= 500 else "invalid_request_error"
