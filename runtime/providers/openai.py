"""OpenAI's wire format, and with it every OpenAI-compatible provider in the registry table.

The internal format *is* OpenAI's, so translation is nearly nothing: the request gets the upstream
model name (and, for streams, `stream_options.include_usage` so usage can always be logged); the
response is parsed once for usage and otherwise forwarded byte for byte.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import ujson

from runtime.codecs.sse import SSEParser
from runtime.config.model import KeyConfig, ProviderConfig
from runtime.errors import ProviderError, UpstreamGarbage
from runtime.providers.base import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    MODERATIONS,
    AdapterBase,
    ParsedResponse,
    UpstreamRequest,
    Usage,
)
from runtime.providers.openai_passthrough import OpenAIPassThrough, stream_event
from runtime.providers.registry import ProviderSpec, join_base

PATHS = {CHAT: "/chat/completions", COMPLETIONS: "/completions", EMBEDDINGS: "/embeddings", MODERATIONS: "/moderations"}
# The member that every successful body of an operation must have.
_REQUIRED_MEMBER = {CHAT: "choices", COMPLETIONS: "choices", EMBEDDINGS: "data", MODERATIONS: "results"}


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms`, else `retry-after` as seconds or an HTTP date; None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def openai_error(status: int, headers: Mapping[str, str], raw: bytes, provider_label: str) -> ProviderError:
    """An OpenAI-style error body (or anything else) -> ProviderError keeping status and message."""
    message = ""
    etype = code = param = None
    body: Any = None
    try:
        body = ujson.loads(raw) if raw else None
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        message = str(err.get("message") or "")
        etype = err.get("type")
        code = err.get("code")
        param = err.get("param")
    elif isinstance(err, str):
        message = err
    elif isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
    if not message:
        text = raw[:500].decode("utf-8", "replace").strip()
        message = f"{provider_label} returned HTTP {status}" + (f": {text}" if text else "")
    return ProviderError(
        message,
        status=status,
        type=str(etype) if etype else _default_type(status),
        code=str(code) if code is not None else None,
        param=param,
        retry_after_s=retry_after_seconds(headers),
        provider_body=body,
    )


def _default_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    if status in (401, 403):
        return "authentication_error"
    if status >= 500:
        return "api_error"
    return "invalid_request_error"


def parse_openai_body(op: str, raw: bytes) -> ParsedResponse:
    try:
        data = ujson.loads(raw)
    except ValueError:
        raise UpstreamGarbage(f"upstream sent a body that is not JSON: {raw[:120]!r}") from None
    member = _REQUIRED_MEMBER[op]
    if not isinstance(data, dict) or not isinstance(data.get(member), list):
        raise UpstreamGarbage(f"upstream JSON has no '{member}' list: {raw[:120]!r}")
    return ParsedResponse(data, Usage.from_openai(data.get("usage")), raw)


class OpenAIStream:
    """OpenAI SSE in, chunk dicts out; remembers usage and whether the stream ended properly.

    Tolerant as real providers require: several never send `[DONE]`, so a stream whose body ends cleanly
    after a finish reason is complete too (the client still gets its `[DONE]` from the encoder); a
    malformed event (not a JSON object) is skipped and counted in `skipped`, and the stream goes on. An
    error event still fails the stream, and a body that ends before any finish reason is still cut."""

    __slots__ = ("_done", "_open", "_parser", "finished", "skipped", "usage")

    def __init__(self) -> None:
        self._parser = SSEParser()
        self.usage: Usage | None = None
        self.finished = False
        # Choice indexes seen without their finish reason yet, and those finished: when some finished and
        # none is open, a clean end of body completes the stream.
        self._open: set[Any] = set()
        self._done: set[Any] = set()
        self.skipped = 0

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for event in self._parser.feed(data):
            payload = event.data
            if payload == "[DONE]":
                self.finished = True
                continue
            if not payload:
                continue  # an event with no data (a keep-alive or `event:`-only line) carries nothing
            try:
                chunk = stream_event(payload)
            except UpstreamGarbage:
                self.skipped += 1
                continue
            usage = chunk.get("usage")
            if usage:
                self.usage = Usage.from_openai(usage)
            choices = chunk.get("choices")
            if choices and isinstance(choices, list):
                self._track(choices)
            chunks.append(chunk)
        return chunks

    def _track(self, choices: list[Any]) -> None:
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            if not isinstance(index, int):
                index = 0  # only a set member; a hostile index must not raise
            if choice.get("finish_reason"):
                self._done.add(index)
                self._open.discard(index)
            elif index not in self._done:
                self._open.add(index)

    def close(self) -> list[dict[str, Any]]:
        tail = self.feed(b"\n\n") if self._parser.pending else []  # a final event without its blank line
        if self._done and not self._open:
            self.finished = True  # every choice finished, then the body ended cleanly: complete without [DONE]
        return tail


class OpenAIAdapter(AdapterBase):
    kind = "openai"
    operations = frozenset((CHAT, COMPLETIONS, EMBEDDINGS, MODERATIONS))

    def url(self, provider: ProviderConfig, spec: ProviderSpec, op: str, model: str, key: KeyConfig) -> str:
        return f"{join_base(provider.network.base_url, spec.path_prefix)}{PATHS[op]}"

    def auth_headers(self, key: KeyConfig) -> dict[str, str]:
        return {"Authorization": f"Bearer {key.value}"} if key.value else {}

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
        out = dict(body)  # shallow: never mutate the caller's body, a fallback may need it again
        out["model"] = model
        if stream and spec.stream_usage_option and op not in (EMBEDDINGS, MODERATIONS):
            options = out.get("stream_options")
            out["stream_options"] = (
                {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
            )
        headers = {"Content-Type": "application/json", **self.auth_headers(key)}
        if provider.network.extra_headers:
            headers.update(provider.network.extra_headers)
        return UpstreamRequest("POST", self.url(provider, spec, op, model, key), headers, out)

    def parse_response(self, op: str, model: str, raw: bytes) -> ParsedResponse:
        return parse_openai_body(op, raw)

    def stream_translator(self, op: str, model: str) -> OpenAIStream:
        return OpenAIStream()

    def raw_stream(self, op: str, model: str, client_wants_usage: bool) -> OpenAIPassThrough:
        return OpenAIPassThrough(client_wants_usage)

    def parse_error(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError:
        return openai_error(status, headers, raw, "provider")
