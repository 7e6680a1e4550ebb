"""What makes two requests the same answer: the exact hash, the params hash, the semantic text.

The exact hash is a SHA-256 over canonical JSON (sorted keys, no spaces) of everything that changes the
answer: the endpoint, the namespace (the virtual key's id unless `scope: global`, and the cache key),
the model and provider (unless cache_by_model / cache_by_provider is off), and the internal body minus
the fields that only change how or to whom the answer is delivered:

    stream, stream_options          the same answer, whole or streamed (a stored answer serves both)
    user, metadata, store,          who asks and what the provider records: not the answer
    safety_identifier, prompt_cache_key
    service_tier                    how fast or cheaply it is served, not what it says
    fallbacks                       the gateway's routing, not the request (the first target answers)
    model                           hashed separately, split into provider and model (see above)

Everything else counts (messages, tools, tool_choice, response_format, temperature, top_p, max_tokens,
seed, n, stop, logprobs, provider extensions such as thinking, ...): two requests differing there may get
different answers. A provider is the `provider/` prefix of the model; a bare model name has none (the
gateway routes it the same way each time).

The params hash is the same without the prompt (messages / prompt / input): a semantic match must equal
it, so a similar prompt never gets an answer made with other tools, temperature or model. The semantic
text is the messages' text with role labels (system messages left out with exclude_system_prompt); a
request with non-text parts (images, audio, files) gets None: exact matching only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypedDict, Unpack

import ujson

# Body fields that do not change the answer (see the module doc).
IGNORED = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "safety_identifier",
        "prompt_cache_key",
        "service_tier",
        "fallbacks",
        "model",
    }
)
PROMPT_FIELDS = ("messages", "prompt", "input")
MAX_SEMANTIC_CHARS = 32_768  # what is embedded and kept as the entry's prompt text


@dataclass(frozen=True, slots=True)
class RequestKey:
    request_hash: str
    params_hash: str
    semantic_text: str | None  # None: exact matching only (non-text parts, or not a chat/completions body)
    prompt_text: str  # what the entry shows in the admin UI (bounded)
    provider: str
    model: str


def split_model(model: str, providers: Collection[str]) -> tuple[str, str]:
    """("openai", "gpt-4o") for "openai/gpt-4o" when "openai" is a provider name, else ("", model)."""
    prefix, slash, rest = model.partition("/")
    if slash and rest and prefix in providers:
        return prefix, rest
    return "", model


def _digest(obj: Any) -> str:
    # ujson sorts keys and escapes deterministically; ensure_ascii keeps one spelling per string.
    data = ujson.dumps(obj, sort_keys=True, ensure_ascii=True, escape_forward_slashes=False)
    return hashlib.sha256(data.encode()).hexdigest()


def _is_system(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") in ("system", "developer")


def semantic_text(endpoint: str, body: Mapping[str, Any], exclude_system: bool) -> str | None:
    """The text a semantic lookup embeds: `role: text` lines; None when the request has non-text parts."""
    if endpoint == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            return prompt
        if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
            return "\n".join(prompt)
        return None
    if endpoint != "chat":
        return None
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    lines: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            return None
        if exclude_system and _is_system(message):
            continue
        role = str(message.get("role") or "")
        content = message.get("content")
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        elif isinstance(content, list):
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    return None  # an image, audio, a file: exact matching only
                parts.append(part["text"])
            text = "\n".join(parts)
        else:
            return None
        if message.get("tool_calls") or role == "tool":
            return None  # tool results and calls: exact matching only (their ids differ per conversation)
        lines.append(f"{role}: {text}")
    return "\n".join(lines)


class KeyShape(TypedDict):
    """What a request's cache key depends on besides its body: the caller's namespace and the settings."""

    namespace: tuple[str | None, str]
    providers: Collection[str]
    by_model: bool
    by_provider: bool
    exclude_system: bool


class KeyParts(NamedTuple):
    """What both hashes are made of, built once per request: the head (endpoint, namespace, provider,
    model) and the body's params (the ignored fields left out)."""

    head: dict[str, Any]
    params: dict[str, Any]
    provider: str
    model: str


def key_parts(
    endpoint: str,
    body: Mapping[str, Any],
    *,
    namespace: tuple[str | None, str],
    providers: Collection[str],
    by_model: bool,
    by_provider: bool,
    exclude_system: bool,
) -> KeyParts:
    model = body.get("model")
    provider, name = split_model(model, providers) if isinstance(model, str) else ("", "")
    params = {k: v for k, v in body.items() if k not in IGNORED}
    messages = params.get("messages")
    if exclude_system and isinstance(messages, list):
        params["messages"] = [m for m in messages if not _is_system(m)]
    head = {
        "endpoint": endpoint,
        "ns": list(namespace),
        "provider": provider if by_provider else None,
        "model": name if by_model else None,
    }
    return KeyParts(head, params, provider, name)


def hash_of(parts: KeyParts) -> str:
    """The request hash (RequestKey.request_hash) of `parts`: all a direct lookup needs."""
    return _digest({**parts.head, "body": parts.params})


def exact_hash(endpoint: str, body: Mapping[str, Any], **shape: Unpack[KeyShape]) -> str:
    """The request hash alone (RequestKey.request_hash): all a direct lookup needs. A hit stops there; the
    rest of the key (params hash, semantic and prompt text) is for a miss's semantic lookup and entry."""
    return hash_of(key_parts(endpoint, body, **shape))


def request_key(
    endpoint: str,
    body: Mapping[str, Any],
    *,
    request_hash: str | None = None,
    parts: KeyParts | None = None,
    **shape: Unpack[KeyShape],
) -> RequestKey:
    """The request's hashes. `shape["namespace"]` is (virtual key id or None, cache key). `request_hash`
    and `parts`: the exact hash and the key parts of the same request, already computed (not again)."""
    if parts is None:
        parts = key_parts(endpoint, body, **shape)
    head, params, provider, name = parts
    if request_hash is None:
        request_hash = hash_of(parts)
    without_prompt = {k: v for k, v in params.items() if k not in PROMPT_FIELDS}
    params_hash = _digest({**head, "params": without_prompt})
    text = semantic_text(endpoint, body, shape["exclude_system"])
    if text is not None and len(text) > MAX_SEMANTIC_CHARS:
        text = None  # too long to embed meaningfully: exact matching only
    prompt = text if text is not None else _fallback_prompt(body)
    return RequestKey(request_hash, params_hash, text, prompt[:MAX_SEMANTIC_CHARS], provider, name)


def _fallback_prompt(body: Mapping[str, Any]) -> str:
    """Something readable for the admin UI when the request has no semantic text."""
    for name in PROMPT_FIELDS:
        value = body.get(name)
        if isinstance(value, str):
            return value
        if value is not None:
            return ujson.dumps(value, ensure_ascii=False)[:MAX_SEMANTIC_CHARS]
    return ""


def message_count(body: Mapping[str, Any]) -> int:
    messages = body.get("messages")
    return len(messages) if isinstance(messages, list) else 0
