"""Cohere v2: POST {base}/v2/chat (JSON, or SSE with typed events) and POST {base}/v2/embed, Bearer key.

Cohere's chat messages are close to OpenAI's (system/user/assistant/tool roles, tool_calls with JSON
string arguments, tool_call_id), so translation is mostly renaming: top_p -> p, top_k -> k, stop ->
stop_sequences, tool_choice required/none -> REQUIRED/NONE, response_format json_schema ->
{type: json_object, json_schema}. The model's `tool_plan` (its reasoning before calling tools) becomes
`reasoning_content`. Stream events: message-start, content-start/delta/end, tool-plan-delta,
tool-call-start/delta/end, citation-*, message-end (finish reason and usage; the end marker).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from runtime.codecs import fields
from runtime.codecs.sse import SSEParser
from runtime.config.model import KeyConfig, ProviderConfig
from runtime.errors import InvalidRequest, ProviderError, UpstreamGarbage
from runtime.providers.base import EMBEDDINGS, AdapterBase, ParsedResponse, UpstreamRequest, Usage
from runtime.providers.capabilities import operations_for
from runtime.providers.common import (
    LENGTH,
    STOP,
    TOOL_CALLS,
    ChunkMaker,
    chat_completion,
    chat_messages,
    content_parts,
    dumps,
    embeddings_list,
    error_body,
    function_tools,
    image_url_of,
    input_texts,
    is_context_overflow,
    json_arguments,
    loads_object,
    max_tokens_of,
    message_tool_calls,
    raw_text,
    response_format_of,
    status_type,
    stop_list,
    text_of,
    tool_call,
    tool_choice_of,
)
from runtime.providers.openai import retry_after_seconds
from runtime.providers.registry import ProviderSpec, join_base

FINISH = {
    "COMPLETE": STOP,
    "STOP_SEQUENCE": STOP,
    "MAX_TOKENS": LENGTH,
    "TOOL_CALL": TOOL_CALLS,
    "ERROR": STOP,
    "TIMEOUT": STOP,
}
_RENAMED = (
    ("temperature", "temperature"),
    ("top_p", "p"),
    ("top_k", "k"),
    ("seed", "seed"),
    ("frequency_penalty", "frequency_penalty"),
    ("presence_penalty", "presence_penalty"),
)


def _content(content: Any, path: str) -> Any:
    if isinstance(content, str) or content is None:
        return content or ""
    parts = []
    for part in content_parts(content, path):
        if part.get("type") == "text":
            parts.append({"type": "text", "text": part.get("text") or ""})
        elif part.get("type") == "image_url":
            parts.append({"type": "image_url", "image_url": {"url": image_url_of(part)}})
        else:
            raise InvalidRequest(f"content part type {part.get('type')!r} is not supported by Cohere", param="messages")
    return parts


def _message(message: dict[str, Any], path: str) -> dict[str, Any]:
    role = message.get("role")
    where = f"{path}.content"
    if role in ("system", "developer"):
        return {"role": "system", "content": text_of(message.get("content"), where)}
    if role == "user":
        return {"role": "user", "content": _content(message.get("content"), where)}
    if role == "assistant":
        out: dict[str, Any] = {"role": "assistant"}
        text = text_of(message.get("content"), where)
        calls = message_tool_calls(message, path)
        if calls:
            # Cohere takes OpenAI's JSON string; any other type is checked (a 400 when it is no object).
            out["tool_calls"] = [
                tool_call(
                    call_id,
                    name,
                    arguments if isinstance(arguments, str) and arguments else dumps(json_arguments(arguments)),
                )
                for call_id, name, arguments in calls
            ]
            if text:
                out["tool_plan"] = text
        else:
            out["content"] = text
        return out
    if role == "tool":
        return {
            "role": "tool",
            "tool_call_id": fields.opt_str(message, "tool_call_id", path),
            "content": text_of(message.get("content"), where) or " ",
        }
    raise InvalidRequest(f"message role {role!r} is not supported by Cohere", param="messages")


def build_chat_body(body: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    messages = chat_messages(body)
    fields.check_sampling(body)
    if body.get("n") not in (None, 1):
        raise InvalidRequest("Cohere returns one choice; 'n' must be 1", param="n")
    converted = [_message(m, f"messages[{i}]") for i, m in enumerate(messages)]
    out: dict[str, Any] = {"model": model, "messages": converted, "stream": stream}
    tools = function_tools(body)
    choice = tool_choice_of(body)
    if choice is not None and choice[0] == "function":
        tools = [t for t in tools if t["name"] == choice[1]]  # Cohere cannot name one tool: offer only it
    if tools:
        out["tools"] = [
            {
                "type": "function",
                "function": {"name": t["name"], "description": t["description"], "parameters": t["parameters"]},
            }
            for t in tools
        ]
    if choice is not None and choice[0] in ("required", "function", "none") and (tools or choice[0] == "none"):
        out["tool_choice"] = "NONE" if choice[0] == "none" else "REQUIRED"
    kind, schema, _name = response_format_of(body)
    if kind != "text":
        out["response_format"] = {"type": "json_object", **({"json_schema": schema} if schema else {})}
    max_tokens = max_tokens_of(body)
    if max_tokens:
        out["max_tokens"] = max_tokens
    stops = stop_list(body.get("stop"))
    if stops:
        out["stop_sequences"] = stops
    for ours, theirs in _RENAMED:
        if body.get(ours) is not None:
            out[theirs] = body[ours]
    return out


def usage_of(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    tokens = usage.get("tokens") or usage.get("billed_units") or {}
    return Usage(
        int(tokens.get("input_tokens") or 0),
        int(tokens.get("output_tokens") or 0),
        cached_tokens=int(usage.get("cached_tokens") or 0),
    )


def parse_chat(raw: bytes, model: str, created: int) -> tuple[dict[str, Any], Usage | None]:
    data = loads_object(raw, "Cohere chat response")
    message = data.get("message")
    if not isinstance(message, dict):
        raise UpstreamGarbage(f"Cohere chat response has no message: {raw[:120]!r}")
    text = "".join(c.get("text") or "" for c in message.get("content") or () if c.get("type") == "text")
    calls = [
        tool_call(
            c.get("id") or "",
            (c.get("function") or {}).get("name") or "",
            (c.get("function") or {}).get("arguments") or "{}",
        )
        for c in message.get("tool_calls") or ()
    ]
    usage = usage_of(data.get("usage"))
    answer = chat_completion(
        data.get("id") or "",
        model,
        created,
        text,
        calls,
        FINISH.get(data.get("finish_reason") or "COMPLETE", STOP),
        usage,
    )
    if message.get("tool_plan"):
        answer["choices"][0]["message"]["reasoning_content"] = message["tool_plan"]
    return answer, usage


class ChatStream:
    __slots__ = ("_chunks", "_parser", "finished", "usage")

    def __init__(self, model: str, created: int) -> None:
        self._parser = SSEParser()
        self._chunks = ChunkMaker("", model, created)
        self.usage: Usage | None = None
        self.finished = False

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in self._parser.feed(data):
            if not event.data.strip():
                continue
            payload = loads_object(event.data, "Cohere stream event")
            self._event(payload.get("type") or event.event or "", payload, out)
        return out

    def close(self) -> list[dict[str, Any]]:
        return self.feed(b"\n\n") if self._parser.pending else []

    def _event(self, kind: str, payload: dict[str, Any], out: list[dict[str, Any]]) -> None:
        maker = self._chunks
        message = ((payload.get("delta") or {}).get("message")) or {}
        if kind == "message-start":
            maker.id = payload.get("id") or ""
            out.append(maker.role())
        elif kind == "content-delta":
            text = (message.get("content") or {}).get("text")
            if text:
                out.append(maker.text(text))
        elif kind == "tool-plan-delta":
            if message.get("tool_plan"):
                out.append(maker.delta({"reasoning_content": message["tool_plan"]}))
        elif kind == "tool-call-start":
            call = message.get("tool_calls") or {}
            fn = call.get("function") or {}
            out.append(
                maker.tool_start(
                    payload.get("index", 0), call.get("id") or "", fn.get("name") or "", fn.get("arguments") or ""
                )
            )
        elif kind == "tool-call-delta":
            fragment = ((message.get("tool_calls") or {}).get("function") or {}).get("arguments")
            if fragment:
                out.append(maker.tool_args(payload.get("index", 0), fragment))
        elif kind == "message-end":
            delta = payload.get("delta") or {}
            out.append(maker.finish(FINISH.get(delta.get("finish_reason") or "COMPLETE", STOP)))
            self.usage = usage_of(delta.get("usage"))
            if self.usage is not None:
                out.append(maker.usage(self.usage))
            self.finished = True
        elif kind == "error" or "error" in payload:
            raise ProviderError(
                f"Cohere stream error: {payload.get('message') or payload.get('error')}", status=502, type="api_error"
            )


def error_from(status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError:
    body = error_body(raw)
    message = str(body.get("message") or "") if isinstance(body, dict) else ""
    if not message:
        text = raw_text(raw)
        message = f"Cohere returned HTTP {status}" + (f": {text}" if text else "")
    if status == 422:
        status = 400  # Cohere's validation errors: a bad request for OpenAI clients
    code = "context_length_exceeded" if status == 400 and is_context_overflow(message) else None
    return ProviderError(
        message,
        status=status,
        type=status_type(status),
        code=code,
        retry_after_s=retry_after_seconds(headers),
        provider_body=body,
    )


class CohereAdapter(AdapterBase):
    kind = "cohere"
    operations = operations_for("cohere")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # only for the `created` stamp of translated answers

    def build_request(
        self,
        provider: ProviderConfig,
        spec: ProviderSpec,
        op: str,
        body: dict[str, Any],
        model: str,
        key: KeyConfig,
        stream: bool,
    ) -> UpstreamRequest:
        base = join_base(provider.network.base_url, spec.path_prefix)
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {key.value}",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        if provider.network.extra_headers:
            headers.update(provider.network.extra_headers)
        if op == EMBEDDINGS:
            payload: dict[str, Any] = {
                "model": model,
                "texts": input_texts(body),
                "input_type": body.get("input_type") or "search_document",
                "embedding_types": ["float"],
            }
            if body.get("dimensions"):
                payload["output_dimension"] = body["dimensions"]
            return UpstreamRequest("POST", f"{base}/embed", headers, payload)
        return UpstreamRequest("POST", f"{base}/chat", headers, build_chat_body(body, model, stream))

    def parse_response(self, op: str, model: str, raw: bytes) -> ParsedResponse:
        if op == EMBEDDINGS:
            data = loads_object(raw, "Cohere embed response")
            vectors = (
                (data.get("embeddings") or {}).get("float")
                if isinstance(data.get("embeddings"), dict)
                else data.get("embeddings")
            )
            if not isinstance(vectors, list):
                raise UpstreamGarbage(f"Cohere embed response has no float embeddings: {raw[:120]!r}")
            tokens = int((((data.get("meta") or {}).get("billed_units")) or {}).get("input_tokens") or 0)
            return ParsedResponse(embeddings_list(model, vectors, tokens), Usage(tokens, 0))
        answer, usage = parse_chat(raw, model, int(self.clock()))
        return ParsedResponse(answer, usage)

    def stream_translator(self, op: str, model: str) -> ChatStream:
        return ChatStream(model, int(self.clock()))

    def parse_error(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError:
        return error_from(status, headers, raw)
