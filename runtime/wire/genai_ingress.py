"""The Gemini API format as an ingress (for the `google-genai` SDK): GenerateContentRequest -> internal
(OpenAI) body, and internal answers -> GenerateContentResponse, streamed chunks and Google's error
envelope. Pure functions, no I/O.

Gemini calls carry no ids (or optional ones); a model turn's calls get ids derived from their position,
and the next turn's `functionResponse` parts are matched to them by name, in order. A part's
`thoughtSignature` travels inside the call id (gemini_request.THOUGHT_MARK) so a Gemini upstream gets
it back.
"""

from __future__ import annotations

import re
from typing import Any

import ujson

from runtime.codecs import fields
from runtime.errors import GatewayError, InvalidRequest
from runtime.providers.base import Usage
from runtime.providers.common import dumps
from runtime.providers.gemini_request import THOUGHT_MARK, split_call_id

FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


def field(obj: Any, name: str, default: Any = None) -> Any:
    """`obj[name]` by its lowerCamelCase name or its snake_case one: the API (proto JSON) accepts both, and
    the SDK mixes them (`inlineData: {mime_type, data}`)."""
    if not isinstance(obj, dict):
        return default
    value = obj.get(name)
    if value is None:
        value = obj.get(_SNAKE.sub("_", name).lower())
    return default if value is None else value


def has(obj: dict[str, Any], name: str) -> bool:
    return field(obj, name) is not None


