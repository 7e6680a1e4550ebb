"""The Anthropic Messages format as an ingress: Anthropic request -> internal (OpenAI) body, and the
internal answer -> Anthropic message, stream events and errors. Pure functions, no I/O.

Whatever provider serves the model, the `anthropic` SDK sees Anthropic's shapes: text/tool_use blocks,
`stop_reason`, usage with `cache_read_input_tokens`, and the SSE sequence message_start,
content_block_start/delta/stop..., message_delta, message_stop.
"""

from __future__ import annotations

from typing import Any

import ujson

from runtime.codecs import fields
from runtime.errors import GatewayError, InvalidRequest
from runtime.providers.base import Usage
from runtime.providers.common import dumps

STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _source_url(block: dict[str, Any], path: str) -> str:
    source = fields.opt_obj(block, "source", path) or {}
    where = fields.join(path, "source")
    if source.get("type") == "base64":
        media = fields.opt_str(source, "media_type", where) or "application/octet-stream"
        return f"data:{media};base64,{fields.opt_str(source, 'data', where)}"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return source["url"]
    raise InvalidRequest(f"{block.get('type')} source type {source.get('type')!r} is not supported", param=where)


def _part(block: dict[str, Any], path: str) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "text":
        part: dict[str, Any] = {"type": "text", "text": fields.opt_str(block, "text", path)}
    elif kind == "image":
        part = {"type": "image_url", "image_url": {"url": _source_url(block, path)}}
    elif kind == "document":
        part = {"type": "file", "file": {"file_data": _source_url(block, path)}}
    else:
        raise InvalidRequest(f"content block type {kind!r} is not supported here", param=path)
    if "cache_control" in block:
        part["cache_control"] = block["cache_control"]
    return part


