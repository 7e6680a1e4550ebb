"""Small pure helpers every native adapter shares: reading OpenAI request shapes, building OpenAI response
and chunk dicts, and decoding error bodies. Nothing here touches the network, the clock or globals.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

import ujson

from runtime.codecs import fields
from runtime.errors import InvalidRequest, UpstreamGarbage
from runtime.providers.base import Usage

# OpenAI finish reasons, the vocabulary every adapter maps its provider's reasons onto.
STOP, LENGTH, TOOL_CALLS, CONTENT_FILTER = "stop", "length", "tool_calls", "content_filter"


def loads_object(raw: bytes | str, what: str) -> dict[str, Any]:
    """Parse an upstream JSON object or raise UpstreamGarbage (502, retryable) naming what it was."""
    try:
        data = ujson.loads(raw)
    except ValueError:
        shown = raw[:120] if isinstance(raw, (bytes, str)) else b""
        raise UpstreamGarbage(f"{what} is not JSON: {shown!r}") from None
    if not isinstance(data, dict):
        raise UpstreamGarbage(f"{what} is not a JSON object: {str(data)[:120]!r}")
    return data


def dumps(obj: Any) -> str:
    return ujson.dumps(obj, ensure_ascii=False, escape_forward_slashes=False)


# -- client input in upstream URLs ------------------------------------------------------------------------


@functools.lru_cache(maxsize=2048)
def path_segment(value: str, safe: str = "@") -> str:
    """A client-supplied string (a model, a deployment) as ONE upstream URL path segment.

    Percent-encodes everything but unreserved characters (and `safe`: "@" by default, a legal path
    character that Vertex's Claude ids use), so `/`, `?`, `#`, `:`, `%`, spaces, CR/LF and non-ASCII
    can never change the upstream path, query or method; "", "." and ".." (dot segments a server or
    proxy would collapse) and text that is not valid Unicode are refused with a 400. The one place
    every adapter encodes client input for a URL; cached because the same few models repeat.
    """
    if value in ("", ".", ".."):
        raise InvalidRequest(f"model name {value!r} is not valid", param="model")
    try:
        return quote(value, safe=safe)
    except UnicodeEncodeError:  # a lone surrogate: no URL can carry it
        raise InvalidRequest("model name is not valid Unicode", param="model") from None


# -- reading the OpenAI request ---------------------------------------------------------------------------


def content_parts(content: Any, path: str = "messages") -> list[dict[str, Any]]:
    """An OpenAI `content` as a list of parts (a string becomes one text part). Every part is an object and
    a text part's `text` a string; anything else is InvalidRequest naming the field (`path`)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        parts = fields.objects(content, path)
        for i, part in enumerate(parts):
            if part.get("type") == "text":
                fields.opt_str(part, "text", fields.join(path, i))
        return parts
    raise fields.invalid(path, "a string or an array of content parts", content)


def text_of(content: Any, path: str = "messages") -> str:
    """An OpenAI `content` (string, or list of parts) -> its text, parts joined without separators."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content_parts(content, path) if p.get("type") == "text")


def chat_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's `messages`: a list of objects (InvalidRequest naming the first one that is not)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("'messages' must be a list", param="messages")
    return fields.objects(messages, "messages")


def message_tool_calls(message: dict[str, Any], path: str) -> list[tuple[str, str, Any]]:
    """An assistant message's `tool_calls` as (id, function name, arguments), types checked."""
    calls = []
    for i, call in enumerate(fields.opt_objects(message, "tool_calls", path)):
        where = fields.join(fields.join(path, "tool_calls"), i)
        fn = fields.opt_obj(call, "function", where) or {}
        name = fields.opt_str(fn, "name", fields.join(where, "function"))
        calls.append((fields.opt_str(call, "id", where), name, fn.get("arguments")))
    return calls


def file_data_of(part: dict[str, Any], path: str) -> str | None:
    """A `file` part's `file.file_data` (None when absent)."""
    file = fields.opt_obj(part, "file", path) or {}
    return fields.maybe_str(file, "file_data", fields.join(path, "file"))


def parse_data_url(url: str) -> tuple[str, str] | None:
    """`data:<mime>;base64,<data>` -> (mime, data); None for anything else (a remote URL)."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise InvalidRequest("only base64 data URLs are supported for inline images and files", param="messages")
    return header[: -len(";base64")] or "application/octet-stream", data


def image_url_of(part: Mapping[str, Any]) -> str:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise InvalidRequest("an image_url part needs image_url.url", param="messages")
    return url


def json_arguments(arguments: Any) -> dict[str, Any]:
    """A tool call's `arguments` (a JSON string in OpenAI's format) -> the object providers want."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or arguments == "":
        return {}
    if not isinstance(arguments, str):
        raise fields.invalid("messages.tool_calls.function.arguments", "a JSON string", arguments)
    try:
        value = ujson.loads(arguments)
    except ValueError:
        raise InvalidRequest(
            f"tool call arguments are not valid JSON: {str(arguments)[:80]!r}", param="messages"
        ) from None
    if not isinstance(value, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param="messages")
    return value