def json_schema(schema: Any) -> Any:
    """Gemini Schema (OpenAPI subset, upper-case types) -> JSON Schema."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for raw_key, value in schema.items():
        key = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), raw_key)
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: json_schema(sub) for name, sub in value.items()}
        elif key in ("items",):
            out[key] = json_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [json_schema(sub) for sub in value]
        elif key == "nullable":
            continue
        else:
            out[key] = value
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _media_part(mime: str, url: str) -> dict[str, Any]:
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": url}}
    return {"type": "file", "file": {"file_data": url}}


def _obj_field(obj: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    """`field(obj, name)` as an object (a missing field reads as {})."""
    value = field(obj, name)
    return {} if value is None else fields.as_obj(value, fields.join(path, name))


def _str_field(obj: dict[str, Any], name: str, path: str, default: str = "") -> str:
    value = field(obj, name)
    return default if value is None else fields.as_str(value, fields.join(path, name))


def _user_turn(parts: list[dict[str, Any]], pending: dict[str, list[str]], path: str) -> list[dict[str, Any]]:
    """A user turn -> tool messages (for functionResponse parts, first) then one user message."""
    tools: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    for i, part in enumerate(parts):
        where = fields.join(path, i)
        if "text" in part:
            content.append({"type": "text", "text": fields.opt_str(part, "text", where)})
        elif has(part, "inlineData"):
            data = _obj_field(part, "inlineData", where)
            mime = _str_field(data, "mimeType", f"{where}.inlineData", "application/octet-stream")
            payload = fields.opt_str(data, "data", f"{where}.inlineData")
            content.append(_media_part(mime, f"data:{mime};base64,{payload}"))
        elif has(part, "fileData"):
            data = _obj_field(part, "fileData", where)
            mime = _str_field(data, "mimeType", f"{where}.fileData", "image/jpeg")
            content.append(_media_part(mime, _str_field(data, "fileUri", f"{where}.fileData")))
        elif has(part, "functionResponse"):
            fr = _obj_field(part, "functionResponse", where)
            name = fields.opt_str(fr, "name", f"{where}.functionResponse")
            ids = pending.get(name) or []
            call_id = fields.opt_str(fr, "id", f"{where}.functionResponse") or (ids.pop(0) if ids else f"call_{name}")
            tools.append({"role": "tool", "tool_call_id": call_id, "content": dumps(fr.get("response") or {})})
        else:
            raise InvalidRequest(f"part {sorted(part)} is not supported here", param=where)
    out = tools
    if content:
        simple = len(content) == 1 and content[0]["type"] == "text"
        out.append({"role": "user", "content": content[0]["text"] if simple else content})
    return out


def _model_turn(parts: list[dict[str, Any]], turn: int, pending: dict[str, list[str]], path: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for n, part in enumerate(parts):
        where = fields.join(path, n)
        if part.get("thought"):
            continue
        if has(part, "functionCall"):
            fc = _obj_field(part, "functionCall", where)
            name = fields.opt_str(fc, "name", f"{where}.functionCall")
            call_id = fields.opt_str(fc, "id", f"{where}.functionCall") or f"call_{turn}_{n}"
            if has(part, "thoughtSignature"):
                call_id = f"{call_id}{THOUGHT_MARK}{_str_field(part, 'thoughtSignature', where)}"
            pending.setdefault(name, []).append(call_id)
            args = fields.opt_obj(fc, "args", f"{where}.functionCall") or {}
            calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": dumps(args)}})
        elif "text" in part:
            texts.append(fields.opt_str(part, "text", where))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = []
    for i, tool in enumerate(fields.opt_objects(body, "tools")):
        where = fields.join("tools", i)
        decls = field(tool, "functionDeclarations")
        for j, decl in enumerate(fields.objects(decls, f"{where}.functionDeclarations") if decls is not None else ()):
            at = f"{where}.functionDeclarations[{j}]"
            params = (
                field(decl, "parametersJsonSchema")
                or json_schema(fields.opt_obj(decl, "parameters", at))
                or {"type": "object", "properties": {}}
            )
            tools.append(
                {
                    "type": "function",
                    "function": {
                        "name": fields.req_str(decl, "name", at),
                        "description": fields.opt_str(decl, "description", at),
                        "parameters": fields.as_obj(params, f"{at}.parameters"),
                    },
                }
            )
    if tools:
        out["tools"] = tools
    config = _obj_field(_obj_field(body, "toolConfig", ""), "functionCallingConfig", "toolConfig")
    where = "toolConfig.functionCallingConfig"
    mode = fields.opt_str(config, "mode", where)
    allowed = field(config, "allowedFunctionNames")
    allowed = [] if allowed is None else fields.strings(allowed, f"{where}.allowedFunctionNames")
    if mode == "NONE":
        out["tool_choice"] = "none"
    elif mode == "AUTO":
        out["tool_choice"] = "auto"
    elif mode == "ANY":
        out["tool_choice"] = {"type": "function", "function": {"name": allowed[0]}} if len(allowed) == 1 else "required"


# generationConfig fields -> internal names, with the accessor that checks each one's type.
_GENERATION = (
    ("maxOutputTokens", "max_tokens", lambda v, p: fields.as_int(v, p, minimum=1)),
    ("temperature", "temperature", fields.as_number),
    ("topP", "top_p", fields.as_number),
    ("topK", "top_k", fields.as_int),
    ("candidateCount", "n", lambda v, p: fields.as_int(v, p, minimum=1, maximum=fields.MAX_CHOICES)),
    ("stopSequences", "stop", fields.strings),
    ("seed", "seed", fields.as_int),
    ("presencePenalty", "presence_penalty", fields.as_number),
    ("frequencyPenalty", "frequency_penalty", fields.as_number),
    ("thinkingConfig", "thinking_config", fields.as_obj),
)


def _generation(config: dict[str, Any], out: dict[str, Any]) -> None:
    for theirs, ours, check in _GENERATION:
        value = field(config, theirs)
        if value is not None:
            out[ours] = check(value, f"generationConfig.{theirs}")
    if field(config, "responseMimeType") == "application/json":
        schema = field(config, "responseJsonSchema") or json_schema(field(config, "responseSchema"))
        if schema is not None:
            fields.as_obj(schema, "generationConfig.responseSchema")
        out["response_format"] = (
            {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
            if schema
            else {"type": "json_object"}
        )


def _parts(content: Any, path: str) -> list[dict[str, Any]]:
    parts = field(content, "parts")
    if not isinstance(parts, list):
        raise InvalidRequest(f"{path}.parts must be a list", param=path)
    return fields.objects(parts, f"{path}.parts")


def to_internal(body: dict[str, Any]) -> dict[str, Any]:
    """A GenerateContentRequest (model and stream flag already put in by the route) -> internal body."""
    contents = body.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    if not isinstance(contents, list) or not contents:
        raise InvalidRequest("'contents' must be a non-empty list", param="contents")
    messages: list[dict[str, Any]] = []
    system = field(body, "systemInstruction")
    if system is not None:
        found = field(fields.as_obj(system, "systemInstruction"), "parts")
        parts = [] if found is None else fields.objects(found, "systemInstruction.parts")
        text = "".join(fields.opt_str(p, "text", f"systemInstruction.parts[{i}]") for i, p in enumerate(parts))
        if text:
            messages.append({"role": "system", "content": text})
    pending: dict[str, list[str]] = {}
    for turn, content in enumerate(contents):
        path = f"contents[{turn}]"
        parts = _parts(fields.as_obj(content, path), path)
        if content.get("role") == "model":
            messages.append(_model_turn(parts, turn, pending, f"{path}.parts"))
        else:
            messages.extend(_user_turn(parts, pending, f"{path}.parts"))
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    _tools(body, out)
    _generation(_obj_field(body, "generationConfig", ""), out)
    safety = field(body, "safetySettings")
    if safety is not None:
        out["safety_settings"] = fields.objects(safety, "safetySettings")
    for name in ("stream", "fallbacks"):
        if body.get(name) is not None:
            out[name] = body[name]
    return out


def embed_to_internal(body: dict[str, Any], model: str, batch: bool) -> dict[str, Any]:
    """embedContent / batchEmbedContents -> an internal embeddings body."""
    requests = body.get("requests") if batch else [body]
    if not isinstance(requests, list) or not requests:
        raise InvalidRequest("'requests' must be a non-empty list", param="requests")
    texts = []
    for i, request in enumerate(fields.objects(requests, "requests")):
        path = f"requests[{i}]" if batch else ""
        content = _obj_field(request, "content", path)
        parts = field(content, "parts")
        parts = [] if parts is None else fields.objects(parts, fields.join(path, "content.parts"))
        texts.append(
            " ".join(fields.opt_str(p, "text", fields.join(path, f"content.parts[{j}]")) for j, p in enumerate(parts))
        )
    out: dict[str, Any] = {"model": model, "input": texts}
    first = requests[0]
    if field(first, "outputDimensionality") is not None:
        dimensions = field(first, "outputDimensionality")
        out["dimensions"] = fields.as_int(dimensions, "outputDimensionality", minimum=1, maximum=fields.MAX_DIMENSIONS)
    if field(first, "taskType") is not None:
        out["task_type"] = _str_field(first, "taskType", "")
    return out


def embed_from_internal(data: dict[str, Any], batch: bool) -> dict[str, Any]:
    vectors = [{"values": item.get("embedding") or []} for item in data.get("data") or ()]
    return {"embeddings": vectors} if batch else {"embedding": vectors[0] if vectors else {"values": []}}


def usage_metadata(usage: Usage | None) -> dict[str, Any]:
    if usage is None:
        return {}
    meta = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": usage.completion_tokens,
        "totalTokenCount": usage.total_tokens,
    }
    if usage.cached_tokens:
        meta["cachedContentTokenCount"] = usage.cached_tokens
    return meta


def function_call_part(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    base, signature = split_call_id(call_id)
    try:
        args = ujson.loads(arguments) if isinstance(arguments, str) and arguments else (arguments or {})
    except ValueError:
        args = {"_unparsed_arguments": arguments}
    part: dict[str, Any] = {"functionCall": {"id": base, "name": name, "args": args}}
    if signature:
        part["thoughtSignature"] = signature
    return part


def from_internal(data: dict[str, Any], usage: Usage | None, model: str) -> dict[str, Any]:
    candidates = []
    for choice in data.get("choices") or ():
        message = choice.get("message") or {}
        parts: list[dict[str, Any]] = []
        if message.get("reasoning_content"):
            parts.append({"text": message["reasoning_content"], "thought": True})
        if message.get("content"):
            parts.append({"text": message["content"]})
        for call in message.get("tool_calls") or ():
            fn = call.get("function") or {}
            parts.append(function_call_part(call.get("id") or "", fn.get("name") or "", fn.get("arguments")))
        candidates.append(
            {
                "content": {"role": "model", "parts": parts},
                "index": choice.get("index", 0),
                "finishReason": FINISH.get(choice.get("finish_reason") or "stop", "STOP"),
            }
        )
    out: dict[str, Any] = {"candidates": candidates, "modelVersion": model, "responseId": str(data.get("id") or "")}
    meta = usage_metadata(usage)
    if meta:
        out["usageMetadata"] = meta
    return out


_RPC = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(err: GatewayError) -> dict[str, Any]:
    status = err.status
    rpc = _RPC.get(status) or ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    message = err.message if err.code in (None, err.type) else f"{err.message} ({err.code})"
    return {"error": {"code": status, "message": message, "status": rpc}}