def _blocks(content: Any, path: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return fields.objects(content, path)
    raise InvalidRequest(f"'{path}' must be a string or a list of content blocks", param=path)


def _user_messages(content: Any, path: str) -> list[dict[str, Any]]:
    """One Anthropic user turn -> tool messages (one per tool_result, first) then a user message."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(_blocks(content, path)):
        where = fields.join(path, i)
        if block.get("type") == "tool_result":
            inner = block.get("content")
            inner_path = f"{where}.content"
            result = (
                inner
                if isinstance(inner, str)
                else [_part(b, fields.join(inner_path, j)) for j, b in enumerate(_blocks(inner or [], inner_path))]
            )
            call_id = fields.opt_str(block, "tool_use_id", where)
            tool: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": result}
            if block.get("is_error"):
                tool["is_error"] = True
            out.append(tool)
        else:
            parts.append(_part(block, where))
    if parts:
        simple = len(parts) == 1 and parts[0]["type"] == "text" and "cache_control" not in parts[0]
        out.append({"role": "user", "content": parts[0]["text"] if simple else parts})
    return out


def _assistant_message(content: Any, path: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(_blocks(content, path)):
        where = fields.join(path, i)
        kind = block.get("type")
        if kind == "text":
            texts.append(fields.opt_str(block, "text", where))
        elif kind == "tool_use":
            arguments = dumps(fields.opt_obj(block, "input", where) or {})
            calls.append(
                {
                    "id": fields.opt_str(block, "id", where),
                    "type": "function",
                    "function": {"name": fields.opt_str(block, "name", where), "arguments": arguments},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # reasoning from an earlier turn; providers re-derive it
        else:
            raise InvalidRequest(f"assistant content block type {kind!r} is not supported here", param=where)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_choice(choice: Any, out: dict[str, Any]) -> None:
    if choice is None:
        return
    choice = fields.as_obj(choice, "tool_choice")
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": fields.opt_str(choice, "name", "tool_choice")}}
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False


# Sampling fields copied as they are, each with the check of its type.
_SAMPLING = (
    ("temperature", fields.as_number),
    ("top_p", fields.as_number),
    ("top_k", fields.as_int),
    ("thinking", fields.as_obj),
)


def to_internal(body: dict[str, Any], counting: bool = False) -> dict[str, Any]:
    """An Anthropic Messages request -> the internal OpenAI chat body (model and fallbacks kept)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("'messages' is required and must be a list", param="messages")
    if not counting:
        if body.get("max_tokens") is None:
            raise InvalidRequest("'max_tokens' is required and must be an integer", param="max_tokens")
        fields.as_int(body["max_tokens"], "max_tokens", minimum=1)
    if not counting:
        fields.opt_bool(body, "stream")
    out: dict[str, Any] = {"model": body.get("model")}
    converted: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        if isinstance(system, str):
            converted.append({"role": "system", "content": system})
        else:
            blocks = _blocks(system, "system")
            converted.append({"role": "system", "content": [_part(b, f"system[{i}]") for i, b in enumerate(blocks)]})
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = message.get("role")
        if role == "user":
            converted.extend(_user_messages(message.get("content"), f"messages[{i}].content"))
        elif role == "assistant":
            converted.append(_assistant_message(message.get("content"), f"messages[{i}].content"))
        else:
            raise InvalidRequest(f"messages[{i}].role must be user or assistant", param=f"messages[{i}].role")
    out["messages"] = converted
    tools = []
    for i, tool in enumerate(fields.opt_list(body, "tools")):
        if not isinstance(tool, dict) or "input_schema" not in tool:
            raise InvalidRequest(
                f"tools[{i}]: only custom tools (name, input_schema) can be translated", param=f"tools[{i}]"
            )
        where = f"tools[{i}]"
        entry: dict[str, Any] = {
            "type": "function",
            "function": {
                "name": fields.req_str(tool, "name", where),
                "description": fields.opt_str(tool, "description", where),
                "parameters": fields.as_obj(tool.get("input_schema"), f"{where}.input_schema"),
            },
        }
        if "cache_control" in tool:
            entry["cache_control"] = tool["cache_control"]
        tools.append(entry)
    if tools:
        out["tools"] = tools
    _tool_choice(body.get("tool_choice"), out)
    if not counting:
        out["max_tokens"] = body["max_tokens"]
    stops = fields.opt_list(body, "stop_sequences")
    if stops:
        out["stop"] = fields.strings(stops, "stop_sequences")
    for name, check in _SAMPLING:
        if body.get(name) is not None:
            out[name] = check(body[name], name)
    # A count is one JSON answer: a `stream` flag there is ignored, as Anthropic does.
    for name in ("fallbacks", "anthropic_beta") if counting else ("stream", "fallbacks", "anthropic_beta"):
        if body.get(name) is not None:
            out[name] = body[name]
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    return out


def _input(arguments: Any) -> Any:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = ujson.loads(arguments or "{}")
    except ValueError:
        return {"_unparsed_arguments": arguments}
    return value if isinstance(value, dict) else {"_value": value}


def usage_dict(usage: Usage | None) -> dict[str, Any]:
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    return {
        "input_tokens": max(0, usage.prompt_tokens - usage.cached_tokens),
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": 0,
    }


def message_id(rid: str) -> str:
    return rid if rid.startswith("msg_") else f"msg_{rid}"


def from_internal(data: dict[str, Any], usage: Usage | None, model: str) -> dict[str, Any]:
    """An OpenAI chat.completion -> an Anthropic message (`model` is what the client asked for)."""
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": message["reasoning_content"], "signature": ""})
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": fn.get("name") or "",
                "input": _input(fn.get("arguments")),
            }
        )
    stop_sequence = choice.get("stop_sequence")  # kept by the Anthropic adapter
    reason = "stop_sequence" if stop_sequence else STOP_REASON.get(choice.get("finish_reason") or "stop", "end_turn")
    return {
        "id": message_id(str(data.get("id") or "")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": stop_sequence or None,
        "usage": usage_dict(usage),
    }


# Status -> Anthropic error type, for errors we answer with.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def error_status_and_body(err: GatewayError, extra: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    status = err.status
    etype = _ERROR_TYPES.get(status) if status != 400 else "invalid_request_error"
    if err.type == "overloaded_error" or err.code == "overloaded":
        status, etype = 529, "overloaded_error"
    if etype is None:
        etype = "api_error" if status >= 500 else "invalid_request_error"
    message = err.message if err.code in (None, err.type) else f"{err.message} ({err.code})"
    return status, {"type": "error", "error": {"type": etype, "message": message}, **extra}
