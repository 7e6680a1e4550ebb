"""Gemini `GenerateContentResponse` (whole, or streamed with `alt=sse`) -> OpenAI chat answers, and Google
API errors -> ProviderError. Pure; shared by the Gemini and Vertex adapters.

Gemini gives tool calls no id (or an optional one), so we derive a stable id from the response and the
call's position; a part's `thoughtSignature` rides along in the id (see gemini_request.THOUGHT_MARK).
Usage: `promptTokenCount` already includes `cachedContentTokenCount`; thinking tokens
(`thoughtsTokenCount`) are output tokens, so they count as completion tokens.

A Gemini stream has no end marker: it ends after the chunk carrying `finishReason`. The translator
therefore reports `finished` at EOF once every candidate has finished.
"""

from __future__ import annotations

import re
from typing import Any

from runtime.codecs.sse import SSEParser
from runtime.errors import ProviderError, UpstreamGarbage
from runtime.providers.base import Usage
from runtime.providers.common import (
    CONTENT_FILTER,
    LENGTH,
    STOP,
    TOOL_CALLS,
    ChunkMaker,
    dumps,
    is_context_overflow,
    loads_object,
    stable_id,
    status_type,
    tool_call,
)
from runtime.providers.gemini_request import THOUGHT_MARK

FINISH = {
    "STOP": STOP,
    "MAX_TOKENS": LENGTH,
    "SAFETY": CONTENT_FILTER,
    "RECITATION": CONTENT_FILTER,
    "BLOCKLIST": CONTENT_FILTER,
    "PROHIBITED_CONTENT": CONTENT_FILTER,
    "SPII": CONTENT_FILTER,
    "IMAGE_SAFETY": CONTENT_FILTER,
    "LANGUAGE": STOP,
    "OTHER": STOP,
    "MALFORMED_FUNCTION_CALL": STOP,
    "FINISH_REASON_UNSPECIFIED": STOP,
}


def usage_of(meta: Any) -> Usage | None:
    if not isinstance(meta, dict):
        return None
    prompt = (meta.get("promptTokenCount") or 0) + (meta.get("toolUsePromptTokenCount") or 0)
    completion = (meta.get("candidatesTokenCount") or 0) + (meta.get("thoughtsTokenCount") or 0)
    total = meta.get("totalTokenCount")
    return Usage(
        prompt,
        completion,
        total if isinstance(total, int) and total else None,
        cached_tokens=meta.get("cachedContentTokenCount") or 0,
    )


def _call_id(response_id: str, candidate: int, position: int, part: dict[str, Any]) -> str:
    call = part.get("functionCall") or {}
    base = call.get("id") or stable_id("call_", response_id, candidate, position, call.get("name"), call.get("args"))
    signature = part.get("thoughtSignature")
    return f"{base}{THOUGHT_MARK}{signature}" if signature else base


def blocked_error(data: dict[str, Any]) -> ProviderError | None:
    """A prompt Gemini refused outright (no candidates, `promptFeedback.blockReason`): a 400 content filter."""
    feedback = data.get("promptFeedback") or {}
    reason = feedback.get("blockReason")
    if data.get("candidates") or not reason:
        return None
    return ProviderError(
        f"the prompt was blocked by the provider's safety filters ({reason})",
        status=400,
        type="invalid_request_error",
        code="content_filter",
        provider_body=data,
    )


def parse_generate(raw: bytes, model: str, created: int) -> tuple[dict[str, Any], Usage | None]:
    data = loads_object(raw, "Gemini response")
    blocked = blocked_error(data)
    if blocked is not None:
        raise blocked
    candidates = data.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        raise UpstreamGarbage(f"Gemini response has no candidates: {raw[:160]!r}")
    rid = data.get("responseId") or stable_id("gen-", data)
    choices = []
    for position, candidate in enumerate(candidates):
        index = candidate.get("index", position)
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for n, part in enumerate((candidate.get("content") or {}).get("parts") or ()):
            if "functionCall" in part:
                fn = part["functionCall"]
                calls.append(tool_call(_call_id(rid, index, n, part), fn.get("name") or "", fn.get("args") or {}))
            elif isinstance(part.get("text"), str):
                (thoughts if part.get("thought") else texts).append(part["text"])
        finish = FINISH.get(candidate.get("finishReason") or "STOP", STOP)
        if calls and finish == STOP:
            finish = TOOL_CALLS
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts or not calls else None,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        if thoughts:
            message["reasoning_content"] = "".join(thoughts)
        choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": finish})
    usage = usage_of(data.get("usageMetadata"))
    answer: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": data.get("modelVersion") or model,
        "choices": choices,
    }
    if usage is not None:
        answer["usage"] = usage.to_openai()
    return answer, usage


