"""OpenAI's Responses API as an ingress: a Responses request -> internal (chat) body, and the internal answer
-> a Response object. Pure functions; the stream side is in responses_stream.py.

The gateway is stateless, so `previous_response_id` and item references are refused with a clear 400:
send the whole conversation as `input` items. Hosted tools (web search, file search, ...) exist only at
OpenAI and are refused too; function tools work with every provider.
"""

from __future__ import annotations

from typing import Any

from runtime.codecs import fields
from runtime.errors import InvalidRequest
from runtime.providers.base import Usage

_ROLES = {"user", "system", "developer", "assistant"}


def _part(part: Any, role: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise InvalidRequest("input content parts must be objects", param="input")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "refusal"):
        return {
            "type": "text",
            "text": fields.opt_str(part, "text", "input") or fields.opt_str(part, "refusal", "input"),
        }
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise InvalidRequest("input_image needs image_url (file_id is not supported by the gateway)", param="input")
        image: dict[str, Any] = {"url": url}
        if part.get("detail"):
            image["detail"] = fields.opt_str(part, "detail", "input")
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str):
            raise InvalidRequest("input_file needs file_data (file_id is not supported by the gateway)", param="input")
        file: dict[str, Any] = {"file_data": data}
        if part.get("filename"):
            file["filename"] = fields.opt_str(part, "filename", "input")
        return {"type": "file", "file": file}
    raise InvalidRequest(f"input content type {kind!r} is not supported", param="input")


def _message(item: dict[str, Any]) -> dict[str, Any]:
    role = item.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise InvalidRequest(f"input message role {role!r} is not supported", param="input")
    content = item.get("content")
    if isinstance(content, list):
        parts = [_part(p, role) for p in content]
        if role == "assistant" or all(p["type"] == "text" for p in parts):
            content = "".join(p.get("text", "") for p in parts)
        else:
            content = parts
    elif not isinstance(content, str):
        raise InvalidRequest("input message content must be a string or a list", param="input")
    return {"role": role, "content": content}


def _output_text(output: Any) -> Any:
    if isinstance(output, list):
        return [_part(p, "tool") for p in output]
    return output if isinstance(output, str) else str(output)


def convert_input(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise InvalidRequest("'input' must be a string or a list of items", param="input")
    messages: list[dict[str, Any]] = []
    for item in value:
        if not isinstance(item, dict):
            raise InvalidRequest("input items must be objects", param="input")
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item))
        elif kind == "function_call":
            call = {
                "id": fields.opt_str(item, "call_id", "input") or fields.opt_str(item, "id", "input"),
                "type": "function",
                "function": {
                    "name": fields.opt_str(item, "name", "input"),
                    "arguments": fields.opt_str(item, "arguments", "input") or "{}",
                },
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":  # calls of one turn join its message
                last.setdefault("tool_calls", []).append(call)
                if last.get("content") == "":
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": fields.opt_str(item, "call_id", "input"),
                    "content": _output_text(item.get("output")),
                }
            )
        elif kind == "reasoning":
            continue  # reasoning items from an earlier turn; providers re-derive them
        else:
            raise InvalidRequest(
                f"input item type {kind!r} is not supported by the gateway (it stores no responses;"
                " send the conversation as messages and function_call items)",
                param="input",
            )
    return messages


def _tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate([] if tools is None else fields.as_list(tools, "tools")):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else tool
            raise InvalidRequest(
                f"tools[{i}]: tool type {kind!r} is hosted by OpenAI and not available through the"
                " gateway; use function tools",
                param=f"tools[{i}]",
            )
        where = f"tools[{i}]"
        fn = {
            "name": fields.req_str(tool, "name", where),
            "description": fields.opt_str(tool, "description", where),
            "parameters": fields.opt_obj(tool, "parameters", where) or {"type": "object", "properties": {}},
        }
        if tool.get("strict") is not None:
            fn["strict"] = tool["strict"]
        out.append({"type": "function", "function": fn})
    return out


