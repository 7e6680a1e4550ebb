"""OpenAI chat <-> Bedrock Converse, and embeddings through InvokeModel (Titan, Cohere). Pure functions.

Converse: system messages -> `system` blocks; tool calls -> `toolUse`, tool results -> `toolResult`
blocks of one user turn; images must be inline (data URLs -> `image.source.bytes`: Bedrock fetches no
URLs). JSON mode is a forced tool, as with Anthropic. Usage: `inputTokens` excludes cache reads and
writes, so prompt = input + cacheRead + cacheWrite and cached = cacheRead.
"""

from __future__ import annotations

from typing import Any

from runtime.codecs import fields
from runtime.errors import InvalidRequest, ProviderError, UpstreamGarbage
from runtime.providers.base import Usage
from runtime.providers.common import (
    CONTENT_FILTER,
    LENGTH,
    STOP,
    TOOL_CALLS,
    append_turn,
    chat_completion,
    chat_messages,
    content_parts,
    embeddings_list,
    function_tools,
    image_url_of,
    input_texts,
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

JSON_TOOL = "bifrost_json_output"
FINISH = {
    "end_turn": STOP,
    "stop_sequence": STOP,
    "max_tokens": LENGTH,
    "tool_use": TOOL_CALLS,
    "guardrail_intervened": CONTENT_FILTER,
    "content_filtered": CONTENT_FILTER,
    "model_context_window_exceeded": LENGTH,
}
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}


def _image(url: str) -> dict[str, Any]:
    inline = parse_data_url(url)
    if inline is None:
        raise InvalidRequest("Bedrock takes images inline only: send a base64 data URL, not a link", param="messages")
    fmt = _IMAGE_FORMATS.get(inline[0])
    if fmt is None:
        raise InvalidRequest(f"Bedrock does not take {inline[0]} images", param="messages")
    return {"image": {"format": fmt, "source": {"bytes": inline[1]}}}


def _blocks(content: Any, path: str = "messages") -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in content_parts(content, path):
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(image_url_of(part)))
        else:
            raise InvalidRequest(f"content part type {kind!r} is not supported by Bedrock Converse", param="messages")
    return blocks


def _is_tool_result(block: dict[str, Any]) -> bool:
    return "toolResult" in block


def convert_messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(fields.objects(messages, "messages")):
        path = f"messages[{i}]"
        content = message.get("content")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_blocks(content, f"{path}.content"))
            continue
        if role == "user":
            turn, blocks = "user", _blocks(content, f"{path}.content")
        elif role == "assistant":
            turn = "assistant"
            blocks = [{"text": t} for t in [text_of(content, f"{path}.content")] if t]
            for call_id, name, arguments in message_tool_calls(message, path):
                blocks.append({"toolUse": {"toolUseId": call_id, "name": name, "input": json_arguments(arguments)}})
        elif role == "tool":
            turn = "user"
            where = f"{path}.content"
            inner = _blocks(content, where) if isinstance(content, list) else [{"text": text_of(content, where) or " "}]
            result: dict[str, Any] = {"toolUseId": fields.opt_str(message, "tool_call_id", path), "content": inner}
            if message.get("is_error"):
                result["status"] = "error"
            blocks = [{"toolResult": result}]
        else:
            raise InvalidRequest(f"message role {role!r} is not supported by Bedrock", param="messages")
        if not blocks:
            continue
        append_turn(out, turn, blocks, _is_tool_result if role == "tool" else None)
    return system, out


def build_converse_body(body: dict[str, Any]) -> dict[str, Any]:
    messages = chat_messages(body)
    fields.check_sampling(body)
    if body.get("n") not in (None, 1):
        raise InvalidRequest("Bedrock returns one choice; 'n' must be 1", param="n")
    system, converted = convert_messages(messages)
    out: dict[str, Any] = {"messages": converted}
    if system:
        out["system"] = system
    config: dict[str, Any] = {}
    max_tokens = max_tokens_of(body)
    if max_tokens:
        config["maxTokens"] = max_tokens
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP")):
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    stops = stop_list(body.get("stop"))
    if stops:
        config["stopSequences"] = stops
    if config:
        out["inferenceConfig"] = config
    tools = [
        {
            "toolSpec": {
                "name": t["name"],
                "description": t["description"] or t["name"],
                "inputSchema": {"json": t["parameters"]},
            }
        }
        for t in function_tools(body)
    ]
    choice = tool_choice_of(body)
    kind, schema, _name = response_format_of(body)
    if kind != "text":
        tools.append(
            {
                "toolSpec": {
                    "name": JSON_TOOL,
                    "description": "Respond with the answer as this tool's input.",
                    "inputSchema": {"json": schema or {"type": "object"}},
                }
            }
        )
        if len(tools) == 1:
            choice = ("function", JSON_TOOL)
    if tools:
        tool_config: dict[str, Any] = {"tools": tools}
        # Converse has no "none": leaving toolChoice out lets the model decide.
        if choice is not None and choice[0] != "none":
            tool_config["toolChoice"] = {"auto": {"auto": {}}, "required": {"any": {}}}.get(choice[0]) or {
                "tool": {"name": choice[1]}
            }
        out["toolConfig"] = tool_config
    if body.get("top_k") is not None:
        out["additionalModelRequestFields"] = {"top_k": body["top_k"]}
    return out


