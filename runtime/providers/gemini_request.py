"""OpenAI chat / embeddings request -> Gemini `generateContent` / `batchEmbedContents` / `countTokens` bodies.
Pure functions, shared by the Gemini (Generative Language API) and Vertex AI adapters.

- system/developer messages -> `systemInstruction`; assistant -> role "model"; tool results -> a user
  turn of `functionResponse` parts (the results of one parallel call share one turn, as Gemini wants).
- images: data URLs -> `inlineData`, other URLs -> `fileData` with a MIME type guessed from the path.
- tools -> one `functionDeclarations` tool; JSON Schema is narrowed to the OpenAPI subset Gemini accepts.
- Gemini has no tool-call ids; ours are derived (see gemini_response), and a tool call id may carry the
  part's `thoughtSignature` after THOUGHT_MARK so multi-turn tool use keeps it.
"""

from __future__ import annotations

import mimetypes
from typing import Any

import ujson

from runtime.codecs import fields
from runtime.errors import InvalidRequest
from runtime.providers.common import (
    chat_messages,
    content_parts,
    file_data_of,
    function_tools,
    image_url_of,
    input_texts,
    json_arguments,
    max_tokens_of,
    message_tool_calls,
    parse_data_url,
    response_format_of,
    stop_list,
    text_of,
    tool_choice_of,
)

THOUGHT_MARK = "~ts~"
# The OpenAPI 3 subset Gemini's Schema object documents; everything else is dropped.
_SCHEMA_KEYS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
}


def clean_schema(schema: Any) -> Any:
    """JSON Schema -> Gemini Schema: upper-case types, `["x", "null"]` -> nullable, unknown keys dropped."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in _SCHEMA_KEYS:
            continue
        if key == "type":
            types = value if isinstance(value, list) else [value]
            real = [t for t in types if t != "null"]
            if len(real) < len(types):
                out["nullable"] = True
            if real:
                out["type"] = str(real[0]).upper()
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: clean_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = clean_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [clean_schema(sub) for sub in value]
        else:
            out[key] = value
    return out


def _file_part(url: str) -> dict[str, Any]:
    inline = parse_data_url(url)
    if inline is not None:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _user_parts(content: Any, path: str = "messages") -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content_parts(content, path)):
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            parts.append(_file_part(image_url_of(part)))
        elif kind == "file":
            data = file_data_of(part, f"{path}[{i}]")
            if data is None:
                raise InvalidRequest("file parts need file.file_data as a data URL", param="messages")
            parts.append(_file_part(data))
        else:
            raise InvalidRequest(f"content part type {kind!r} is not supported by Gemini models", param="messages")
    return parts


def split_call_id(call_id: str) -> tuple[str, str | None]:
    base, mark, signature = call_id.partition(THOUGHT_MARK)
    return base, signature if mark else None


def _function_response(message: dict[str, Any], names: dict[str, str], path: str) -> dict[str, Any]:
    call_id = fields.opt_str(message, "tool_call_id", path)
    name = fields.opt_str(message, "name", path) or names.get(call_id)
    if not name:
        raise InvalidRequest(f"tool message {call_id!r} answers no earlier tool call", param=path)
    text = text_of(message.get("content"), f"{path}.content")
    try:
        value = ujson.loads(text)
    except ValueError:
        value = None
    response = value if isinstance(value, dict) else {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


def convert_messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI messages -> (systemInstruction parts, contents)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for functionResponse
    for i, message in enumerate(fields.objects(messages, "messages")):
        path = f"messages[{i}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_user_parts(message.get("content"), f"{path}.content"))
            continue
        if role == "user":
            turn, parts = "user", _user_parts(message.get("content"), f"{path}.content")
        elif role == "assistant":
            turn = "model"
            parts = [{"text": t} for t in [text_of(message.get("content"), f"{path}.content")] if t]
            for call_id, name, arguments in message_tool_calls(message, path):
                names[call_id] = name
                part: dict[str, Any] = {"functionCall": {"name": name, "args": json_arguments(arguments)}}
                _base, signature = split_call_id(call_id)
                if signature:
                    part["thoughtSignature"] = signature
                parts.append(part)
        elif role == "tool":
            turn, parts = "user", [_function_response(message, names, path)]
        else:
            raise InvalidRequest(f"message role {role!r} is not supported by Gemini models", param="messages")
        if not parts:
            continue
        if contents and contents[-1]["role"] == turn:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": turn, "parts": parts})
    return system, contents


def _tools(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tools = function_tools(body)
    if tools:
        out["tools"] = [
            {
                "functionDeclarations": [
                    {"name": t["name"], "description": t["description"], "parameters": clean_schema(t["parameters"])}
                    for t in tools
                ]
            }
        ]
    choice = tool_choice_of(body)
    if choice is not None and (tools or choice[0] == "none"):
        mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "function": "ANY"}[choice[0]]
        config: dict[str, Any] = {"mode": mode}
        if choice[1]:
            config["allowedFunctionNames"] = [choice[1]]
        out["toolConfig"] = {"functionCallingConfig": config}
    return out


def generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = max_tokens_of(body)
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    stops = stop_list(body.get("stop"))
    if stops:
        config["stopSequences"] = stops
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    kind, schema, _name = response_format_of(body)
    if kind != "text":
        config["responseMimeType"] = "application/json"
        if schema is not None:
            config["responseSchema"] = clean_schema(schema)
    if isinstance(body.get("thinking_config"), dict):
        config["thinkingConfig"] = body["thinking_config"]
    return config


def build_generate_body(body: dict[str, Any]) -> dict[str, Any]:
    messages = chat_messages(body)
    fields.check_sampling(body)
    system, contents = convert_messages(messages)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    out.update(_tools(body))
    config = generation_config(body)
    if config:
        out["generationConfig"] = config
    if isinstance(body.get("safety_settings"), list):
        out["safetySettings"] = body["safety_settings"]
    return out


def build_count_body(body: dict[str, Any], model_path: str | None) -> dict[str, Any]:
    """countTokens: plain `contents`, or a whole generateContentRequest when system or tools are present."""
    full = build_generate_body(body)
    full.pop("generationConfig", None)
    if set(full) == {"contents"} or model_path is None:
        return {"contents": full["contents"]}
    return {"generateContentRequest": {"model": model_path, **full}}


def build_batch_embed_body(body: dict[str, Any], model_path: str) -> dict[str, Any]:
    requests = []
    for text in input_texts(body):
        request: dict[str, Any] = {"model": model_path, "content": {"parts": [{"text": text}]}}
        if body.get("dimensions"):
            request["outputDimensionality"] = fields.opt_int(
                body, "dimensions", minimum=1, maximum=fields.MAX_DIMENSIONS
            )
        if body.get("task_type"):
            request["taskType"] = fields.opt_str(body, "task_type")
        requests.append(request)
    return {"requests": requests}