def _format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        where = "text.format"
        spec = {
            "name": fields.opt_str(fmt, "name", where) or "response",
            "schema": fields.opt_obj(fmt, "schema", where) or {},
        }
        if fmt.get("strict") is not None:
            spec["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": spec}
    raise InvalidRequest(f"text.format type {fmt.get('type')!r} is not supported", param="text.format")


# Fields copied as they are, each with the check of its type.
_COPIED = (
    ("temperature", fields.as_number),
    ("top_p", fields.as_number),
    ("parallel_tool_calls", fields.as_bool),
    ("user", fields.as_str),
    ("stream", fields.as_bool),
)


def to_internal(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("previous_response_id") or body.get("conversation"):
        raise InvalidRequest(
            "previous_response_id and conversation are not supported: the gateway stores no "
            "responses; send the whole conversation as 'input'",
            param="previous_response_id",
        )
    messages = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    messages.extend(convert_input(body.get("input")))
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        out["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out["tool_choice"] = {"type": "function", "function": {"name": fields.req_str(choice, "name", "tool_choice")}}
    fmt = _format(body.get("text"))
    if fmt is not None:
        out["response_format"] = fmt
    if body.get("max_output_tokens") is not None:
        out["max_completion_tokens"] = fields.as_int(body["max_output_tokens"], "max_output_tokens", minimum=1)
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        out["reasoning_effort"] = fields.opt_str(reasoning, "effort", "reasoning")
    for name, check in _COPIED:
        if body.get(name) is not None:
            out[name] = check(body[name], name)
    if body.get("fallbacks") is not None:
        out["fallbacks"] = body["fallbacks"]
    if body.get("stream"):
        out["stream_options"] = {"include_usage": True}
    return out


def usage_object(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage()
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def response_shell(rid: str, model: str, created: int, internal: dict[str, Any], status: str) -> dict[str, Any]:
    """A Response object without output and usage, echoing the request's settings."""
    system = next((m["content"] for m in internal.get("messages") or () if m.get("role") == "system"), None)
    tools = [
        {
            "type": "function",
            "name": t["function"]["name"],
            "description": t["function"].get("description"),
            "parameters": t["function"].get("parameters"),
            "strict": t["function"].get("strict", False),
        }
        for t in internal.get("tools") or ()
    ]
    choice = internal.get("tool_choice", "auto")
    if isinstance(choice, dict):
        choice = {"type": "function", "name": (choice.get("function") or {}).get("name")}
    fmt = internal.get("response_format") or {"type": "text"}
    if fmt.get("type") == "json_schema":
        fmt = {"type": "json_schema", **fmt.get("json_schema", {})}
    return {
        "id": rid if rid.startswith("resp_") else f"resp_{rid}",
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": system if isinstance(system, str) else None,
        "max_output_tokens": internal.get("max_completion_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": internal.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": internal.get("reasoning_effort"), "summary": None},
        "store": False,
        "temperature": internal.get("temperature", 1.0),
        "text": {"format": fmt},
        "tool_choice": choice,
        "tools": tools,
        "top_p": internal.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None,
        "user": internal.get("user"),
        "metadata": {},
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else [],
    }


def call_item(call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": f"fc_{call_id}",
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def from_internal(
    data: dict[str, Any], usage: Usage | None, model: str, created: int, internal: dict[str, Any]
) -> dict[str, Any]:
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    reason = INCOMPLETE.get(choice.get("finish_reason") or "stop")
    response = response_shell(
        str(data.get("id") or ""), model, created, internal, "incomplete" if reason else "completed"
    )
    output = []
    text = message.get("content")
    if text:
        output.append(message_item(f"msg_{data.get('id') or ''}", text))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        output.append(call_item(call.get("id") or "", fn.get("name") or "", fn.get("arguments") or ""))
    response["output"] = output
    response["usage"] = usage_object(usage)
    if reason:
        response["incomplete_details"] = {"reason": reason}
    return response