def usage_of(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    read = usage.get("cacheReadInputTokens") or 0
    written = usage.get("cacheWriteInputTokens") or 0
    prompt = (usage.get("inputTokens") or 0) + read + written
    return Usage(prompt, usage.get("outputTokens") or 0, cached_tokens=read, cache_write_tokens=written)


def parse_converse(raw: bytes, model: str, created: int, rid: str) -> tuple[dict[str, Any], Usage | None]:
    data = loads_object(raw, "Bedrock Converse response")
    message = ((data.get("output") or {}).get("message")) or {}
    content = message.get("content")
    if not isinstance(content, list):
        raise UpstreamGarbage(f"Bedrock Converse response has no output message: {raw[:160]!r}")
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            if use.get("name") == JSON_TOOL:
                texts.append(tool_call("", "", use.get("input"))["function"]["arguments"])
            else:
                calls.append(tool_call(use.get("toolUseId") or "", use.get("name") or "", use.get("input")))
        elif "reasoningContent" in block:
            reasoning.append(((block["reasoningContent"] or {}).get("reasoningText") or {}).get("text") or "")
    finish = FINISH.get(data.get("stopReason") or "end_turn", STOP)
    if finish == TOOL_CALLS and not calls:
        finish = STOP
    usage = usage_of(data.get("usage"))
    answer = chat_completion(rid, model, created, "".join(texts), calls, finish, usage)
    if reasoning:
        answer["choices"][0]["message"]["reasoning_content"] = "".join(reasoning)
    return answer, usage


# -- embeddings through InvokeModel ---------------------------------------------------------------------


def is_cohere_embed(model: str) -> bool:
    return "cohere.embed" in model


def build_embed_body(body: dict[str, Any], model: str) -> dict[str, Any]:
    texts = input_texts(body)
    if is_cohere_embed(model):
        return {"texts": texts, "input_type": body.get("input_type") or "search_document"}
    if len(texts) != 1:
        raise InvalidRequest("Titan embedding models take one input per request; send one string", param="input")
    out: dict[str, Any] = {"inputText": texts[0]}
    if body.get("dimensions"):
        out["dimensions"] = body["dimensions"]
    return out


def parse_embed(raw: bytes, model: str) -> tuple[dict[str, Any], Usage]:
    data = loads_object(raw, "Bedrock embeddings response")
    if isinstance(data.get("embedding"), list):  # Titan
        tokens = int(data.get("inputTextTokenCount") or 0)
        return embeddings_list(model, [data["embedding"]], tokens), Usage(tokens, 0)
    vectors = data.get("embeddings")
    if isinstance(vectors, dict):  # Cohere with embedding_types
        vectors = vectors.get("float")
    if not isinstance(vectors, list):
        raise UpstreamGarbage(f"Bedrock embeddings response has no embeddings: {raw[:120]!r}")
    return embeddings_list(model, vectors, 0), Usage(0, 0)  # Cohere on Bedrock reports no token count


# -- errors -------------------------------------------------------------------------------------------

ERRORS = {  # exception type -> (status we answer with, OpenAI error type)
    "ValidationException": (400, "invalid_request_error"),
    "AccessDeniedException": (403, "permission_error"),
    "UnrecognizedClientException": (401, "authentication_error"),
    "InvalidSignatureException": (401, "authentication_error"),
    "ExpiredTokenException": (401, "authentication_error"),
    "IncompleteSignatureException": (401, "authentication_error"),
    "ResourceNotFoundException": (404, "not_found_error"),
    "ThrottlingException": (429, "rate_limit_error"),
    "ServiceQuotaExceededException": (429, "rate_limit_error"),
    "ModelNotReadyException": (429, "rate_limit_error"),
    "ModelTimeoutException": (504, "timeout"),
    "ModelErrorException": (502, "api_error"),
    "ModelStreamErrorException": (502, "api_error"),
    "ServiceUnavailableException": (503, "api_error"),
    "InternalServerException": (500, "api_error"),
}


def error_from(
    kind: str | None,
    status: int,
    message: str,
    body: Any = None,
    retry_after_s: float | None = None,
    streaming: bool = False,
) -> ProviderError:
    """An AWS error type (`x-amzn-errortype`, or a stream's `:exception-type`) -> ProviderError."""
    name = (kind or "").split(":", 1)[0]
    name = name[:1].upper() + name[1:]  # stream exception types are camelCase
    mapped = ERRORS.get(name)
    if mapped is not None:
        status, etype = mapped
    else:
        etype = "api_error" if status >= 500 else "invalid_request_error"
    code = name or None
    if status == 400 and is_context_overflow(message):
        code = "context_length_exceeded"
    prefix = "Bedrock stream error: " if streaming else ""
    return ProviderError(
        f"{prefix}{message}", status=status, type=etype, code=code, retry_after_s=retry_after_s, provider_body=body
    )