def stop_list(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise InvalidRequest("'stop' must be a string or a list of strings", param="stop")


def max_tokens_of(body: Mapping[str, Any]) -> int | None:
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest("'max_tokens' must be a positive integer", param="max_tokens")
    return value


def function_tools(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's function tools as [{name, description, parameters}] (other tool types are refused)."""
    tools = body.get("tools")
    if not tools:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be a list", param="tools")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type", "function") != "function"
            or not isinstance(fn, dict)
            or not isinstance(fn.get("name"), str)
        ):
            raise InvalidRequest(
                f"tools[{i}] must be {{type: function, function: {{name, parameters}}}}", param=f"tools[{i}]"
            )
        where = f"tools[{i}].function"
        entry = {
            "name": fn["name"],
            "description": fields.opt_str(fn, "description", where),
            "parameters": fields.opt_obj(fn, "parameters", where) or {"type": "object", "properties": {}},
        }
        if "cache_control" in tool:
            entry["cache_control"] = tool["cache_control"]
        out.append(entry)
    return out


def tool_choice_of(body: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """OpenAI `tool_choice` -> ("auto" | "none" | "required" | "function", function name) or None."""
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise InvalidRequest(f"unknown tool_choice {choice!r}", param="tool_choice")
        return choice, None
    if isinstance(choice, dict):
        fn = choice.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return "function", fn["name"]
    raise InvalidRequest(
        "'tool_choice' must be auto, none, required or {type: function, function: {name}}", param="tool_choice"
    )


def response_format_of(body: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None, str]:
    """`response_format` -> (kind: text | json_object | json_schema, schema or None, schema name)."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return "text", None, ""
    kind = fmt.get("type", "text")
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return (
            "json_schema",
            schema if isinstance(schema, dict) else {"type": "object"},
            str(spec.get("name") or "response") if isinstance(spec, dict) else "response",
        )
    if kind == "json_object":
        return "json_object", None, ""
    return "text", None, ""


def input_texts(body: Mapping[str, Any]) -> list[str]:
    """An embeddings request's `input` as a list of strings (token-id inputs are refused)."""
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise InvalidRequest("'input' must be a string or a non-empty list of strings for this provider", param="input")


def append_turn(
    turns: list[dict[str, Any]],
    role: str,
    blocks: list[dict[str, Any]],
    is_result: Callable[[dict[str, Any]], bool] | None = None,
) -> None:
    """Add content blocks as a turn, merging into the previous turn of the same role (Anthropic and Bedrock
    want roles to alternate). With `is_result`, the blocks are tool results and go before the turn's other
    blocks: results must open the user turn that answers the calls."""
    if not turns or turns[-1]["role"] != role:
        turns.append({"role": role, "content": blocks})
        return
    previous = turns[-1]["content"]
    if is_result is None:
        previous.extend(blocks)
        return
    first_other = next((i for i, block in enumerate(previous) if not is_result(block)), len(previous))
    previous[first_other:first_other] = blocks


# -- building OpenAI answers -------------------------------------------------------------------------------


def stable_id(prefix: str, *parts: Any) -> str:
    """A deterministic id for things a provider leaves unnamed (Gemini tool calls): same input, same id."""
    digest = hashlib.sha1(dumps(parts).encode()).hexdigest()[:24]
    return f"{prefix}{digest}"


def tool_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else dumps(arguments if arguments is not None else {})
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def chat_completion(
    rid: str,
    model: str,
    created: int,
    text: str | None,
    tool_calls: list[dict[str, Any]],
    finish: str,
    usage: Usage | None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    if message["content"] is None and not tool_calls:
        message["content"] = ""
    data: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        data["usage"] = usage.to_openai()
    return data


class ChunkMaker:
    """Builds `chat.completion.chunk` dicts for one stream (id, model and created fixed at the start)."""

    __slots__ = ("created", "id", "model")

    def __init__(self, rid: str, model: str, created: int) -> None:
        self.id = rid
        self.model = model
        self.created = created

    def delta(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def role(self) -> dict[str, Any]:
        return self.delta({"role": "assistant", "content": ""})

    def text(self, text: str) -> dict[str, Any]:
        return self.delta({"content": text})

    def tool_start(self, index: int, call_id: str, name: str, arguments: str = "") -> dict[str, Any]:
        return self.delta(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                ]
            }
        )

    def tool_args(self, index: int, fragment: str) -> dict[str, Any]:
        return self.delta({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})

    def finish(self, reason: str) -> dict[str, Any]:
        return self.delta({}, reason)

    def usage(self, usage: Usage) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage.to_openai(),
        }


def embeddings_list(model: str, vectors: Iterable[list[float]], prompt_tokens: int) -> dict[str, Any]:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def error_body(raw: bytes) -> Any:
    try:
        return ujson.loads(raw) if raw else None
    except ValueError:
        return None


def raw_text(raw: bytes, limit: int = 300) -> str:
    return raw[:limit].decode("utf-8", "replace").strip()


_OVERFLOW_HINTS = (
    "prompt is too long",
    "too many tokens",
    "context length",
    "context window",
    "input is too long",
    "exceeds the maximum number of tokens",
    "maximum context",
    "input token count",
)


def is_context_overflow(message: str) -> bool:
    """Whether a provider's 400 message says the prompt does not fit the model (OpenAI's
    `context_length_exceeded`), so clients can tell it from other bad requests."""
    lowered = message.lower()
    return any(hint in lowered for hint in _OVERFLOW_HINTS)


def status_type(status: int) -> str:
    """The OpenAI error `type` for an HTTP status a provider answered with."""
    if status == 429:
        return "rate_limit_error"
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status >= 500:
        return "api_error"
    return "invalid_request_error"
