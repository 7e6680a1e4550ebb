"""OpenAI wire shapes, built exactly as the API reference documents them.

- chat completion object: id "chatcmpl-…", object "chat.completion", created, model, choices[]
  {index, message {role "assistant", content, refusal, tool_calls?}, logprobs, finish_reason},
  usage {prompt_tokens, completion_tokens, total_tokens}, system_fingerprint, service_tier.
- chunk object: object "chat.completion.chunk", choices[] {index, delta, logprobs, finish_reason};
  with stream_options.include_usage every chunk carries "usage": null and one extra last chunk has
  "choices": [] and the usage. Tool-call deltas carry {index, id, type, function {name, arguments}}
  in their first fragment and {index, function {arguments}} after.
- legacy completion: object "text_completion", choices[] {text, index, logprobs, finish_reason}.
- embeddings: {"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model",
  "usage": {prompt_tokens, total_tokens}}; encoding_format "base64" = little-endian float32 bytes.
- moderations: {"id": "modr-…", "model", "results": [{"flagged", "categories" {category: bool},
  "category_scores" {category: float}, "category_applied_input_types" {category: ["text"|"image"]}}]}
  (one result per input string; one for a list of content parts).
- models: {"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}.
- errors: {"error": {"message", "type", "param", "code"}}.

Everything here is pure: ids and timestamps are passed in, so a response is reproducible.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

Json = dict[str, Any]

FINGERPRINT = "fp_fake0001"


def error_body(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> Json:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def text_of_messages(messages: Any) -> str:
    """All text the caller sent, for echoing and for counting prompt tokens."""
    parts: list[str] = []
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return " ".join(parts)


def last_user_text(messages: Any) -> str:
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return text_of_messages([message])
    return ""


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: whitespace-separated words, at least 1."""
    return max(1, len(text.split()))


def usage(prompt_tokens: int, completion_tokens: int) -> Json:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def split_text(text: str) -> list[str]:
    """Split text into the pieces a stream sends: words with their following space."""
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]] if text else []


def tool_call_objects(tool_calls: Sequence[Mapping[str, str]]) -> list[Json]:
    return [
        {"id": tc["id"], "type": "function", "function": {"name": tc["name"], "arguments": tc["arguments"]}}
        for tc in tool_calls
    ]


def chat_completion(
    *,
    id_: str,
    created: int,
    model: str,
    content: str | None,
    tool_calls: Sequence[Mapping[str, str]] | None,
    usage_: Json,
) -> Json:
    message: Json = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
    if tool_calls:
        message["tool_calls"] = tool_call_objects(tool_calls)
    return {
        "id": id_,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
        "usage": usage_,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def chat_chunks(
    *,
    id_: str,
    created: int,
    model: str,
    content: str | None,
    tool_calls: Sequence[Mapping[str, str]] | None,
    usage_: Json,
    include_usage: bool,
) -> Iterator[Json]:
    """The chunk objects of one streamed chat completion, in order (without the [DONE] line)."""

    def chunk(delta: Json, finish_reason: str | None = None) -> Json:
        out: Json = {
            "id": id_,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            out["usage"] = None
        return out

    if tool_calls:
        yield chunk({"role": "assistant", "content": None, "refusal": None})
        for i, tc in enumerate(tool_calls):
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": tc["id"],
                            "type": "function",
                            "function": {"name": tc["name"], "arguments": ""},
                        }
                    ]
                }
            )
            args = tc["arguments"]
            for start in range(0, len(args), 4):
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": args[start : start + 4]}}]})
        yield chunk({}, "tool_calls")
    else:
        yield chunk({"role": "assistant", "content": "", "refusal": None})
        for piece in split_text(content or ""):
            yield chunk({"content": piece})
        yield chunk({}, "stop")
    if include_usage:
        last = chunk({})
        last["choices"] = []
        last["usage"] = usage_
        yield last


def text_completion(*, id_: str, created: int, model: str, text: str, usage_: Json) -> Json:
    return {
        "id": id_,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": usage_,
    }


def text_completion_chunks(
    *, id_: str, created: int, model: str, text: str, usage_: Json, include_usage: bool
) -> Iterator[Json]:
    pieces = split_text(text)
    for n, piece in enumerate(pieces):
        out: Json = {
            "id": id_,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [
                {
                    "text": piece,
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": "stop" if n == len(pieces) - 1 else None,
                }
            ],
        }
        if include_usage:
            out["usage"] = None
        yield out
    if include_usage:
        yield {
            "id": id_,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [],
            "usage": usage_,
        }


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic vector for `text`: the same text always gives the same numbers."""
    digest = hashlib.sha256(text.encode()).digest()
    # Values exactly representable in float32 so base64 and float answers agree bit for bit.
    return [((digest[i % len(digest)] - 128) / 128.0) for i in range(dimensions)]


def embeddings(*, model: str, inputs: Sequence[str], dimensions: int, encoding_format: str, prompt_tokens: int) -> Json:
    data: list[Json] = []
    for i, text in enumerate(inputs):
        vector = embedding_vector(text, dimensions)
        encoded: Any = vector
        if encoding_format == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


# omni-moderation's categories, and which of them also score images (OpenAI's reference).
MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
IMAGE_CATEGORIES = frozenset(
    ("self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "violence", "violence/graphic")
)


def moderation_result(scores: Mapping[str, float], flagged: Sequence[str], with_image: bool) -> Json:
    """One result: every category present, `flagged` the categories over OpenAI's own thresholds."""
    return {
        "flagged": bool(flagged),
        "categories": {c: c in flagged for c in MODERATION_CATEGORIES},
        "category_scores": {c: scores.get(c, 0.0001) for c in MODERATION_CATEGORIES},
        "category_applied_input_types": {
            c: (["text", "image"] if with_image and c in IMAGE_CATEGORIES else ["text"]) for c in MODERATION_CATEGORIES
        },
    }


def moderations(*, id_: str, model: str, results: Sequence[Json]) -> Json:
    return {"id": id_, "model": model, "results": list(results)}


def models_list(models: Sequence[str], created: int = 1_686_935_002, owned_by: str = "openai") -> Json:
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": created, "owned_by": owned_by} for m in models],
    }