class GenerateStream:
    """`streamGenerateContent?alt=sse` in, OpenAI chunks out."""

    __slots__ = ("_chunks", "_finished", "_parser", "_seen", "_tools", "finished", "usage")

    def __init__(self, model: str, created: int) -> None:
        self._parser = SSEParser()
        self._chunks = ChunkMaker("", model, created)
        self._tools: dict[int, int] = {}  # candidate -> tool calls sent so far
        self._seen: set[int] = set()
        self._finished: set[int] = set()
        self.usage: Usage | None = None
        self.finished = False

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in self._parser.feed(data):
            if not event.data.strip():
                continue
            payload = loads_object(event.data, "Gemini stream chunk")
            if "error" in payload:
                raise error_from_body(int((payload["error"] or {}).get("code") or 500), payload, streaming=True)
            blocked = blocked_error(payload)
            if blocked is not None:
                raise blocked
            self._chunk(payload, out)
        return out

    def _chunk(self, payload: dict[str, Any], out: list[dict[str, Any]]) -> None:
        maker = self._chunks
        if not maker.id:
            maker.id = payload.get("responseId") or stable_id("gen-", payload.get("candidates"))
            maker.model = payload.get("modelVersion") or maker.model
        meta = usage_of(payload.get("usageMetadata"))
        if meta is not None:
            self.usage = meta  # cumulative: the latest report replaces the earlier ones
        for position, candidate in enumerate(payload.get("candidates") or ()):
            index = candidate.get("index", position)
            if index not in self._seen:
                self._seen.add(index)
                out.append(_at(maker.role(), index))
            for part in (candidate.get("content") or {}).get("parts") or ():
                if "functionCall" in part:
                    fn = part["functionCall"]
                    n = self._tools.get(index, 0)
                    self._tools[index] = n + 1
                    call_id = _call_id(maker.id, index, n, part)
                    out.append(
                        _at(maker.tool_start(n, call_id, fn.get("name") or "", dumps(fn.get("args") or {})), index)
                    )
                elif isinstance(part.get("text"), str) and part["text"]:
                    key = "reasoning_content" if part.get("thought") else "content"
                    out.append(_at(maker.delta({key: part["text"]}), index))
            reason = candidate.get("finishReason")
            if reason and index not in self._finished:
                self._finished.add(index)
                finish = FINISH.get(reason, STOP)
                if finish == STOP and self._tools.get(index):
                    finish = TOOL_CALLS
                out.append(_at(maker.finish(finish), index))

    def close(self) -> list[dict[str, Any]]:
        out = self.feed(b"\n\n") if self._parser.pending else []
        if self._seen and self._finished >= self._seen:
            self.finished = True
            if self.usage is not None:
                out.append(self._chunks.usage(self.usage))
        return out


def _at(chunk: dict[str, Any], index: int) -> dict[str, Any]:
    chunk["choices"][0]["index"] = index
    return chunk


def parse_embeddings(raw: bytes, model: str) -> tuple[dict[str, Any], Usage]:
    data = loads_object(raw, "Gemini embeddings response")
    items = data.get("embeddings")
    if items is None and isinstance(data.get("embedding"), dict):
        items = [data["embedding"]]
    if not isinstance(items, list):
        raise UpstreamGarbage(f"Gemini embeddings response has no embeddings: {raw[:120]!r}")
    meta = data.get("usageMetadata") or {}
    prompt = int(meta.get("promptTokenCount") or 0)  # Gemini's embed API usually reports none
    vectors = [{"object": "embedding", "index": i, "embedding": e.get("values") or []} for i, e in enumerate(items)]
    usage = Usage(prompt, 0)
    return {
        "object": "list",
        "data": vectors,
        "model": model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }, usage


_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")


def error_from_body(
    status: int, body: Any, streaming: bool = False, retry_after_s: float | None = None
) -> ProviderError:
    """Google's `{"error": {code, message, status, details}}` -> ProviderError.

    An invalid API key comes back as 400 INVALID_ARGUMENT with reason API_KEY_INVALID: that is a 401.
    RetryInfo's `retryDelay` ("12s") becomes the retry-after hint.
    """
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    rpc = str(err.get("status") or "")
    message = str(err.get("message") or f"Gemini returned HTTP {status}")
    if streaming and rpc in _STATUS:
        status = _STATUS[rpc]
    code = rpc.lower() or None
    for detail in err.get("details") or ():
        if not isinstance(detail, dict):
            continue
        if detail.get("reason") in ("API_KEY_INVALID", "API_KEY_EXPIRED"):
            status, code = 401, "invalid_api_key"
        delay = _DELAY.match(str(detail.get("retryDelay") or ""))
        if delay and retry_after_s is None:
            retry_after_s = float(delay.group(1))
    if status == 400 and is_context_overflow(message):
        code = "context_length_exceeded"
    if streaming:
        message = f"Gemini stream error: {message}"
    return ProviderError(
        message, status=status, type=status_type(status), code=code, retry_after_s=retry_after_s, provider_body=body
    )
